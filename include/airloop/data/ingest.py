"""Ingestion: landed files become validated, versioned partitions.

A partition is one file in the landing directory, named after its partition key
(e.g. `2013-04.csv`). Writers land files under a dot-name and rename them into place, so a
file still being written is never picked up. Accepted partitions are stored as Parquet
under the DVC repository; the raw file is archived, never deleted.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from airloop.data.frames import read_table
from airloop.data.versioning import tracked_hash, version_file
from airloop.paths import StatePaths


@dataclass(frozen=True)
class StoredPartition:
    partition: str
    path: str
    rows: int
    dvc_hash: str
    # The same bytes were already versioned for this partition: nothing new downstream.
    unchanged: bool = False

    def summary(self) -> dict:
        return asdict(self)


def partition_of(landed_file: Path) -> str:
    return landed_file.stem


def validated_partitions(paths: StatePaths) -> list[str]:
    """Partitions accepted so far, in order."""
    return sorted(p.stem for p in paths.partitions.glob("*.parquet"))


def partition_path(paths: StatePaths, partition: str) -> Path:
    return paths.partitions / f"{partition}.parquet"


def store_partition(landed_file: Path, paths: StatePaths) -> StoredPartition:
    """Store a validated landed file as a DVC-versioned Parquet partition and archive the raw file.

    Idempotent: storing the same content again gives the same hash and one partition.
    """
    partition = partition_of(landed_file)
    frame = read_table(landed_file)
    target = partition_path(paths, partition)
    previous = tracked_hash(target) if Path(f"{target}.dvc").exists() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    frame.to_parquet(staging, index=False)
    os.replace(staging, target)
    dvc_hash = version_file(target, paths)
    archive = paths.model_home / "archive" / partition
    archive.mkdir(parents=True, exist_ok=True)
    shutil.move(str(landed_file), archive / landed_file.name)
    return StoredPartition(partition, str(target), len(frame), dvc_hash, unchanged=dvc_hash == previous)
