"""Score the candidate, the champion and the naive baseline on the same frozen evaluation set."""

from __future__ import annotations

import pandas as pd

from airloop.config import AirloopConfig
from airloop.evaluation.gate import Decision, compare_to_champion
from airloop.evaluation.metrics import baseline_metrics, evaluate_model
from airloop.evaluation.records import write_record
from airloop.paths import StatePaths
from airloop.registry import current_champion
from airloop.tracking import tracking_client
from airloop.training.dataset import TrainingWindow
from airloop.training.train import TrainResult


def evaluate_candidate(
    config: AirloopConfig,
    window: TrainingWindow,
    candidate: TrainResult,
    paths: StatePaths,
    run_key: str,
    triggers: list[str],
) -> dict:
    """Score champion and baseline on the window's evaluation set, decide, keep the decision record.

    Returns the record (also written to reports/decisions/<run_key>.json): what was
    compared, every metric, the verdict and its reason.
    """
    import mlflow

    mlflow.set_tracking_uri(paths.tracking_uri())
    evaluation = pd.read_parquet(window.eval_path)
    train = pd.read_parquet(window.train_path, columns=[config.dataset.target.column])
    # The trainer scored the candidate on this same evaluation set with evaluate_model.
    candidate_metrics = candidate.metrics
    baseline = baseline_metrics(train, evaluation, config)

    champion = current_champion(tracking_client(paths), config.model.registered_name)
    champion_metrics = None
    if champion is not None:
        champion_metrics = evaluate_model(mlflow.sklearn.load_model(champion.uri), evaluation, config)

    decision: Decision = compare_to_champion(
        config.gate,
        candidate_metrics,
        baseline,
        champion_metrics,
        champion.version if champion else None,
    )
    record = {
        "run_key": run_key,
        "triggers": sorted(triggers),
        "eval_partition": window.eval_partition,
        "train_partitions": window.train_partitions,
        "train_hash": window.train_hash,
        "eval_hash": window.eval_hash,
        "candidate_run_id": candidate.run_id,
        "candidate_model_uri": candidate.model_uri,
        "metrics": {"candidate": candidate_metrics, "champion": champion_metrics, "baseline": baseline},
        "decision": decision.to_dict(),
    }
    write_record(paths.decision_record(run_key), record)
    return record
