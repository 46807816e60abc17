"""monitor_drift: the champion's reference profile (logged when it was trained) vs the current
window: the newest validated partitions, what the served champion was asked, or both
(`drift.current`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from airloop.monitoring.drift import DriftResult
    from airloop.monitoring.performance import PerformanceCheck

# What a check can signal; continuous training's policy decides which of them retrain.
DATA_DRIFT, PREDICTION_DRIFT, PERFORMANCE_DROP = "data_drift", "prediction_drift", "performance_drop"


def check_drift(config: AirloopConfig, paths: StatePaths, run_key: str, now: datetime | None = None) -> dict:
    """Compare, keep the report, log the check; returns a small summary with `drift_detected`.

    The current window (`drift.current`): "ingested", the newest `drift.window_partitions`
    validated partitions; "served", what the champion version answered in the last
    `drift.served_hours` (from the prediction log), with its live performance on the labels
    joined in that time; "both", each checked on its own, the served one under `served`.
    A served check's `served_rows` are the champion's answers it measured;
    `served_rows_by_version` counts every version's answers in the window.
    The summary's `signals` name what was found (data drift, prediction drift, a
    performance drop); `drift_detected` is true when there is any. With no champion or no
    data yet there is nothing to compare: the summary says `skipped` and why, never a
    silent "no drift". Every check, skipped or not, is an MLflow run in the monitoring
    experiment (`mlflow_run_id`).
    """
    mode = config.drift.current
    now = now or datetime.now(UTC)
    partitions = validated_partitions(paths)[-config.drift.window_partitions :] if mode != "served" else []
    champion = current_champion(tracking_client(paths), config.model.registered_name)
    base = {
        "run_key": run_key,
        "current": mode,
        "current_partition": partitions[-1] if partitions else None,
        "current_partitions": partitions,
        "champion_version": champion.version if champion else None,
        "signals": [],
    }
    if champion is None or (mode == "ingested" and not partitions):
        why = "no champion model yet" if champion is None else "no validated data yet"
        return _keep(config, paths, {**base, "status": "skipped", "drift_detected": False, "reason": why})

    reference_hash = champion.tags.get("airloop.data_hash", "")
    try:
        reference, reference_source = _reference(config, paths, champion.run_id, reference_hash)
    except FileNotFoundError as missing:
        why = f"champion v{champion.version}'s reference data cannot be found: {missing}"
        return _keep(config, paths, {**base, "status": "skipped", "drift_detected": False, "reason": why})
    sources = {"reference_hash": reference_hash, "reference_source": reference_source}
    served = _measure_served(config, paths, champion, reference, now) if mode != "ingested" else None
    if mode == "served" or not partitions:
        assert served is not None
        return _keep(config, paths, {**base, **sources, **served})
    measured = _measure(config, paths, champion, reference, partitions)
    if served is not None:
        signals = sorted({*measured["signals"], *served["signals"]})
        measured = {
            **measured, "served": served, "signals": signals, "drift_detected": bool(signals),
            "reason": f"ingested: {measured['reason']}; served: {served['reason']}",
        }  # fmt: skip
    return _keep(config, paths, {**base, **sources, **measured})


def _measure_served(
    config: AirloopConfig,
    paths: StatePaths,
    champion: RegisteredModel,
    reference: ReferenceProfile,
    now: datetime,
) -> dict:
    """Drift of what the champion version was asked (and answered) in the last
    drift.served_hours, and its live performance on the labels joined in that time."""
    from airloop.monitoring.dashboard import SERVED, ensure_dashboard, keep_live_performance
    from airloop.monitoring.drift import compare_to_reference
    from airloop.monitoring.value_ranges import out_of_range_shares
    from airloop.production.labels_join import LABELLED_AT, labelled_predictions
    from airloop.production.live_performance import (
        champion_performance,
        daily_performance,
        logged_scores,
        version_classes,
    )
    from airloop.production.predictions import read_log, recent, served_frame

    since = recent(config.drift.served_hours, now)
    log = read_log(config, paths, since=since, until=now, roles=("served",))
    answered_by = log["model_version"].astype(str)
    # Only the champion's answers are measured; other versions' (a canary, the champion
    # before a promotion) are counted apart.
    current = served_frame(log[answered_by == str(champion.version)])
    features_only = served_config(config)
    classes = logged_classes(champion.uri)
    predictions = None
    if len(current):
        scores = logged_scores(current, config, classes)
        predictions = predicted_classes(scores, classes) if classes is not None else scores
    else:
        current = pd.DataFrame({c: pd.Series(dtype=object) for c in features_only.drift_columns()})
    name = safe_key(f"served_{now:%Y%m%dT%H%M%S}_v{champion.version}")
    result = compare_to_reference(
        reference, current, features_only, paths.report_dir("drift"), name, predictions,
        paths.evidently_workspace, tags=(SERVED,),
    )  # fmt: skip
    labelled = labelled_predictions(paths)
    if len(labelled):
        labelled = labelled[pd.to_datetime(labelled[LABELLED_AT], utc=True) >= since]
    versions = sorted(set(labelled["model_version"].astype(str))) if len(labelled) else []
    expected = _evaluated_metric(paths, champion, config)
    performance = champion_performance(config, labelled, champion.version, expected, classes)
    workspace = paths.evidently_workspace
    live_run = keep_live_performance(
        workspace, config, labelled, champion.version, classes, f"{name}_performance"
    )
    ensure_dashboard(workspace, config.name, config.task, config.gate.metric)
    signals = _signals(config, result, performance)
    return {
        **result.summary(),
        "reason": f"{len(current)} served rows since {since:%Y-%m-%d %H:%M} UTC: {result.reason}; "
        f"{performance.reason}",
        "served_rows": len(current),
        "served_rows_by_version": {str(v): int(n) for v, n in sorted(answered_by.value_counts().items())},
        "served_since": since.isoformat(),
        "out_of_range_shares": out_of_range_shares(reference, current, features_only) if len(current) else {},
        "performance": performance.to_dict(),
        "live_performance": daily_performance(
            config, labelled, version_classes(config, versions, {str(champion.version): classes})
        ),
        "live_performance_run": live_run,
        "signals": signals,
        "drift_detected": bool(signals),
    }


def served_config(config: AirloopConfig) -> AirloopConfig:
    """The config whose compared columns are the features only: requests carry no label."""
    features = set(config.dataset.features)
    compared = tuple(c for c in config.drift_columns() if c in features)
    drift = config.drift.model_copy(
        update={
            "columns": compared,
            "methods": {c: m for c, m in config.drift.methods.items() if c in features},
            "thresholds": {c: t for c, t in config.drift.thresholds.items() if c in features},
        }
    )
    return config.model_copy(update={"drift": drift})


def _signals(config: AirloopConfig, result: DriftResult, performance: PerformanceCheck) -> list[str]:
    """What a check found, as continuous training's policy reads it."""
    signals = []
    if result.status == "drift":
        if result.drift_share is not None and result.drift_share >= config.drift.share_threshold:
            signals.append(DATA_DRIFT)
        if result.prediction_drift is not None and result.prediction_drift.drifted:
            signals.append(PREDICTION_DRIFT)
    if performance.degraded:
        signals.append(PERFORMANCE_DROP)
    return signals


def _measure(
    config: AirloopConfig,
    paths: StatePaths,
    champion: RegisteredModel,
    reference: ReferenceProfile,
    partitions: list[str],
) -> dict:
    """Data, prediction and performance drift of the window; the summary's measured part."""
    import mlflow

    from airloop.monitoring.dashboard import INGESTED, ensure_dashboard
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
        reference, current, config, paths.report_dir("drift"), name, predictions, paths.evidently_workspace,
        tags=(INGESTED,),
    )  # fmt: skip
    ensure_dashboard(paths.evidently_workspace, config.name, config.task, config.gate.metric)
    expected = _evaluated_metric(paths, champion, config)
    performance = check_performance(config, expected, current, scores, classes)
    signals = _signals(config, result, performance)
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

    window = summary["current_partition"] or ("served" if summary.get("current") == "served" else "no-data")
    name = safe_key(f"{window}_{summary['run_key']}")
    path = paths.report_dir("drift") / f"{name}.summary.json"
    path.write_text(json.dumps(summary, indent=2))
    summary = {**summary, "summary_path": str(path), "mlflow_run_id": log_check(config, paths, summary)}
    path.write_text(json.dumps(summary, indent=2))
    return summary
