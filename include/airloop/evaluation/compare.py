"""Score the candidate, the champion and the naive baseline on the same frozen evaluation set."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from airloop.config import AirloopConfig
from airloop.data.frames import feature_frame
from airloop.data.labels import align_scores, labelled_rows, labels, logged_classes
from airloop.evaluation.evidence import Evidence, latency_p95_ms, paired_bootstrap_gain, segment_scores
from airloop.evaluation.gate import Decision, compare_to_champion
from airloop.evaluation.metrics import baseline_metrics, model_scores, score_all
from airloop.evaluation.records import log_record, write_record
from airloop.paths import StatePaths
from airloop.registry.tracking import point_mlflow_at, tracking_client
from airloop.registry.versions import current_champion
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
    """Measure the evidence, let the gate decide, keep the decision record.

    Returns the record, also written to reports/decisions/<run_key>.json and .md and logged
    to the candidate's MLflow run under decision/: what was compared, every metric, the
    bootstrap interval, segment scores, budgets, each check, the verdict and its reason.
    """
    import mlflow

    point_mlflow_at(paths)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(mlflow.artifacts.download_artifacts(candidate.model_uri, dst_path=scratch))
        model, model_mb = mlflow.sklearn.load_model(str(model_dir)), _megabytes(model_dir)
        classes = logged_classes(str(model_dir))
    evaluation = pd.read_parquet(window.eval_path)
    # Scored in the candidate's classes: a multiclass model scores only the classes it knows.
    rows = labelled_rows(evaluation, config, classes)
    features, y_true = feature_frame(rows, config), labels(rows, config, classes).to_numpy()
    train = pd.read_parquet(window.train_path, columns=[config.dataset.target.column])
    baseline = baseline_metrics(train, evaluation, config, classes)
    scores = model_scores(model, features, config)
    candidate_metrics = score_all(y_true, scores, config)
    gate, metric = config.gate, config.gate.metric
    evidence = Evidence(
        metric,
        candidate_metrics[metric],
        baseline[metric],
        latency_p95_ms=latency_p95_ms(model, features) if gate.max_latency_ms is not None else None,
        model_mb=model_mb,
    )
    champion = current_champion(tracking_client(paths), config.model.registered_name)
    champion_metrics = None
    if champion is not None:
        champion_scores = model_scores(mlflow.sklearn.load_model(champion.uri), features, config)
        if classes is not None:
            champion_scores = align_scores(champion_scores, logged_classes(champion.uri) or [], classes)
        champion_metrics = score_all(y_true, champion_scores, config)
        interval = None
        if gate.bootstrap_resamples:
            interval = paired_bootstrap_gain(
                metric,
                y_true,
                scores,
                champion_scores,
                gate.bootstrap_resamples,
                gate.confidence,
                config.model.seed,
            )
        evidence = replace(
            evidence,
            champion=champion_metrics[metric],
            champion_version=champion.version,
            gain_interval=interval,
            segments=segment_scores(
                metric, rows, y_true, scores, champion_scores, gate.segments, gate.min_segment_rows
            ),
        )

    decision: Decision = compare_to_champion(config.gate, evidence)
    record = {
        "run_key": run_key,
        "triggers": sorted(triggers),
        "eval_partition": window.eval_partition,
        "classes": classes,
        "train_partitions": window.train_partitions,
        "train_hash": window.train_hash,
        "eval_hash": window.eval_hash,
        "candidate_run_id": candidate.run_id,
        "candidate_model_uri": candidate.model_uri,
        "metrics": {"candidate": candidate_metrics, "champion": champion_metrics, "baseline": baseline},
        "evidence": evidence.to_dict(),
        "decision": decision.to_dict(),
    }
    path = paths.decision_record(run_key)
    write_record(path, record)
    log_record(tracking_client(paths), candidate.run_id, path)
    return record


def _megabytes(directory: Path) -> float:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 1024**2
