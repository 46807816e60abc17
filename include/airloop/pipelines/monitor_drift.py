"""monitor_drift: the champion's reference profile (logged when it was trained) vs the newest partition."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from airloop.config import AirloopConfig
from airloop.data.ingest import partition_path, validated_partitions
from airloop.data.versioning import cached_file
from airloop.monitoring.reference import REFERENCE_ARTIFACT, ReferenceProfile, reference_profile
from airloop.paths import StatePaths, safe_key
from airloop.registry import current_champion
from airloop.tracking import tracking_client


def check_drift(config: AirloopConfig, paths: StatePaths, run_key: str) -> dict:
    """Compare and keep the Evidently report; returns a small summary with `drift_detected`.

    With no champion or no data yet there is nothing to compare: the summary says
    `skipped` and why, never a silent "no drift".
    """
    from airloop.monitoring.drift import compare_to_reference

    partitions = validated_partitions(paths)
    champion = current_champion(tracking_client(paths), config.model.registered_name)
    current_partition = partitions[-1] if partitions else None
    base = {
        "run_key": run_key,
        "current_partition": current_partition,
        "champion_version": champion.version if champion else None,
    }
    if champion is None or current_partition is None:
        why = "no champion model yet" if champion is None else "no validated data yet"
        return _keep(paths, {**base, "status": "skipped", "drift_detected": False, "reason": why})

    reference_hash = champion.tags.get("airloop.data_hash", "")
    try:
        reference, reference_source = _reference(config, paths, champion.run_id, reference_hash)
    except FileNotFoundError as missing:
        why = f"champion v{champion.version}'s reference data cannot be found: {missing}"
        return _keep(paths, {**base, "status": "skipped", "drift_detected": False, "reason": why})
    current = pd.read_parquet(partition_path(paths, current_partition))
    result = compare_to_reference(
        reference, current, config, paths.report_dir("drift"), name=f"{current_partition}_v{champion.version}"
    )
    return _keep(
        paths,
        {
            **base,
            "reference_hash": reference_hash,
            "reference_source": reference_source,
            **result.summary(),
            "drift_detected": result.drift_detected,
        },
    )


def _reference(
    config: AirloopConfig, paths: StatePaths, run_id: str, data_hash: str
) -> tuple[ReferenceProfile, str]:
    """The champion's reference profile and where it came from.

    The profile its training run logged; for a model trained before profiles were logged,
    one counted now from its training data (by DVC hash). Raises FileNotFoundError when
    neither exists.
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


def _keep(paths: StatePaths, summary: dict) -> dict:
    name = safe_key(f"{summary['current_partition'] or 'no-data'}_{summary['run_key']}")
    (paths.report_dir("drift") / f"{name}.summary.json").write_text(json.dumps(summary, indent=2))
    return summary
