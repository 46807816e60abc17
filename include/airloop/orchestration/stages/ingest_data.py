"""Ingest landed partitions: validate with Great Expectations, version with DVC, signal new data.

Runs continuously: each run waits for a file in the model's landing directory (deferred to
the triggerer; with an object-storage `source.location`, new objects are fetched into
landing first), takes the oldest through validation and versioning, and emits the model's
`validated_data` with the partition, its row count and DVC hash. Partitions from a SQL
source are landed by the model's `extract_sql` DAG. A partition that fails validation is
moved to `quarantine/<partition>/` with its validation result and the run fails, naming the
expectations and columns; nothing reaches training.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk import DAG, dag, task

from airloop.orchestration.wiring import ModelWiring


def build(model: ModelWiring) -> DAG:
    config, paths, validated_data = model.config, model.paths, model.assets.validated_data

    @dag(
        **model.dag_args("ingest_data", "data", __doc__),
        schedule="@continuous",
    )
    def ingest_data():
        if getattr(config.dataset.source, "location", None):

            @task.sensor(
                poke_interval=30,
                timeout=timedelta(hours=6).total_seconds(),
                mode="reschedule",
                soft_fail=True,
            )
            def fetch_from_object_storage() -> bool:
                from airloop.pipelines.ingest_data import fetch_from_object_storage, next_landed_file

                fetch_from_object_storage(config, paths)
                return next_landed_file(config, paths) is not None

            wait = fetch_from_object_storage()
        else:
            wait = FileSensor(
                task_id="wait_for_landed_file",
                filepath=paths.landing_pattern(config.dataset.source.pattern),
                deferrable=True,
                poke_interval=2,
                timeout=timedelta(hours=6).total_seconds(),
                soft_fail=True,
            )

        @task
        def take_next_file() -> str:
            from airflow.sdk.exceptions import AirflowSkipException

            from airloop.pipelines.ingest_data import next_landed_file

            landed = next_landed_file(config, paths)
            if landed is None:
                raise AirflowSkipException("the landing directory is empty")
            return landed

        @task(on_failure_callback=model.notify("blocked_partition"))
        def validate(landed_file: str, **context) -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from airloop.data.validation import PartitionRejected
            from airloop.pipelines.ingest_data import validate_landed_file

            try:
                outcome = validate_landed_file(landed_file, config, paths)
            except PartitionRejected as rejected:
                if rejected.outcome is not None:
                    model.show_links(context, data_docs=rejected.outcome.docs_path)
                # The partition is already quarantined: a retry would only fail the same way.
                raise AirflowFailException(str(rejected)) from rejected
            model.show_links(context, data_docs=outcome["docs_path"])
            for warning in outcome["warnings"]:
                print(f"WARNING {warning['check']} on {warning['column']}: {warning['details']}")
            print(f"validation result: {outcome['result_path']}")
            print(f"Data Docs page: {outcome['docs_path']}")
            return outcome

        @task(pool=model.dvc_pool, outlets=[validated_data])
        def version(landed_file: str, validation: dict, **context) -> dict:
            from airloop.pipelines.ingest_data import version_partition

            stored = version_partition(landed_file, paths)
            if stored["unchanged"]:
                from airflow.sdk.exceptions import AirflowSkipException

                # Skipped, so no validated_data event: nothing downstream reruns for old data.
                raise AirflowSkipException(
                    f"{stored['partition']} is unchanged (DVC hash {stored['dvc_hash']})"
                )
            context["outlet_events"][validated_data].extra = stored
            return stored

        landed = take_next_file()
        wait >> landed
        version(landed, validate(landed))

    return ingest_data()
