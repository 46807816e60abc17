"""MLflow setup shared by every stage: one tracking store and one experiment per config."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from airloop.config import AirloopConfig
from airloop.paths import StatePaths

if TYPE_CHECKING:
    from mlflow import MlflowClient


def use_tracking(config: AirloopConfig, paths: StatePaths) -> str:
    """Point MLflow at the state dir's store and make sure the config's experiment exists.

    Returns the experiment id. The artifact location is set explicitly because MLflow's
    default is relative to the working directory, which differs between tasks.
    """
    import mlflow

    point_mlflow_at(paths)
    experiment_id = ensure_experiment(tracking_client(paths), config.name, paths)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def ensure_experiment(client: MlflowClient, name: str, paths: StatePaths) -> str:
    """The id of experiment `name`, created (artifacts under the state dir) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    paths.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    return str(client.create_experiment(name, artifact_location=paths.mlflow_artifacts.as_uri()))


def tracking_client(paths: StatePaths) -> MlflowClient:
    from mlflow import MlflowClient

    create_sqlite_store(paths)
    return MlflowClient(tracking_uri=paths.tracking_uri(), registry_uri=paths.tracking_uri())


def create_sqlite_store(paths: StatePaths) -> None:
    """Create the embedded SQLite store, once, under a lock.

    MLflow creates its tables (an Alembic migration) on the first connection to a new file.
    The first tasks of several models start at once, and two migrations of one SQLite file
    collide ("table _alembic_tmp_experiments already exists"): the first creates it while
    the others wait, then find it made. A server (production) migrates its own store.
    """
    created = paths.home / "locks" / "mlflow-store.created"
    if paths.mlflow_server is not None or created.exists():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from airloop.registry.locks import exclusive

    with exclusive(paths.home / "locks" / "mlflow-store.lock"):
        if not created.exists():
            paths.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
            SqlAlchemyStore(paths.tracking_uri(), paths.mlflow_artifacts.as_uri())
            created.touch()


def point_mlflow_at(paths: StatePaths) -> None:
    """MLflow's fluent API (mlflow.start_run, mlflow.pyfunc.load_model) on the state's store."""
    import mlflow

    create_sqlite_store(paths)
    mlflow.set_tracking_uri(paths.tracking_uri())


def config_hash(config: AirloopConfig) -> str:
    """A stable fingerprint of the config's content, for lineage tags."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def environment_tags() -> dict[str, str]:
    """Where a run ran: the code's git commit, the Python, the machine."""
    import os
    import platform
    import subprocess

    from airloop.paths import PROJECT_ROOT

    # Images carry no .git; they are built with the commit in AIRLOOP_GIT_COMMIT.
    commit = (
        os.environ.get("AIRLOOP_GIT_COMMIT")
        or subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    return {
        "airloop.git_commit": commit or "unknown (not a git checkout)",
        "airloop.python": platform.python_version(),
        "airloop.hardware": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
    }


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
