"""Extract a partition from the database (SQL sources): run the config's query, land the result.

For configs whose `dataset.source.kind` is `sql`. Each run runs `dataset.source.query` with
the partition bound to `:partition`, through the Airflow Connection `source.conn_id`, and
writes `<partition>.parquet` into the model's landing directory; its `ingest_data` then
validates and versions it like any landed file. Trigger it with the `partition` param (UI
or REST), or give `schedules.extract_sql` a cron: a scheduled run extracts the period that
just ended, named with `dataset.partition.date_format`.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, dag, task

from airloop.orchestration.wiring import ModelWiring


def build(model: ModelWiring) -> DAG:
    config, paths = model.config, model.paths

    @dag(
        **model.dag_args("extract_sql", "data", __doc__),
        schedule=config.schedules.extract_sql if config.dataset.source.kind == "sql" else None,
        params={
            "partition": Param(
                "",
                type="string",
                description="The partition to extract, e.g. 2013-04 (empty: the period that just ended).",
            )
        },
    )
    def extract_sql():
        @task
        def extract_partition(**context) -> str:
            from airflow.sdk.exceptions import AirflowSkipException

            from airloop.pipelines.ingest_data import extract_from_database, partition_to_extract

            if config.dataset.source.kind != "sql":
                raise AirflowSkipException(
                    f"dataset.source is {config.dataset.source.kind!r}: nothing to extract"
                )
            partition = partition_to_extract(
                config, context["params"]["partition"], context.get("data_interval_start")
            )
            landed = extract_from_database(config, paths, partition)
            print(f"landed {landed}")
            return landed

        extract_partition()

    return extract_sql()
