"""Two models' continuous training at once vs one after the other, through the real stack.

    .venv/bin/python benchmarks/concurrent_models.py [--months 1-2] [--rounds 1]
                                                     [--run-timeout 900]

Two setups, each on its own fresh state dir with its own fresh embedded stack on
configs/flights.yaml + configs/weather.yaml (SQLite, LocalExecutor, parallelism 3), so both
do the same work: each model's first training, with no champion yet. Before the stack
starts, `--months` of each model's demo data are landed and ingested without Airflow
(`ingest_landed`), so no DAG ever sees a file land: no asset event, no run but the ones
triggered here. Once the stack lists all 10 DAGs and has settled (each model's
`ingest_data` run has its landing sensor deferred; nothing scheduled, queued or running),
`flights__continuous_training` and `weather__continuous_training` are triggered over REST:

- sequential: flights, then, once Airflow records its end, weather;
- together: both at once (two POSTs back to back).

A run's time is from its trigger to its end as Airflow records it. Sequential's total is
the sum of its two runs; together's is from the first trigger to the later end. Prints
Markdown with the ratio together / sequential, per-run times and each run's task time, and
the machine's CPU use and load average during each setup; writes the numbers to
`<state dir>/benchmarks/concurrent_models.json` (`$AIRLOOP_HOME`, default .state/). With
2 months, about 1.5 minutes per setup on 2 cores (ingest ~5 s, stack start ~35 s, settle
~20 s, the runs 30-40 s, stop ~20 s): ~3 minutes a round, ~10 for `--rounds 3`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from airloop.cli import month_numbers
from airloop.demo import flights, weather
from airloop.deployment import load_deployment
from airloop.ops.stack import Stack
from airloop.paths import PROJECT_ROOT, StatePaths
from airloop.pipelines.ingest_data import ingest_landed

CONFIGS = f"{PROJECT_ROOT / 'configs' / 'flights.yaml'}:{PROJECT_ROOT / 'configs' / 'weather.yaml'}"
MODELS = {"flights": flights.land_month, "weather": weather.land_month}
DAGS = [f"{name}__continuous_training" for name in MODELS]
TERMINAL = {"success", "failed"}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class LoadSampler:
    """The 1-minute load average every 5 s, in a thread, while a setup runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(float(loadavg().split()[0]))
            self._stop.wait(5)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def ingested_state(home: Path, months: list[int]) -> StatePaths:
    """A fresh state dir with `months` of each model validated and versioned, without Airflow."""
    paths = StatePaths(home)
    deployment = load_deployment(CONFIGS)
    for name, land_month in MODELS.items():
        model_paths = paths.for_model(name)
        for month in months:
            land_month(month, model_paths.landing)
        outcomes = ingest_landed(deployment.model(name), model_paths)
        if not outcomes or not all(o["accepted"] for o in outcomes):
            raise RuntimeError(f"{name}: ingest refused a partition: {outcomes}")
    return paths


def task_instances(client, states: list[str]) -> int:
    found = client.request("GET", "dags/~/dagRuns/~/taskInstances", params={"state": states, "limit": 1})
    return int(found["total_entries"])


def wait_until(predicate, timeout: float, what: str, every: float = 2) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - started


def settle(stack: Stack, timeout: float = 300) -> float:
    client = stack.client()

    def listed() -> bool:
        found = {d["dag_id"] for d in client.request("GET", "dags", params={"limit": 100})["dags"]}
        return len({f"{m}__{s}" for m in MODELS for s in ("ingest_data", "continuous_training")} - found) == 0

    took = wait_until(listed, timeout, "the two models' DAGs listed")
    took += wait_until(
        lambda: (
            task_instances(client, ["scheduled", "queued", "running", "up_for_retry"]) == 0
            and task_instances(client, ["deferred"]) >= len(MODELS)
        ),
        timeout,
        "each ingest sensor deferred",
    )
    return took


def wait_for_run(client, dag: str, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client.request("GET", f"dags/{dag}/dagRuns/{run_id}")
        if run["state"] in TERMINAL:
            return dict(run)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag} run {run_id} still {run['state']} after {timeout:.0f} s")
        time.sleep(1)


def run_record(client, dag: str, run: dict, triggered: datetime) -> dict:
    tasks = client.task_instances(dag, run["dag_run_id"])
    states: dict[str, str] = {}
    durations = 0.0
    for t in tasks:
        name = f"{t['task_id']}[{t['map_index']}]" if t["map_index"] >= 0 else t["task_id"]
        states[name] = t["state"]
        durations += float(t["duration"] or 0)
    start, end = datetime.fromisoformat(run["start_date"]), datetime.fromisoformat(run["end_date"])
    return {
        "dag": dag,
        "state": run["state"],
        "triggered": triggered.isoformat(),
        "end": end.isoformat(),
        "trigger_to_end_s": (end - triggered).total_seconds(),
        "queued_s": (start - triggered).total_seconds(),
        "run_span_s": (end - start).total_seconds(),
        "task_seconds": durations,
        "promoted": states.get("promote_champion") == "success",
        "task_states": states,
    }


def run_setup(setup: str, months: list[int], home: Path, run_timeout: float) -> dict:
    started = time.monotonic()
    paths = ingested_state(home, months)
    ingest_s = time.monotonic() - started
    stack = Stack(paths, configs=CONFIGS)
    started = time.monotonic()
    stack.start()
    try:
        settle_s = settle(stack)
        startup_s = time.monotonic() - started
        client = stack.client()
        runs: list[dict] = []
        busy0, total0 = cpu_jiffies()
        with LoadSampler() as load:
            if setup == "sequential":
                for dag in DAGS:
                    triggered = datetime.now(UTC)
                    run = client.trigger(dag)
                    finished = wait_for_run(client, dag, run["dag_run_id"], run_timeout)
                    runs.append(run_record(client, dag, finished, triggered))
            else:
                triggered_runs = [(dag, datetime.now(UTC), client.trigger(dag)) for dag in DAGS]
                for dag, triggered, run in triggered_runs:
                    finished = wait_for_run(client, dag, run["dag_run_id"], run_timeout)
                    runs.append(run_record(client, dag, finished, triggered))
        busy1, total1 = cpu_jiffies()
    finally:
        stack.stop()
    failed = [r["dag"] for r in runs if r["state"] != "success"]
    if failed:
        raise RuntimeError(f"{setup}: runs failed: {failed}: {[r['task_states'] for r in runs]}")
    if setup == "sequential":
        total = sum(r["trigger_to_end_s"] for r in runs)
    else:
        first = min(datetime.fromisoformat(r["triggered"]) for r in runs)
        total = (max(datetime.fromisoformat(r["end"]) for r in runs) - first).total_seconds()
    return {
        "setup": setup,
        "ingest_s": ingest_s,
        "startup_s": startup_s,
        "settle_s": settle_s,
        "total_s": total,
        "runs": runs,
        "machine_cpu_pct": 100 * (busy1 - busy0) / max(1, total1 - total0),
        "load_min": min(load.samples),
        "load_max": max(load.samples),
        "load_mean": statistics.mean(load.samples),
    }


def report(rounds: list[dict[str, dict]], months: list[int]) -> str:
    lines = [
        f"## Two models' continuous training: together vs one after the other, {len(months)} months each "
        f"({datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, {platform.machine()})\n",
        "| round | setup | total (s) | flights trigger → end (s) | weather trigger → end (s) | "
        "flights tasks (s) | weather tasks (s) | promoted | machine CPU busy | load avg 1 min (min-max) |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for number, setups in enumerate(rounds):
        for name in ("sequential", "together"):
            s = setups[name]
            by = {r["dag"].split("__")[0]: r for r in s["runs"]}
            lines.append(
                f"| {number} | {name} | {s['total_s']:.1f} | {by['flights']['trigger_to_end_s']:.1f} | "
                f"{by['weather']['trigger_to_end_s']:.1f} | {by['flights']['task_seconds']:.1f} | "
                f"{by['weather']['task_seconds']:.1f} | "
                f"{', '.join(r['dag'].split('__')[0] for r in s['runs'] if r['promoted']) or 'none'} | "
                f"{s['machine_cpu_pct']:.0f}% | {s['load_min']:.2f}-{s['load_max']:.2f} |"
            )
    ratios = [r["together"]["total_s"] / r["sequential"]["total_s"] for r in rounds]
    lines.append(f"\nratio together / sequential: {', '.join(f'{x:.2f}' for x in ratios)}"
                 f" (median {statistics.median(ratios):.2f})")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--months", default="1-2")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each both setups on fresh states")
    parser.add_argument("--run-timeout", type=float, default=900, help="seconds one run may take")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (states, logs)")
    args = parser.parse_args()
    months = month_numbers(args.months)
    root = Path(tempfile.mkdtemp(prefix="airloop-concurrent-"))
    rounds: list[dict[str, dict]] = []
    try:
        for number in range(args.rounds):
            # Alternate which setup goes first, so a warming page cache favours neither.
            order = ("sequential", "together") if number % 2 == 0 else ("together", "sequential")
            setups = {}
            for setup in order:
                setups[setup] = run_setup(setup, months, root / f"round-{number}-{setup}", args.run_timeout)
                print(json.dumps(setups[setup]), file=sys.stderr, flush=True)
            rounds.append(setups)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(report(rounds, months))
    out = StatePaths.from_env().home / "benchmarks" / "concurrent_models.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": f"{datetime.now(UTC):%Y-%m-%d}",
                "months": months,
                "rounds": rounds,
            },
            indent=2,
        )
    )
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
