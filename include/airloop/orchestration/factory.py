"""One factory for every model's DAGs: each config of the deployment gets each stage's DAG.

Follows Airflow's guidance on dynamic DAG generation: ids are stable (`<model>__<stage>`,
from the config's `name`), and nothing at parse time touches a database or the network;
only the config files are read. A config that does not load breaks only its own model:
its message (naming the key) becomes an import error of the DAG file in Airflow's UI, and
the other models' DAGs are parsed as usual.
"""

from __future__ import annotations

from airflow.sdk import DAG
from airflow.sdk.bases.timetable import BaseTimetable
from airflow.sdk.exceptions import AirflowTimetableInvalid

from airloop.deployment import Deployment, load_deployment
from airloop.orchestration.naming import STAGES
from airloop.orchestration.stages import (
    continuous_training,
    extract_sql,
    ingest_data,
    join_labels,
    monitor_drift,
    roll_out,
    rollback_champion,
    score_batch,
    watch_service,
)
from airloop.orchestration.wiring import START_DATE, ModelWiring
from airloop.paths import StatePaths

BUILDERS = {
    "ingest_data": ingest_data.build,
    "extract_sql": extract_sql.build,
    "continuous_training": continuous_training.build,
    "monitor_drift": monitor_drift.build,
    "rollback_champion": rollback_champion.build,
    "score_batch": score_batch.build,
    "join_labels": join_labels.build,
    "watch_service": watch_service.build,
    "roll_out": roll_out.build,
}
assert tuple(BUILDERS) == STAGES


def model_dags(wiring: ModelWiring) -> dict[str, DAG]:
    """{dag id: DAG} of one model, one per stage."""
    return {dag.dag_id: dag for dag in (build(wiring) for build in BUILDERS.values())}


def deployment_dags(deployment: Deployment | None = None, paths: StatePaths | None = None) -> dict[str, DAG]:
    """Every model's DAGs, and one DAG that fails to bag when some configs are broken."""
    deployment = deployment or load_deployment()
    paths = paths or StatePaths.from_env()
    dags: dict[str, DAG] = {}
    for config in deployment.models.values():
        dags.update(model_dags(ModelWiring.of(config, paths)))
    if deployment.broken:
        broken = broken_configs_dag(deployment)
        dags[broken.dag_id] = broken
    return dags


class BrokenConfigs(BaseTimetable):
    """The schedule of a DAG that stands for broken config files: validating it, as Airflow
    does before it bags a DAG, raises their messages, so they show as an import error."""

    can_be_scheduled = False

    def __init__(self, message: str) -> None:
        self.message = message

    def validate(self) -> None:
        raise AirflowTimetableInvalid(self.message)


def broken_configs_dag(deployment: Deployment) -> DAG:
    names = ", ".join(path.name for path in deployment.broken)
    message = (
        f"airloop: {len(deployment.broken)} model config(s) do not load ({names}); their models' "
        f"DAGs are missing, the other models run as usual.\n\n" + "\n\n".join(deployment.broken.values())
    )
    return DAG(dag_id="airloop_broken_configs", schedule=BrokenConfigs(message), start_date=START_DATE)
