"""Join labels that arrived to what the served model answered.

Runs on `schedules.join_labels`, and by hand or REST. Each labels file in the model's labels
location (`labels.source`; a SQL source is extracted first, one day per run) is matched to
the prediction log by inference id or by the dataset's keys and becomes a DVC-versioned
partition under `data/labelled/`; the file moves to `labels/joined/` (a file that cannot be
joined to `labels/quarantine/`) with a report counting joined, unmatched, duplicate,
wrongly typed and missing labels. When anything was joined the model's
`labelled_predictions` is emitted, and monitor_drift measures live performance again.
Each run first compacts the prediction log's finished hours, one file per hour.
"""

from __future__ import annotations

from airflow.sdk import DAG, CronTriggerTimetable, dag, task

from airloop.orchestration.wiring import ModelWiring


def build(model: ModelWiring) -> DAG:
    config, paths, labelled = model.config, model.paths, model.assets.labelled_predictions

    @dag(
        **model.dag_args("join_labels", "monitoring", __doc__),
        schedule=CronTriggerTimetable(config.schedules.join_labels, timezone="UTC"),
        params=model.run_params("join_labels"),
    )
    def join_labels():
        @task(pool=model.dvc_pool, outlets=[labelled])
        def join(**context) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from airloop.production.labels_join import extract_labels, join_pending_labels
            from airloop.production.predictions import compact_log

            print(f"prediction log compacted: {compact_log(config, paths)}")
            extract_labels(config, paths, context.get("data_interval_start"))
            joined = join_pending_labels(config, paths)
            for report in joined["reports"]:
                print(f"{report['file']}: {report['status']} {report.get('counts') or report.get('reason')}")
            if not joined["partitions"]:
                # Skipped, so no labelled_predictions event: nothing new to measure.
                raise AirflowSkipException(f"{joined['files']} labels file(s), no new labels joined")
            summary = {key: joined[key] for key in ("files", "joined", "partitions")}
            context["outlet_events"][labelled].extra = summary
            return summary

        join()

    return join_labels()
