"""Monitor drift: compare the champion's training data with the newest validated partition.

Runs on the configured schedule and whenever new data is validated. The reference is the
champion's own training set, found by the DVC hash tagged on its registry version. The
Evidently report (HTML and JSON) is kept under reports/drift; `drift_detected` is emitted
only when the share of drifted columns reaches the configured threshold, and carries the
summary (which columns, how much, which report).
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from airloop_wiring import DEFAULT_ARGS, DRIFT_DETECTED, START_DATE, VALIDATED_DATA

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
)
def monitor_drift():
    @task
    def measure_drift(**context) -> dict:
        from airloop.pipelines.monitor_drift import check_drift

        summary = check_drift(CONFIG, PATHS, context["run_id"])
        print(f"{summary['status']}: {summary['reason']}")
        return summary

    @task.short_circuit
    def drifted(summary: dict) -> bool:
        return bool(summary["drift_detected"])

    @task(outlets=[DRIFT_DETECTED])
    def signal_drift(summary: dict, **context) -> None:
        context["outlet_events"][DRIFT_DETECTED].extra = summary

    summary = measure_drift()
    drifted(summary) >> signal_drift(summary)


monitor_drift()
