"""Orchestration overhead: continuous_training through Airflow's real scheduler vs the same steps
called in one plain Python process, on the embedded default and on the Celery topology.

    .venv/bin/python benchmarks/orchestration_overhead.py [--months 1-3] [--topology local celery]
                                                          [--rounds 3]

For each topology: a state dir with `--months` of flights validated and versioned (no model
yet), copied twice. On one copy the stack starts (not timed; the other DAGs are paused so
only the measured run works), then `airloop trigger continuous_training --wait` runs; its
time is from the trigger to the run's end as Airflow records it: a promoted, packaged model. On the other
copy a fresh `python` process calls the same task functions in order
(`run_continuous_training`), imports included, as a hand-rolled script would; on Celery it
uses the same MLflow server. Needs PostgreSQL and Redis for `celery` (tests/services.py).
Prints Markdown: walls, the ratio, and where the Airflow run's time went per task.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from airloop.cli import month_numbers
from airloop.config import load_config
from airloop.demo.flights import land_month
from airloop.demo.replay import wait_for_dags
from airloop.ops.stack import Stack, Topology
from airloop.orchestration.naming import STAGES, dag_id
from airloop.paths import PROJECT_ROOT, StatePaths
from airloop.pipelines.ingest_data import ingest_landed

sys.path.insert(0, str(PROJECT_ROOT))
from tests.conftest import FLIGHTS_CONFIG  # noqa: E402
from tests.services import POSTGRES, postgres_database, redis_database  # noqa: E402

PLAIN = """
import json, sys, time
started = time.monotonic()
from airloop.config import load_config
from airloop.paths import StatePaths
from airloop.pipelines.continuous_training import run_continuous_training
paths = StatePaths.from_env("flights")
record = run_continuous_training(load_config(), paths, ["manual"], "plain__benchmark")
print(json.dumps({"promoted": "promoted" in record, "seconds": time.monotonic() - started}))
"""
MEASURED = "flights__continuous_training"
OTHER_DAGS = tuple(dag_id("flights", stage) for stage in STAGES if stage != "continuous_training")


def validated_state(home: Path, months: list[int]) -> StatePaths:
    paths = StatePaths(home)
    flights = paths.for_model("flights")
    for month in months:
        land_month(month, flights.landing)
    outcomes = ingest_landed(load_config(), flights)
    assert all(o["accepted"] for o in outcomes), outcomes
    return paths


def env_for(paths: StatePaths, mlflow_url: str | None) -> dict[str, str]:
    env = {**os.environ, "AIRLOOP_HOME": str(paths.home), "BENTOML_HOME": str(paths.bentoml_home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    if mlflow_url:
        env["MLFLOW_TRACKING_URI"] = mlflow_url
    return env


def run_plain(paths: StatePaths, mlflow_url: str | None) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PLAIN], env=env_for(paths, mlflow_url), capture_output=True, text=True
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"plain run failed:\n{done.stderr[-3000:]}")
    assert json.loads(done.stdout.strip().splitlines()[-1])["promoted"], "the plain run promoted nothing"
    return wall


def quiet(stack: Stack) -> None:
    """Pause every DAG but continuous_training and end their runs, so only the measured run works."""
    client = stack.client()
    wait_for_dags(client, [MEASURED, *OTHER_DAGS])
    for dag in OTHER_DAGS:
        client.request("PATCH", f"dags/{dag}", json={"is_paused": True})
        active = client.request("GET", f"dags/{dag}/dagRuns", params={"state": ["queued", "running"]})
        for run in active["dag_runs"]:
            client.request("PATCH", f"dags/{dag}/dagRuns/{run['dag_run_id']}", json={"state": "failed"})
    time.sleep(5)  # their task processes see the failed runs and stop


def run_airflow(paths: StatePaths, topology: Topology) -> tuple[float, float, dict]:
    """(seconds to start the stack, trigger-to-finish seconds, the run's task timings)."""
    stack = Stack(paths, configs=str(FLIGHTS_CONFIG), topology=topology)
    started = time.monotonic()
    stack.start()
    try:
        quiet(stack)
        startup = time.monotonic() - started
        client = stack.client()
        env = {
            **env_for(paths, stack.mlflow_url),
            "AIRLOOP_AIRFLOW_URL": client.base_url,
            "AIRLOOP_AIRFLOW_USERNAME": client.username,
            "AIRLOOP_AIRFLOW_PASSWORD": client.password,
        }
        command = [str(Path(sys.executable).parent / "airloop"), "trigger", MEASURED, "--wait"]
        triggered = datetime.now(UTC)
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the Airflow run failed:\n{done.stdout}{done.stderr[-3000:]}")
        timeline = task_timeline(client, json.loads(done.stdout)["run_id"])
        # Until Airflow recorded the run's end, not until `--wait` next polled it.
        return startup, (timeline.pop("end") - triggered).total_seconds(), timeline
    finally:
        stack.stop()


def task_timeline(client, run_id: str) -> dict:
    run = client.request("GET", f"dags/{MEASURED}/dagRuns/{run_id}")
    tasks = client.task_instances(MEASURED, run_id)
    per_task = {}
    for t in sorted(tasks, key=lambda t: t["start_date"] or ""):
        name = f"{t['task_id']}[{t['map_index']}]" if t["map_index"] >= 0 else t["task_id"]
        per_task[name] = float(t["duration"] or 0)
    end = datetime.fromisoformat(run["end_date"])
    span = (end - datetime.fromisoformat(run["start_date"])).total_seconds()
    return {"end": end, "run_span_s": span, "task_seconds": sum(per_task.values()), "tasks": per_task}


def measure(topology_name: str, months: list[int], root: Path) -> dict:
    with ExitStack() as services:
        topology, mlflow_url = Topology(), None
        root.mkdir(parents=True, exist_ok=True)
        base = validated_state(root / f"{topology_name}-base", months)
        if topology_name == "celery":
            airflow_db = services.enter_context(postgres_database("airloop_bench_airflow"))
            mlflow_db = services.enter_context(postgres_database("airloop_bench_mlflow"))
            broker = services.enter_context(redis_database())
            topology = Topology("celery", f"{POSTGRES}/{airflow_db}", broker, f"{POSTGRES}/{mlflow_db}")
        airflow_home, plain_home = root / f"{topology_name}-airflow", root / f"{topology_name}-plain"
        shutil.copytree(base.home, airflow_home)
        shutil.copytree(base.home, plain_home)
        startup, airflow_wall, timeline = run_airflow(StatePaths(airflow_home), topology)
        if topology.mlflow_database_url:
            # The plain side tracks into the same kind of server: a fresh one on a fresh database.
            mlflow_url = _mlflow_server(services, StatePaths(plain_home))
        plain_wall = run_plain(StatePaths(plain_home), mlflow_url)
    return {"startup_s": startup, "airflow_s": airflow_wall, "plain_s": plain_wall, **timeline}


def _mlflow_server(services: ExitStack, paths: StatePaths) -> str:
    from airloop.ops.stack import free_port, mlflow_server_command, wait_until_answers

    database = services.enter_context(postgres_database("airloop_bench_plain_mlflow"))
    port = free_port()
    server = subprocess.Popen(
        mlflow_server_command(f"{POSTGRES}/{database}", paths, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    services.callback(lambda: (os.killpg(server.pid, 15), server.wait()))
    wait_until_answers(f"http://127.0.0.1:{port}/health", 120, "the plain side's MLflow server")
    return f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--months", default="1-3")
    parser.add_argument("--topology", nargs="+", default=["local", "celery"], choices=["local", "celery"])
    parser.add_argument("--rounds", type=int, default=1, help="rounds per topology, each from a fresh state")
    args = parser.parse_args()
    months = month_numbers(args.months)
    rounds: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="airloop-orchestration-") as tmp:
        for number in range(args.rounds):
            for name in args.topology:
                result = measure(name, months, Path(tmp) / f"round-{number}")
                rounds.append((name, result))
                print(json.dumps({name: result}), file=sys.stderr, flush=True)
    print(
        f"## continuous_training: Airflow vs one plain process, {len(months)} months "
        f"({datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, {platform.machine()})\n"
    )
    print("| topology | stack start (s) | trigger → promoted (s) | plain process (s) | ratio | "
          "run span (s) | sum of task durations (s) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rounds:
        ratio = r["airflow_s"] / r["plain_s"]
        print(f"| {name} | {r['startup_s']:.0f} | {r['airflow_s']:.1f} | {r['plain_s']:.1f} | {ratio:.2f}x | "
              f"{r['run_span_s']:.1f} | {r['task_seconds']:.1f} |")  # fmt: skip
    for name in args.topology:
        ratios = sorted(r["airflow_s"] / r["plain_s"] for n, r in rounds if n == name)
        print(f"\n{name}: median ratio {ratios[len(ratios) // 2]:.2f}x over {len(ratios)} round(s)")
    for name, r in rounds:
        print(f"\n{name}: " + ", ".join(f"{task} {seconds:.1f} s" for task, seconds in r["tasks"].items()))


if __name__ == "__main__":
    main()
