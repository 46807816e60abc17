"""Monitor drift: compare the champion's training data with the newest validated window,
or with what the served champion was asked (`drift.current`: ingested, served or both).

Runs on the configured schedule, whenever the model's new data is validated, and (when it
checks served traffic) whenever new labels are joined to its predictions. The
reference is the champion's own training set, profiled when it was trained and logged with
its run (or, for an older model, counted from the DVC hash tagged on its registry version).
The ingested window is the newest `drift.window_partitions` partitions; the served one the
prediction log's last `drift.served_hours` of the champion version. Three checks: data
drift (Evidently's tests per column, methods and thresholds from config), prediction drift
(the champion's scores on the window vs on its training data), and, for rows whose labels
have arrived, performance drift (the champion's metric vs what it scored at evaluation; on
served traffic, what it answered against the labels joined since). Served checks also
report the share of unseen categories and of values outside the training range.

Each check keeps its Evidently report (HTML and JSON, under the model's reports/drift and in
the Evidently workspace `<state>/evidently`, project `<model>`: `evidently ui --workspace`
shows the history) and is an MLflow run in the `<model>-monitoring` experiment;
`measure_drift`'s return value points at all of them. The model's `drift_detected` is
emitted only when a check signals, and carries the summary (which signals, which columns,
how much, which report)."""

from __future__ import annotations

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from airflow.sdk.definitions.asset import BaseAsset

from airloop.orchestration.wiring import ModelWiring


def _watched_assets(model: ModelWiring) -> BaseAsset:
    """New validated data always; newly joined labels when served traffic is checked."""
    if model.config.drift.current == "ingested":
        return model.assets.validated_data
    return model.assets.validated_data | model.assets.labelled_predictions


def build(model: ModelWiring) -> DAG:
    config, paths, drift_detected = model.config, model.paths, model.assets.drift_detected

    @dag(
        **model.dag_args("monitor_drift", "monitoring", __doc__),
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(config.schedules.monitor_drift, timezone="UTC"),
            assets=_watched_assets(model),
        ),
        params=model.run_params("monitor_drift"),
    )
    def monitor_drift():
        @task
        def measure_drift(**context) -> dict:
            from airloop.pipelines.monitor_drift import check_drift

            summary = check_drift(model.run_config("monitor_drift", context), paths, context["run_id"])
            print(f"{summary['status']}: {summary['reason']}")
            model.show_links(
                context, mlflow_run=summary.get("mlflow_run_id"), drift_report=summary.get("html_path")
            )
            return summary

        @task.short_circuit
        def drifted(summary: dict) -> bool:
            return bool(summary["drift_detected"])

        @task(
            outlets=[drift_detected], on_success_callback=model.notify("drift", details_from="measure_drift")
        )
        def signal_drift(summary: dict, **context) -> None:
            context["outlet_events"][drift_detected].extra = summary

        summary = measure_drift()
        drifted(summary) >> signal_drift(summary)

    return monitor_drift()
