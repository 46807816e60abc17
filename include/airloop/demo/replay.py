"""Replay 2013 a month at a time through a running Airflow, every demo model side by side,
and wait for each model's loop to settle.

The replay only drops files into each model's landing directory: Airflow's scheduler does
the rest (ingest on the landed file, drift check and training on the assets it emits).
With live traffic, each model's champion is served meanwhile (`airloop serve`), and once a
month settles the next month's rows are sent to it and their labels joined
(`airloop.demo.live_traffic`) before that month lands for training. A
model's month is settled when its outcome is on record (validated or quarantined; drift
checked; training decided, and retrained when drift was found) and none of that model's
training or monitoring runs is active.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from airloop.config import AirloopConfig
from airloop.demo.landing import Landing
from airloop.demo.summary import decision_records, drift_summary, month_rows, render_months
from airloop.ops.airflow_api import AirflowClient
from airloop.ops.stack import Stack
from airloop.orchestration.naming import dag_id
from airloop.paths import StatePaths

if TYPE_CHECKING:
    import pandas as pd

    from airloop.demo.live_traffic import LiveTraffic

FOLLOW_UP_STAGES = ("continuous_training", "monitor_drift")
WORK_STAGES = ("ingest_data", *FOLLOW_UP_STAGES)


@dataclass(frozen=True)
class ModelReplay:
    """One model of the replay: its config and the file it came from (what the stack loads),
    its state paths, and its partitions in order."""

    config: AirloopConfig
    config_file: Path
    paths: StatePaths
    landings: Sequence[Landing]
    # The rows the model is asked live during a partition (None: no live traffic).
    asked: Callable[[str], pd.DataFrame] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def dag_ids(self, stages: Sequence[str] = WORK_STAGES) -> list[str]:
        return [dag_id(self.name, stage) for stage in stages]


def _active_runs(client: AirflowClient, model: ModelReplay) -> int:
    total = 0
    for dag in model.dag_ids(FOLLOW_UP_STAGES):
        found = client.request("GET", f"dags/{dag}/dagRuns", params={"state": ["queued", "running"]})
        total += int(found["total_entries"])
    return total


def month_settled(client: AirflowClient, model: ModelReplay, partition: str) -> bool:
    paths = model.paths
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
    return _active_runs(client, model) == 0


def wait_for_dags(client: AirflowClient, dag_ids: Sequence[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(dag_ids) <= set(client.dag_ids()):
            return
        time.sleep(2)
    raise TimeoutError(f"DAGs {sorted(dag_ids)} not parsed within {timeout:.0f} s: see the dag-processor log")


def task_durations(client: AirflowClient, dag_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean and total seconds per task across all runs, from Airflow's own records."""
    stats: dict[str, list[float]] = {}
    for dag in dag_ids:
        for run in client.dag_runs(dag):
            for ti in client.task_instances(dag, run["dag_run_id"]):
                # The sensor's duration is time spent waiting for the next file, not work.
                if ti.get("duration") is not None and ti["task_id"] != "wait_for_landed_file":
                    stats.setdefault(f"{dag}.{ti['task_id']}", []).append(float(ti["duration"]))
    return {
        k: {"runs": len(v), "mean_s": sum(v) / len(v), "total_s": sum(v)} for k, v in sorted(stats.items())
    }


def replay(
    models: Sequence[ModelReplay],
    paths: StatePaths,
    keep_running: bool = False,
    timeout: float = 600,
    serving_port: int | None = None,
) -> int:
    """Start the embedded stack on exactly these models, replay them side by side (each model
    lands its next partition when its last one settled), print each model's summary. With
    a `serving_port`, the champions are served from it (consecutive ports) and the models
    with `asked` rows get live traffic and labels."""
    stack = Stack(paths, configs=os.pathsep.join(str(m.config_file) for m in models))
    stack.start()
    traffic = _live_traffic(models, paths, serving_port)
    try:
        client = stack.client()
        wait_for_dags(client, [d for m in models for d in m.dag_ids()])
        timings: dict[str, dict[str, float]] = {m.name: {} for m in models}
        started = time.monotonic()
        # Each model at its own pace: its next partition lands once its last one settled.
        pending = {m.name: list(m.landings) for m in models if m.landings}
        current: dict[str, tuple[str, float]] = {}
        by_name = {m.name: m for m in models}
        while pending or current:
            for name in [n for n in list(pending) if n not in current]:
                partition, land = pending[name].pop(0)
                if not pending[name]:
                    del pending[name]
                if traffic is not None:
                    _ask(traffic, client, by_name[name], partition)
                land(by_name[name].paths.landing)
                current[name] = (partition, time.monotonic())
                print(f"{name}: landed {partition}", flush=True)
            for name, (partition, landed_at) in list(current.items()):
                if month_settled(client, by_name[name], partition):
                    timings[name][partition] = round(time.monotonic() - landed_at, 1)
                    print(f"{name}: {partition} settled in {timings[name][partition]} s", flush=True)
                    del current[name]
                elif time.monotonic() - landed_at > timeout:
                    raise TimeoutError(f"{name}'s {partition} did not settle in {timeout:.0f} s")
            time.sleep(2)
        report = {
            "models": timings,
            "total_s": round(time.monotonic() - started, 1),
            "tasks": task_durations(client, [d for m in models for d in m.dag_ids()]),
        }
        paths.reports.mkdir(parents=True, exist_ok=True)
        (paths.reports / "demo_timing.json").write_text(json.dumps(report, indent=2))
        for model in models:
            print(f"\n{model.name} ({model.config.task}, {model.config.model.registered_name})")
            print(render_months(month_rows(model.paths, model.config)))
        partitions = sum(len(m.landings) for m in models)
        print(
            f"\n{partitions} partitions of {len(models)} models in {report['total_s']} s "
            f"(timings: {paths.reports / 'demo_timing.json'})"
        )
        _print_access(stack, keep_running)
        return 0
    finally:
        if traffic is not None:
            traffic.stop()
        if not keep_running:
            stack.stop()


def _live_traffic(models: Sequence[ModelReplay], paths: StatePaths, port: int | None) -> LiveTraffic | None:
    if port is None or not any(m.asked for m in models):
        return None
    from airloop.demo.live_traffic import LiveTraffic

    return LiveTraffic([m.config for m in models], paths, port).start()


def _ask(traffic: LiveTraffic, client: AirflowClient, model: ModelReplay, partition: str) -> None:
    """Before `partition` lands for training, its rows are what the model's champion is asked."""
    if model.asked is None:
        return
    sent = traffic.send_month(client, model.config, partition, model.asked(partition))
    if sent is not None:
        print(f"{model.name}: sent {sent['rows']} rows of {partition} to v{sent['version']}, "
              f"labels joined ({sent['join']})", flush=True)  # fmt: skip


def _print_access(stack: Stack, keep_running: bool) -> None:
    about = stack.describe()
    state = "running" if keep_running else "stopped now; `make up` starts it again"
    print(f"\nAirflow UI: {about['airflow_ui']}  ({state})")
    print(f"  user: {about['user']}  password: {about['password']}")
    print("  each model's DAGs: filter the DAG list by tag model:<name>; the airloop page lists the models")
    print("MLflow UI:  make mlflow-ui  (then open http://127.0.0.1:5000)")
