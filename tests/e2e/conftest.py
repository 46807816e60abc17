"""The production topology, shared by the tests that need it (one stack start per session)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from airloop.config import load_config
from airloop.demo.flights import land_month
from airloop.demo.replay import wait_for_dags
from airloop.ops.stack import Stack, Topology
from airloop.orchestration.naming import STAGES, dag_id
from airloop.paths import StatePaths
from airloop.pipelines.ingest_data import ingest_landed
from tests.conftest import FLIGHTS_CONFIG
from tests.services import POSTGRES, postgres_database, redis_database

# A password in every database URL. This machine's PostgreSQL trusts local connections, so it
# is never checked, but it travels wherever the URLs do: a secret to look for in the logs.
DB_PASSWORD = f"pw-{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Production:
    stack: Stack
    paths: StatePaths  # this stack's state, tracking into its MLflow server
    airflow_db: str
    mlflow_db: str


def database_url(name: str) -> str:
    return POSTGRES.replace("postgres@", f"postgres:{DB_PASSWORD}@") + f"/{name}"


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    """docker-compose's topology run natively on 127.0.0.1: Airflow's metadata on PostgreSQL,
    the CeleryExecutor with Redis as broker and a Celery worker, an MLflow server on
    PostgreSQL (also the MLflow UI the Airflow UI links to). Two validated months of flights,
    no model yet."""
    paths = StatePaths(tmp_path_factory.mktemp("production") / "state")
    with (
        postgres_database("airloop_airflow") as airflow_db,
        postgres_database("airloop_mlflow") as mlflow_db,
        redis_database() as broker,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("AIRLOOP_HOME", str(paths.home))
        env.setenv("BENTOML_HOME", str(paths.bentoml_home))
        flights = paths.for_model("flights")
        # Ingested before Airflow starts, so its ingest DAG never sees these files land.
        for month in (1, 2):
            land_month(month, flights.landing)
        assert all(outcome["accepted"] for outcome in ingest_landed(load_config(), flights))
        topology = Topology("celery", database_url(airflow_db), broker, database_url(mlflow_db))
        stack = Stack(paths, configs=str(FLIGHTS_CONFIG), topology=topology)
        env.setenv("AIRLOOP_MLFLOW_UI_URL", str(stack.mlflow_url))  # for the Airflow UI's links
        try:
            stack.start()
            env.setenv("MLFLOW_TRACKING_URI", str(stack.mlflow_url))
            wait_for_dags(stack.client(), [dag_id("flights", stage) for stage in STAGES])
            yield Production(
                stack, StatePaths(paths.home, stack.mlflow_url, "flights"), airflow_db, mlflow_db
            )
        finally:
            stack.stop()
