"""`python -m airloop.ops.preloaded_airflow <command>`: `airflow <command>`, with the pipeline's
libraries imported first.

Airflow starts every task as a fork of a long-lived process: the LocalExecutor's workers
inside the scheduler, or a Celery worker. Each airloop task imports pandas, scikit-learn,
MLflow, Great Expectations or Evidently, 8-15 s on 2 cores, in every task process, unless
the process it is forked from imported them already. So the scheduler (LocalExecutor) and
the Celery worker run through this module. Only imports happen here: nothing starts a
thread or touches a GPU, so forking afterwards stays safe.
"""

from __future__ import annotations

import importlib
import sys
import time

# What the tasks' functions import, including what they import inside their bodies and what
# their libraries import on first use: MLflow's SQL stores (alembic, ORM mappers), skops
# (which walks every scikit-learn module, torch's array-API shim included), DVC's index.
LIBRARIES = (
    "pandas",
    "pyarrow.parquet",
    "pyarrow.csv",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "skops.io",
    "mlflow.sklearn",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.store.db.utils",
    "great_expectations",
    "evidently",
    "bentoml",
    "_bentoml_sdk",
    "dvc.repo",
    "dvc.repo.index",
    "dvc.repo.add",
    "dvc.scm",
    "scmrepo.git",
    "markdown_it",
    "airloop.pipelines.ingest_data",
    "airloop.pipelines.continuous_training",
    "airloop.pipelines.monitor_drift",
    "airloop.evaluation.compare",
    "airloop.packaging.bento",
    "airloop.packaging.skew",
    "airloop.production.batch_scoring",
    "airloop.production.labels_join",
)
# Imported only when some model's family needs them (torch alone is ~300 MB).
FAMILY_LIBRARIES = {"xgboost": ("xgboost",), "torch_mlp": ("torch", "airloop.training.torch_mlp")}


def libraries() -> tuple[str, ...]:
    """LIBRARIES, plus those of the deployment's models' families (`airloop.deployment`)."""
    from airloop.deployment import load_deployment

    families = sorted({config.model.family for config in load_deployment().models.values()})
    return LIBRARIES + tuple(name for family in families for name in FAMILY_LIBRARIES.get(family, ()))


def preload(names: tuple[str, ...]) -> dict[str, float]:
    """Import each module; seconds per module."""
    seconds = {}
    for name in names:
        started = time.monotonic()
        importlib.import_module(name)
        seconds[name] = round(time.monotonic() - started, 2)
    return seconds


def main() -> None:
    took = preload(libraries())
    print(f"airloop: preloaded {len(took)} modules for task processes in {sum(took.values()):.1f} s")
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *sys.argv[1:]]
    sys.exit(airflow_main())


if __name__ == "__main__":
    main()
