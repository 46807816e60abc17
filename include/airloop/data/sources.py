"""Where partitions come from: the local landing directory, object storage, or a database.

Whatever the source, a partition ends up as one local file in `paths.landing`, so validation
and versioning only ever see local files.

- Files in the landing directory itself (`source.location` unset) are taken once settled.
- Objects under `source.location` (`file://`, `s3://`, `gs://`, ... or a local path; a
  connection can be named as `s3://conn_id@bucket/prefix`) are read through Airflow's
  ObjectStoragePath and copied into the landing directory, once each (a JSON ledger under
  `paths.model_home` remembers what was fetched). The objects themselves are left in place.
- A SQL source runs its query per partition through an Airflow Connection and writes
  `<partition>.parquet` into the landing directory.

Airflow is imported inside the functions that need it: importing airloop never loads it.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airloop.config import AirloopConfig, FileSource, SqlSource
from airloop.paths import StatePaths

if TYPE_CHECKING:
    import pandas as pd
    from fsspec import AbstractFileSystem

log = logging.getLogger(__name__)

# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; airloop pins psycopg2 (the driver the
# Airflow image and docker-compose.yaml use), so the driver is named explicitly.
_SQLALCHEMY_SCHEMES = {"postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2"}


# --------------------------------------------------------------------------- the landing directory


def settle_seconds(config: AirloopConfig) -> float:
    source = config.dataset.source
    return source.settle_seconds if isinstance(source, FileSource) else 0.0


def is_settled(mtime: float | None, settle: float, now: float) -> bool:
    """Whether a file last changed at `mtime` has been still for `settle` seconds at `now`."""
    # Unknown modification times (some object stores) count as settled: such stores only show an
    # object once its upload is complete.
    return settle <= 0 or mtime is None or now - mtime >= settle


def landed_files(config: AirloopConfig, paths: StatePaths, now: float | None = None) -> list[Path]:
    """Files in the landing directory matching the source's pattern that have not changed for
    `settle_seconds`, oldest partition (sorted name) first."""
    now = time.time() if now is None else now
    return settled_files(paths.landing, config.dataset.source.pattern, settle_seconds(config), now)


def settled_files(folder: Path, pattern: str, settle: float, now: float) -> list[Path]:
    """The files in `folder` matching `pattern` that have been still for `settle` seconds at
    `now`, sorted by name. Dot-files are in flight (writers land under a dot-name, then
    rename) and never match."""
    if not folder.is_dir():
        return []
    found = [
        entry
        for entry in folder.iterdir()
        if matches_pattern(entry.name, pattern)
        and entry.is_file()
        and is_settled(entry.stat().st_mtime, settle, now)
    ]
    return sorted(found, key=lambda p: p.name)


def matches_pattern(name: str, pattern: str) -> bool:
    """Whether a file name is a landed file of `pattern` (a dot-name is still being written)."""
    return not name.startswith(".") and fnmatch.fnmatchcase(name, pattern)


# --------------------------------------------------------------------------- object storage


@dataclass(frozen=True)
class ObjectVersion:
    """What identifies one version of a stored object: a re-delivery changes at least one field."""

    size: int
    mtime: float | None
    etag: str | None


def fetched_ledger_path(paths: StatePaths) -> Path:
    """The JSON ledger of objects already fetched: {object URL: ObjectVersion fields + landed name}."""
    return paths.model_home / "fetched_objects.json"


def fetch_landed_objects(config: AirloopConfig, paths: StatePaths, now: float | None = None) -> list[Path]:
    """Copy each new, settled object under `source.location` that matches `source.pattern` into the
    landing directory; return the local paths newly landed, oldest partition (sorted name) first.

    - Each copy is atomic (`.NAME.tmp`, then renamed to NAME) and keeps the object's modification
      time, so the landed file counts as settled too.
    - An object is fetched once per version: an unchanged object (same size, mtime and etag) is
      never fetched again, even after its landed file was ingested; a changed one is (a
      re-delivered partition). An object that changes while being copied is left for the next call.
    - Nothing happens without a `source.location`, when it is the landing directory itself, or
      while it does not exist yet (logged as a warning).
    - Source objects are never deleted or modified.
    """
    source = config.dataset.source
    if not isinstance(source, FileSource) or not source.location:
        return []
    root = storage_path(source.location)
    if root.protocol in ("", "file") and Path(root.path) == paths.landing.resolve():
        return []
    now = time.time() if now is None else now
    ledger = _read_ledger(paths)
    landed = []
    for info in listed_objects(root.fs, root.path, source.pattern):
        url = root.fs.unstrip_protocol(info["name"])
        version = object_version(info)
        if not is_settled(version.mtime, source.settle_seconds, now) or _already_fetched(
            ledger, url, version
        ):
            continue
        target = copy_object(root.fs, info["name"], version, paths.landing)
        if target is None:
            continue
        ledger[url] = {**asdict(version), "landed": target.name}
        _write_ledger(paths, ledger)
        landed.append(target)
    return sorted(landed, key=lambda p: p.name)


def storage_path(location: str) -> Any:
    """An object-storage URL as Airflow's ObjectStoragePath."""
    from airflow.sdk import ObjectStoragePath

    if "://" not in location:
        location = str(Path(location).expanduser().resolve())
    return ObjectStoragePath(location)


def listed_objects(fs: AbstractFileSystem, directory: str, pattern: str) -> list[dict]:
    """The objects in `directory` whose names match `pattern`, as fsspec lists them."""
    # fsspec caches listings per process (s3fs, gcsfs): a long-lived worker would never see new objects.
    fs.invalidate_cache(directory)
    try:
        entries = fs.ls(directory, detail=True)
    except FileNotFoundError:
        # An object-store prefix exists only once something is under it: before the first
        # delivery there is just nothing to fetch yet.
        log.warning(
            "source.location %s does not exist (yet): nothing to fetch", fs.unstrip_protocol(directory)
        )
        return []
    return [e for e in entries if e.get("type") == "file" and matches_pattern(_basename(e["name"]), pattern)]


def _basename(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def object_version(info: dict) -> ObjectVersion:
    """What identifies this state of an object: its ETag, size and modification time."""
    etag = info.get("ETag") or info.get("etag")
    return ObjectVersion(int(info.get("size") or 0), _mtime(info), str(etag) if etag else None)


def _mtime(info: dict) -> float | None:
    """Seconds since the epoch, from whichever key and type this filesystem reports."""
    for key in ("mtime", "LastModified", "last_modified", "updated"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def _already_fetched(ledger: dict[str, dict], url: str, version: ObjectVersion) -> bool:
    seen = ledger.get(url)
    return seen is not None and {k: seen.get(k) for k in asdict(version)} == asdict(version)


def copy_object(fs: AbstractFileSystem, name: str, version: ObjectVersion, landing: Path) -> Path | None:
    """Copy one object into `landing` atomically; None if it changed while being copied."""
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / _basename(name)
    staging = landing / f".{target.name}.tmp"
    with fs.open(name, "rb") as src, open(staging, "wb") as dst:
        shutil.copyfileobj(src, dst)
    fs.invalidate_cache(name)
    if object_version(fs.info(name)) != version or staging.stat().st_size != version.size:
        staging.unlink()
        return None
    if version.mtime is not None:
        os.utime(staging, (version.mtime, version.mtime))
    os.replace(staging, target)
    return target


def _read_ledger(paths: StatePaths) -> dict[str, dict]:
    ledger = fetched_ledger_path(paths)
    return json.loads(ledger.read_text()) if ledger.is_file() else {}


def _write_ledger(paths: StatePaths, ledger: dict[str, dict]) -> None:
    target = fetched_ledger_path(paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    staging.write_text(json.dumps(ledger, indent=2, sort_keys=True))
    os.replace(staging, target)


# --------------------------------------------------------------------------- SQL through a Connection


def connection_uri(conn_id: str) -> str:
    """The SQLAlchemy URL of an Airflow Connection, found the way Airflow itself would find it.

    Inside a task: the Task SDK's lookup (AIRFLOW_CONN_<ID>, a configured secrets backend, then the
    API server, which reads the metadata DB). Outside one (CLI, tests), the Task SDK only reads
    environment variables and a configured secrets backend, never the metadata DB, so Airflow
    core's lookup is used: a custom secrets backend, AIRFLOW_CONN_<ID>, then the metadata DB.
    postgres:// becomes postgresql+psycopg2://. Raises AirflowNotFoundException for an unknown id.
    """
    return sqlalchemy_url(_connection(conn_id).get_uri())


def _connection(conn_id: str) -> Any:
    if _in_task_process():
        from airflow.sdk import Connection

        return Connection.get(conn_id)
    from airflow.models.connection import Connection as StoredConnection

    return StoredConnection.get_connection_from_secrets(conn_id)


def _in_task_process() -> bool:
    # The task runner (and the dag processor and triggerer) set this once they talk to a supervisor.
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


def sqlalchemy_url(airflow_uri: str) -> str:
    """An Airflow connection URI with its scheme renamed to the SQLAlchemy dialect+driver."""
    scheme, sep, rest = airflow_uri.partition("://")
    return f"{_SQLALCHEMY_SCHEMES.get(scheme, scheme)}{sep}{rest}"


def extract_partition(source: SqlSource, partition: str, uri: str, landing: Path) -> Path:
    """Run `source.query` with `:partition` bound and write the rows to `<landing>/<partition>.parquet`.

    - Atomic: written as `.<partition>.parquet.tmp`, then renamed.
    - An empty result still writes a file with the query's columns (validation then rejects it
      for its row count).
    - Deterministic: rows are put in a canonical order (sorted by every column, left to right)
      rather than trusting the query's ORDER BY, which may have ties or be missing (parallel scans
      return rows in any order). The same rows therefore give byte-identical Parquet, and DVC
      the same hash.
    """
    if not partition or partition.startswith(".") or Path(partition).name != partition:
        raise ValueError(f"partition {partition!r} cannot name a landed file")
    frame = canonical_order(_query(source.query, partition, uri))
    return land_file(landing, f"{partition}.parquet", lambda staging: frame.to_parquet(staging, index=False))


def land_file(landing: Path, name: str, write: Callable[[Path], object]) -> Path:
    """`write` a file into `landing` as `name`, atomically: under a dot-name (which the
    landing glob never matches), then renamed, so no reader sees it half-written."""
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / name
    staging = landing / f".{name}.tmp"
    write(staging)
    os.replace(staging, target)
    return target


def _query(query: str, partition: str, uri: str) -> pd.DataFrame:
    import pandas as pd
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    # One short-lived connection per extraction: tasks are separate processes, a pool would only linger.
    engine = create_engine(uri, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return pd.read_sql(text(query), connection, params={"partition": partition})
    finally:
        engine.dispose()


def canonical_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows sorted by all columns (nulls last), so the same set of rows always has one order.

    Columns whose values cannot be compared (mixed types, dicts) fall back to ordering by a
    stable hash of each row's values.
    """
    import pandas as pd

    if frame.empty:
        return frame.reset_index(drop=True)
    try:
        return frame.sort_values(list(frame.columns), na_position="last", kind="stable", ignore_index=True)
    except TypeError:
        order = pd.util.hash_pandas_object(frame, index=False).argsort(kind="stable")
        return frame.iloc[order.to_numpy()].reset_index(drop=True)
