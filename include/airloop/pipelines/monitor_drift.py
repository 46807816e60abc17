"""monitor_drift: the champion's own training data (by its DVC hash) vs the newest partition."""

from __future__ import annotations

import json

import pandas as pd

from airloop.config import AirloopConfig
from airloop.data.ingest import partition_path, validated_partitions
from airloop.data.versioning import cached_file
from airloop.paths import StatePaths, safe_key
from airloop.registry import current_champion
from airloop.tracking import tracking_client


def check_drift(config: AirloopConfig, paths: StatePaths, run_key: str) -> dict:
    """Compare and keep the Evidently report; returns a small summary with `drift_detected`.

    With no champion or no data yet there is nothing to compare: the summary says
    `skipped` and why, never a silent "no drift".
    """
    from airloop.monitoring.drift import compare_frames

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

    reference_hash = champion.tags["airloop.data_hash"]
    reference = pd.read_parquet(cached_file(reference_hash, paths))
    current = pd.read_parquet(partition_path(paths, current_partition))
    result = compare_frames(
        reference, current, config, paths.report_dir("drift"), name=f"{current_partition}_v{champion.version}"
    )
    return _keep(
        paths,
        {
            **base,
            "reference_hash": reference_hash,
            **result.summary(),
            "drift_detected": result.drift_detected,
        },
    )


def _keep(paths: StatePaths, summary: dict) -> dict:
    name = safe_key(f"{summary['current_partition'] or 'no-data'}_{summary['run_key']}")
    (paths.report_dir("drift") / f"{name}.summary.json").write_text(json.dumps(summary, indent=2))
    return summary
