"""ingest_data: the oldest landed file → validated (Great Expectations) → versioned (DVC)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airloop.config import AirloopConfig
from airloop.data.ingest import partition_of, store_partition
from airloop.data.sources import landed_files
from airloop.paths import StatePaths


def fetch_from_object_storage(config: AirloopConfig, paths: StatePaths) -> list[str]:
    """Copy new, settled objects from `source.location` into the landing directory."""
    from airloop.data.sources import fetch_landed_objects

    return [str(p) for p in fetch_landed_objects(config, paths)]


def extract_from_database(config: AirloopConfig, paths: StatePaths, partition: str) -> str:
    """Land one partition of a SQL source (through its Airflow Connection) as a Parquet file."""
    from airloop.config import SqlSource
    from airloop.data.sources import connection_uri, extract_partition

    source = config.dataset.source
    if not isinstance(source, SqlSource):
        raise ValueError(
            f"dataset.source is {source.kind!r}, not 'sql': there is no database to extract from"
        )
    return str(extract_partition(source, partition, connection_uri(source.conn_id), paths.landing))


def partition_to_extract(config: AirloopConfig, requested: str, period_start: datetime | None) -> str:
    """The partition asked for, else the period a scheduled run covers, named by date_format."""
    if requested:
        return requested
    date_format = config.dataset.partition.date_format
    if period_start is None or date_format is None:
        raise ValueError(
            "say which partition to extract: the 'partition' param is empty and this run "
            "has no data interval (or the partitions are not dates)"
        )
    return period_start.strftime(date_format)


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
