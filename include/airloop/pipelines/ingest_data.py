"""ingest_data: the oldest landed file → validated (Great Expectations) → versioned (DVC)."""

from __future__ import annotations

from pathlib import Path

from airloop.config import AirloopConfig
from airloop.data.ingest import landed_files, partition_of, store_partition
from airloop.paths import StatePaths


def next_landed_file(config: AirloopConfig, paths: StatePaths) -> str | None:
    """The landed file to take next (oldest partition first), or None when landing is empty."""
    files = landed_files(config, paths)
    return str(files[0]) if files else None


def validate_landed_file(landed_file: str, config: AirloopConfig, paths: StatePaths) -> dict:
    """Validate one landed file; a failing one is quarantined and PartitionRejected raised."""
    from airloop.data.validation import validate_partition

    path = Path(landed_file)
    return validate_partition(path, config, paths, partition_of(path)).summary()


def version_partition(landed_file: str, paths: StatePaths) -> dict:
    """Store a validated file as a DVC-versioned partition; returns partition, rows and hash."""
    return store_partition(Path(landed_file), paths).summary()


def ingest_landed(config: AirloopConfig, paths: StatePaths) -> list[dict]:
    """Every landed file through validation and versioning, as the DAG does, without Airflow.

    Rejected partitions are quarantined and reported, not raised, so the rest go on.
    """
    from airloop.data.validation import PartitionRejected

    outcomes = []
    while (landed := next_landed_file(config, paths)) is not None:
        try:
            validation = validate_landed_file(landed, config, paths)
        except PartitionRejected as rejected:
            outcomes.append({"file": landed, "accepted": False, "reason": str(rejected)})
            continue
        outcomes.append(
            {"file": landed, "accepted": True, "validation": validation, **version_partition(landed, paths)}
        )
    return outcomes
