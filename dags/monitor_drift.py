"""Monitor drift: compare the champion's training data with the newest validated window.

Runs on the configured schedule and whenever new data is validated. The reference is the
champion's own training set, profiled when it was trained and logged with its run (or,
for an older model, counted from the DVC hash tagged on its registry version). The current
window is the newest `drift.window_partitions` partitions. Three checks: data drift
(Evidently's tests per column, methods and thresholds from config), prediction drift (the
champion's scores on the window vs on its training data), and, for rows whose labels have
arrived, performance drift (the champion's metric vs what it scored at evaluation).

Each check keeps its Evidently report (HTML and JSON, under reports/drift and in the
Evidently workspace `<state>/evidently`: `evidently ui --workspace` shows the history) and
is an MLflow run in the `<name>-monitoring` experiment; `measure_drift`'s return value
points at all of them. `drift_detected` is emitted only when a check signals, and carries
the summary (which signals, which columns, how much, which report)."""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from airloop_wiring import (
    DEFAULT_ARGS,
    DRIFT_DETECTED,
    START_DATE,
    VALIDATED_DATA,
    Notify,
    run_config,
    run_params,
    show_links,
)

from airloop.config import load_config
from airloop.paths import StatePaths

CONFIG = load_config()
PATHS = StatePaths.from_env()


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(CONFIG.schedules.monitor_drift, timezone="UTC"),
        assets=VALIDATED_DATA,
    ),
    start_date=START_DATE,
    max_active_runs=1,
    catchup=False,
    tags=["airloop", "monitoring"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    params=run_params("monitor_drift"),
)
def monitor_drift():
    @task
    def measure_drift(**context) -> dict:
        from airloop.pipelines.monitor_drift import check_drift

        summary = check_drift(run_config(CONFIG, context), PATHS, context["run_id"])
        print(f"{summary['status']}: {summary['reason']}")
        show_links(context, mlflow_run=summary.get("mlflow_run_id"), drift_report=summary.get("html_path"))
        return summary

    @task.short_circuit
    def drifted(summary: dict) -> bool:
        return bool(summary["drift_detected"])

    @task(outlets=[DRIFT_DETECTED], on_success_callback=Notify("drift", details_from="measure_drift"))
    def signal_drift(summary: dict, **context) -> None:
        context["outlet_events"][DRIFT_DETECTED].extra = summary

    summary = measure_drift()
    drifted(summary) >> signal_drift(summary)


monitor_drift()
