"""Replay 2013 a month at a time through a running Airflow, and wait for the loop to settle.

The replay only drops files into the landing directory: Airflow's scheduler does the rest
(ingest on the landed file, drift check and training on the assets it emits). A month is
settled when its outcome is on record (validated or quarantined; drift checked; training
decided, and retrained when drift was found) and no training or monitoring run is active.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from airloop.airflow_api import AirflowClient
from airloop.config import AirloopConfig
from airloop.demo.flights import land_month, month_partition
from airloop.demo.summary import decision_records, drift_summary, month_rows, render_table
from airloop.paths import StatePaths
from airloop.stack import Stack

DAG_IDS = ("ingest_data", "continuous_training", "monitor_drift")
FOLLOW_UP_DAGS = ("continuous_training", "monitor_drift")


def _active_runs(client: AirflowClient) -> int:
    total = 0
    for dag_id in FOLLOW_UP_DAGS:
        found = client.request("GET", f"dags/{dag_id}/dagRuns", params={"state": ["queued", "running"]})
        total += int(found["total_entries"])
    return total


def month_settled(client: AirflowClient, paths: StatePaths, partition: str) -> bool:
    if (paths.quarantine / partition).is_dir():
        return True
    if not Path(f"{paths.partitions / partition}.parquet.dvc").exists():
        return False
    drift = drift_summary(paths, partition)
    records = decision_records(paths, partition)
    triggers = {t for r in records for t in r.get("triggers", [])}
    if drift is None or "new_data" not in triggers:
        return False
    # A signal from monitor_drift must have reached continuous training (drift and/or a
    # performance drop, whichever the check found).
    if drift["drift_detected"] and not triggers & {"drift", "performance_drop"}:
        return False
    return _active_runs(client) == 0


def wait_for_dags(client: AirflowClient, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {d["dag_id"] for d in client.request("GET", "dags", params={"limit": 100})["dags"]}
        if set(DAG_IDS) <= found:
            return
        time.sleep(2)
    raise TimeoutError(f"DAGs {DAG_IDS} not parsed within {timeout:.0f} s: see the dag-processor log")


def task_durations(client: AirflowClient) -> dict[str, dict[str, float]]:
    """Mean and total seconds per task across all runs, from Airflow's own records."""
    stats: dict[str, list[float]] = {}
    for dag_id in DAG_IDS:
        for run in client.dag_runs(dag_id):
            for ti in client.task_instances(dag_id, run["dag_run_id"]):
                # The sensor's duration is time spent waiting for the next file, not work.
                if ti.get("duration") is not None and ti["task_id"] != "wait_for_landed_file":
                    stats.setdefault(f"{dag_id}.{ti['task_id']}", []).append(float(ti["duration"]))
    return {
        k: {"runs": len(v), "mean_s": sum(v) / len(v), "total_s": sum(v)} for k, v in sorted(stats.items())
    }


# A partition to land: its name, and what writes its file into the landing directory.
Landing = tuple[str, Callable[[Path], object]]


def replay(
    config: AirloopConfig,
    paths: StatePaths,
    months: list[int],
    keep_running: bool = False,
    month_timeout: float = 600,
) -> int:
    """Start the embedded stack, land each month of flights, wait for it to settle, print the summary."""
    landings = [(month_partition(m), partial(land_month, m)) for m in months]
    return replay_landings(paths, landings, keep_running, month_timeout)


def replay_landings(
    paths: StatePaths, landings: Sequence[Landing], keep_running: bool = False, timeout: float = 600
) -> int:
    """Start the embedded stack, land each partition, wait for it to settle, print the summary."""
    stack = Stack(paths)
    stack.start()
    try:
        client = stack.client()
        wait_for_dags(client)
        timings: dict[str, float] = {}
        started = time.monotonic()
        for partition, land in landings:
            month_started = time.monotonic()
            land(paths.landing)
            print(f"landed {partition}; waiting for the loop ...", flush=True)
            while not month_settled(client, paths, partition):
                if time.monotonic() - month_started > timeout:
                    raise TimeoutError(f"{partition} did not settle in {timeout:.0f} s")
                time.sleep(2)
            timings[partition] = round(time.monotonic() - month_started, 1)
            print(f"{partition} settled in {timings[partition]} s", flush=True)
        report = {
            "months": timings,
            "total_s": round(time.monotonic() - started, 1),
            "tasks": task_durations(client),
        }
        (paths.reports / "demo_timing.json").write_text(json.dumps(report, indent=2))
        print()
        print(render_table(month_rows(paths)))
        print(
            f"\n{len(landings)} partitions in {report['total_s']} s "
            f"(timings: {paths.reports / 'demo_timing.json'})"
        )
        _print_access(stack, paths, keep_running)
        return 0
    finally:
        if not keep_running:
            stack.stop()


def _print_access(stack: Stack, paths: StatePaths, keep_running: bool) -> None:
    about = stack.describe()
    state = "running" if keep_running else "stopped now; `make up` starts it again"
    print(f"\nAirflow UI: {about['airflow_ui']}  ({state})")
    print(f"  user: {about['user']}  password: {about['password']}")
    print("MLflow UI:  make mlflow-ui  (then open http://127.0.0.1:5000)")
