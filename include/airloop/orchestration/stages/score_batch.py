"""Score batches: the champion scores every file waiting in the model's scoring location.

Runs on `schedules.score_batch` (every 15 minutes by default), and by hand or REST. Each
pending file (`scoring.source`: a folder, object storage, or for a SQL source the
partition each run extracts first) is validated with the model's input suite (the ingest
checks, the target optional), scored by the current `champion` exactly as the served model
scores (its MLflow pipeline), and written to `scoring/scores/<file>-<hash>-v<version>.parquet`
(inference id, model name and version, prediction, score, multiclass probabilities, then the
input's columns); the same rows join the prediction log with role `batch`. Scored files
move to `scored/` beside them; a file that fails validation moves to
`quarantine/scoring/<file>/` with its result, the other files go on, and `report_rejected`
fails naming it. A file already scored by this champion is not scored or logged again.
When anything new was scored, the model's `batch_scores` is emitted with the files, outputs,
model version and rows. Without a champion the run is skipped and the files wait.
`airloop --model <name> score [FILE]` does the same without Airflow.
"""

from __future__ import annotations

from airflow.sdk import DAG, CronTriggerTimetable, Param, dag, task

from airloop.orchestration.wiring import ModelWiring


def build(model: ModelWiring) -> DAG:
    config, paths, batch_scores = model.config, model.paths, model.assets.batch_scores
    from_sql = config.scoring.source.kind == "sql"
    partition = Param(
        "",
        type="string",
        description="SQL scoring sources: the partition to extract and score (empty: the run's period).",
    )

    @dag(
        **model.dag_args("score_batch", "production", __doc__),
        schedule=CronTriggerTimetable(config.schedules.score_batch, timezone="UTC"),
        params={"partition": partition} if from_sql else {},
    )
    def score_batch():
        @task
        def score_pending_files(**context) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from airloop.production.batch_scoring import extract_scoring_partition, score_pending

            if from_sql:
                from airloop.pipelines.ingest_data import partition_to_extract

                wanted = context["params"].get("partition", "")
                wanted = partition_to_extract(config, wanted, context.get("data_interval_start"))
                print(f"extracted {extract_scoring_partition(config, paths, wanted)}")
            summary = score_pending(config, paths)
            for outcome in summary["files"]:
                print(
                    f"{outcome['file']}: {outcome['status']}", outcome.get("output") or outcome.get("reason")
                )
            if summary["status"] != "scored":
                raise AirflowSkipException(summary["reason"])
            return summary

        @task.short_circuit
        def any_scored(summary: dict) -> bool:
            return bool(summary["scored"])

        @task(outlets=[batch_scores])
        def signal_batch_scores(summary: dict, **context) -> dict:
            from airloop.production.batch_scoring import batch_scores_extra

            extra = batch_scores_extra(summary)
            context["outlet_events"][batch_scores].extra = extra
            return extra

        @task(on_failure_callback=model.notify("blocked_partition"))
        def report_rejected(summary: dict) -> None:
            from airflow.sdk.exceptions import AirflowFailException

            rejected = [f for f in summary["files"] if f["status"] == "rejected"]
            if rejected:
                # Already quarantined: a retry would only fail the same way.
                raise AirflowFailException(
                    f"{len(rejected)} file(s) rejected and quarantined: "
                    + "; ".join(f"{f['file']} in {f['quarantined']}: {f['reason']}" for f in rejected)
                )

        summary = score_pending_files()
        any_scored(summary) >> signal_batch_scores(summary)
        report_rejected(summary)

    return score_batch()
