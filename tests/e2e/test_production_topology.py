"""The production topology of docker-compose.yaml, run natively on 127.0.0.1: Airflow's metadata
on PostgreSQL, the CeleryExecutor with Redis as broker and a Celery worker process, and an
MLflow server on PostgreSQL. continuous_training runs end to end on it, triggered the way
CI triggers it, and no secret of the stack reaches a task log or an XCom.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import sqlalchemy as sa

from airloop.config import load_config
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import CHAMPION
from tests.e2e.ci import airloop_trigger
from tests.e2e.conftest import DB_PASSWORD, Production
from tests.services import POSTGRES

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained(production: Production) -> tuple[dict, subprocess.CompletedProcess[str]]:
    """continuous_training triggered the way CI triggers it, waited for."""
    done = airloop_trigger(production.stack, "flights__continuous_training", "--wait", "--timeout", "900")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout), done


def test_continuous_training_succeeds_on_celery_and_registers_into_the_mlflow_server(
    production: Production, trained
) -> None:
    stack, airflow_db, mlflow_db = production.stack, production.airflow_db, production.mlflow_db
    run, _ = trained
    assert run["state"] == "success"
    client = stack.client()
    states = {
        t["task_id"]: t["state"] for t in client.task_instances("flights__continuous_training", run["run_id"])
    }
    assert states["evaluate_candidate"] == "success", states  # the gate decided, on Celery

    # The champion came from a run on this stack (this one, or the browser test's before it).
    registry = tracking_client(production.paths)
    champion = registry.get_model_version_by_alias(load_config().model.registered_name, CHAMPION)
    run_ids = {
        r["dag_run_id"] for r in client.dag_runs("flights__continuous_training") if r["state"] == "success"
    }
    assert champion.tags["airloop.airflow_run_id"] in run_ids

    # The work went through Celery (its results are kept in Airflow's database), and MLflow
    # kept the version in its own PostgreSQL database.
    airflow = sa.create_engine(f"{POSTGRES}/{airflow_db}", poolclass=sa.NullPool)
    with airflow.connect() as connection:
        celery_results = connection.execute(
            sa.text("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
        ).scalar_one()
    assert celery_results >= sum(1 for state in states.values() if state == "success")
    mlflow = sa.create_engine(f"{POSTGRES}/{mlflow_db}", poolclass=sa.NullPool)
    with mlflow.connect() as connection:
        stored = connection.execute(sa.text("SELECT version FROM model_versions")).scalars()
        assert str(champion.version) in {str(version) for version in stored}


def test_no_secret_reaches_a_task_log_an_xcom_or_the_ci_output(production: Production, trained) -> None:
    stack, airflow_db = production.stack, production.airflow_db
    _, done = trained
    settings = stack.settings()
    kept_secret = {
        "database password": DB_PASSWORD,
        "Fernet key": settings["fernet_key"],
        "JWT secret": settings["jwt_secret"],
        "API secret key": settings["api_secret"],
        "admin password": settings["password"],
    }
    task_logs = [p for p in (stack.home / "logs").rglob("*") if p.is_file() and "components" not in p.parts]
    assert task_logs, "no task logs written"
    airflow = sa.create_engine(f"{POSTGRES}/{airflow_db}", poolclass=sa.NullPool)
    with airflow.connect() as connection:
        xcoms = [str(v) for v in connection.execute(sa.text("SELECT value FROM xcom")).scalars()]
    assert xcoms, "no XComs written"
    for what, secret in kept_secret.items():
        leaked = [str(p) for p in task_logs if secret in p.read_text(errors="replace")]
        assert not leaked, f"the {what} is in {leaked}"
        assert not [x for x in xcoms if secret in x], f"the {what} is in an XCom"
        assert secret not in done.stdout + done.stderr, f"the {what} is in the trigger's output"
