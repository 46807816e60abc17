"""How a model's Airflow objects are named: every DAG id and tag carries the model's name."""

from __future__ import annotations

# The stages each model runs, one DAG each.
STAGES = (
    "ingest_data",
    "extract_sql",
    "continuous_training",
    "monitor_drift",
    "rollback_champion",
    "score_batch",
    "join_labels",
    "watch_service",
    "roll_out",
)
SEPARATOR = "__"


def dag_id(model: str, stage: str) -> str:
    """`flights__continuous_training`: the model first, so one model's DAGs sort together."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; the stages: {list(STAGES)}")
    return f"{model}{SEPARATOR}{stage}"


def split_dag_id(dag: str) -> tuple[str, str]:
    """(model, stage) of an airloop DAG id; ValueError for any other DAG."""
    model, _, stage = dag.rpartition(SEPARATOR)
    if not model or stage not in STAGES:
        raise ValueError(f"{dag!r} is not an airloop DAG id (<model>{SEPARATOR}<stage>)")
    return model, stage


def model_tag(model: str) -> str:
    """The tag the Airflow UI's DAG list filters one model's DAGs by."""
    return f"model:{model}"
