"""monitor_drift: the champion's reference profile (logged when it was trained) vs the newest window."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from airloop.config import AirloopConfig
from airloop.data.frames import feature_frame
from airloop.data.ingest import partition_path, validated_partitions
from airloop.data.labels import logged_classes, predicted_classes
from airloop.data.versioning import cached_file
from airloop.evaluation.metrics import model_scores
from airloop.monitoring.reference import REFERENCE_ARTIFACT, ReferenceProfile, reference_profile
from airloop.paths import StatePaths, safe_key
from airloop.registry.tracking import point_mlflow_at, tracking_client
from airloop.registry.versions import RegisteredModel, current_champion

# What a check can signal; continuous training's policy decides which of them retrain.
DATA_DRIFT, PREDICTION_DRIFT, PERFORMANCE_DROP = "data_drift", "prediction_drift", "performance_drop"


def check_drift(config: AirloopConfig, paths: StatePaths, run_key: str) -> dict:
    """Compare, keep the report, log the check; returns a small summary with `drift_detected`.

    The current window is the newest `drift.window_partitions` validated partitions. The
    summary's `signals` name what was found (data drift, prediction drift, a performance
    drop on labelled rows); `drift_detected` is true when there is any. With no champion or
    no data yet there is nothing to compare: the summary says `skipped` and why, never a
    silent "no drift". Every check, skipped or not, is an MLflow run in the monitoring
    experiment (`mlflow_run_id`).
    """
    partitions = validated_partitions(paths)[-config.drift.window_partitions :]
    champion = current_champion(tracking_client(paths), config.model.registered_name)
    base = {
        "run_key": run_key,
        "current_partition": partitions[-1] if partitions else None,
        "current_partitions": partitions,
        "champion_version": champion.version if champion else None,
        "signals": [],
    }
    if champion is None or not partitions:
        why = "no champion model yet" if champion is None else "no validated data yet"
        return _keep(config, paths, {**base, "status": "skipped", "drift_detected": False, "reason": why})

    reference_hash = champion.tags.get("airloop.data_hash", "")
    try:
        reference, reference_source = _reference(config, paths, champion.run_id, reference_hash)
    except FileNotFoundError as missing:
        why = f"champion v{champion.version}'s reference data cannot be found: {missing}"
        return _keep(config, paths, {**base, "status": "skipped", "drift_detected": False, "reason": why})
    measured = _measure(config, paths, champion, reference, partitions)
    sources = {"reference_hash": reference_hash, "reference_source": reference_source}
    return _keep(config, paths, {**base, **sources, **measured})


def _measure(
    config: AirloopConfig,
    paths: StatePaths,
    champion: RegisteredModel,
    reference: ReferenceProfile,
    partitions: list[str],
) -> dict:
    """Data, prediction and performance drift of the window; the summary's measured part."""
    import mlflow

    from airloop.monitoring.drift import compare_to_reference
    from airloop.monitoring.performance import check_performance

    current = pd.concat([pd.read_parquet(partition_path(paths, p)) for p in partitions], ignore_index=True)
    point_mlflow_at(paths)
    model = mlflow.sklearn.load_model(champion.uri)
    scores = model_scores(model, feature_frame(current, config), config)
    # A multiclass model's predictions drift as the distribution of the classes it answers.
    classes = logged_classes(champion.uri)
    predictions = predicted_classes(scores, classes) if classes is not None else scores
    name = safe_key(f"{partitions[-1]}_v{champion.version}")
    result = compare_to_reference(
        reference, current, config, paths.report_dir("drift"), name, predictions, paths.evidently_workspace
    )
    expected = _evaluated_metric(paths, champion, config)
    performance = check_performance(config, expected, current, scores, classes)
    signals = []
    if result.status == "drift":
        if result.drift_share is not None and result.drift_share >= config.drift.share_threshold:
            signals.append(DATA_DRIFT)
        if result.prediction_drift is not None and result.prediction_drift.drifted:
            signals.append(PREDICTION_DRIFT)
    if performance.degraded:
        signals.append(PERFORMANCE_DROP)
    reason = result.reason if performance.status == "skipped" else f"{result.reason}; {performance.reason}"
    return {
        **result.summary(),
        "reason": reason,
        "performance": performance.to_dict(),
        "signals": signals,
        "drift_detected": bool(signals),
        "predicted_rows": len(scores),
    }


def _evaluated_metric(paths: StatePaths, champion: RegisteredModel, config: AirloopConfig) -> float | None:
    """What the champion scored on its own evaluation set when it was trained."""
    metrics = tracking_client(paths).get_run(champion.run_id).data.metrics
    return metrics.get(f"eval_{config.gate.metric}")


def _reference(
    config: AirloopConfig, paths: StatePaths, run_id: str, data_hash: str
) -> tuple[ReferenceProfile, str]:
    """The champion's reference profile and where it came from.

    The profile its training run logged; for a model trained before profiles were logged,
    one counted now from its training data (by DVC hash), without prediction scores. Raises
    FileNotFoundError when neither exists.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, tracking_uri=paths.tracking_uri()
        )
        return ReferenceProfile.load(Path(local)), f"run {run_id}: {REFERENCE_ARTIFACT}"
    except (MlflowException, OSError):
        pass
    if not data_hash:
        raise FileNotFoundError("its version has no airloop.data_hash tag and its run no reference profile")
    data = cached_file(data_hash, paths)
    return reference_profile(pd.read_parquet(data), config), f"counted from DVC data {data_hash}"


def _keep(config: AirloopConfig, paths: StatePaths, summary: dict) -> dict:
    """Write the summary beside the reports and log the check to the monitoring experiment."""
    from airloop.monitoring.history import log_check

    name = safe_key(f"{summary['current_partition'] or 'no-data'}_{summary['run_key']}")
    path = paths.report_dir("drift") / f"{name}.summary.json"
    path.write_text(json.dumps(summary, indent=2))
    summary = {**summary, "summary_path": str(path), "mlflow_run_id": log_check(config, paths, summary)}
    path.write_text(json.dumps(summary, indent=2))
    return summary
