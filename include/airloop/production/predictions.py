"""Reading a model's prediction log (written by `airloop.packaging.prediction_sink`).

The log is many small append-only Parquet files, partitioned by date and hour. Readers
see each prediction once: rows are keyed by (inference_id, role), so a file copied or
written twice (a batch run retried after it logged) is no double count.

What callers were answered is the "served" and "batch" rows (`ANSWERED_ROLES`, what
`read_log` reads unless asked): a shadowed challenger's "shadow" rows, its answers to a copy
of live traffic under the same inference ids, are read only by `shadow_pairs`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from airloop.config import AirloopConfig
from airloop.packaging.prediction_sink import FEATURE_PREFIX, KEY_PREFIX, hashed_columns
from airloop.paths import StatePaths

ANSWERED_ROLES = ("served", "batch")
# Columns every log row has, besides its features and keys.
META_COLUMNS = (
    "inference_id", "served_at", "model_name", "model_version", "role", "latency_ms",
    "prediction", "score", "probabilities",
)  # fmt: skip


def log_location(config: AirloopConfig, paths: StatePaths) -> str:
    """Where the model's log is: the configured object storage, else the model's state."""
    return config.serving.log.location or str(paths.prediction_log)


def log_files(root: str, since: datetime | None = None) -> list[str]:
    """The log's files (oldest first), from the hour of `since` on; a local root only
    lists what is there, an object-storage URL is listed through pyarrow's filesystems."""
    import pyarrow.fs

    filesystem, base = pyarrow.fs.FileSystem.from_uri(root if "://" in root else str(Path(root).resolve()))
    selector = pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True)
    first = f"date={since:%Y-%m-%d}/hour={since:%H}" if since else ""
    files = []
    for info in filesystem.get_file_info(selector):
        relative = info.path[len(base.rstrip("/")) + 1 :]
        name = relative.rpartition("/")[2]
        if info.type != pyarrow.fs.FileType.File or name.startswith(".") or not name.endswith(".parquet"):
            continue
        if relative[: len(first)] >= first:
            files.append(info.path)
    return sorted(files)


def read_log(
    config: AirloopConfig,
    paths: StatePaths,
    since: datetime | None = None,
    until: datetime | None = None,
    roles: tuple[str, ...] = ANSWERED_ROLES,
    versions: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """The logged predictions of `roles` (by default what callers got, never "shadow") and
    of model `versions` (None: any) answered in [since, until), each once; empty (with the
    meta columns) when there are none. Features stay prefixed ("feature.<column>"); see
    `served_frame` for the dataset's own column names."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs

    root = log_location(config, paths)
    files = log_files(root, since)
    if not files:
        return pd.DataFrame(columns=list(META_COLUMNS))
    filesystem, _ = pyarrow.fs.FileSystem.from_uri(root if "://" in root else str(Path(root).resolve()))
    # A retrained model may log other columns: each file keeps its own; missing ones are null.
    schemas = [ds.dataset(f, format="parquet", filesystem=filesystem).schema for f in files]
    dataset = ds.dataset(files, format="parquet", filesystem=filesystem, schema=pa.unify_schemas(schemas))
    condition = ds.field("role").isin(list(roles))
    if versions is not None:
        condition &= ds.field("model_version").isin([str(v) for v in versions])
    if since is not None:
        condition &= ds.field("served_at") >= pa.scalar(_utc(since), pa.timestamp("ms", tz="UTC"))
    if until is not None:
        condition &= ds.field("served_at") < pa.scalar(_utc(until), pa.timestamp("ms", tz="UTC"))
    table = dataset.to_table(filter=condition)
    first = _first_rows(table, ["inference_id", "role"])
    return (table if first is None else table.take(first)).to_pandas()


def served_frame(log: pd.DataFrame) -> pd.DataFrame:
    """The log's rows with the dataset's column names: its features and keys, unprefixed."""
    names = {c: c.partition(".")[2] for c in log.columns if c.startswith((FEATURE_PREFIX, KEY_PREFIX))}
    return log.rename(columns=names)


def shadow_pairs(
    config: AirloopConfig,
    paths: StatePaths,
    champion_version: str,
    challenger_version: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """One row per inference id answered in [since, until) both by `champion_version` (role
    "served": what the caller got) and by `challenger_version` (role "shadow"), in the order
    served: the champion's features and keys (dataset names, as `served_frame`), served_at,
    then `champion_` and `challenger_` + prediction, score, probabilities and latency_ms.
    Ids only one of them answered (the shadow's sampling, a lost mirror) are left out."""
    answer = ["prediction", "score", "probabilities", "latency_ms"]
    served = read_log(config, paths, since, until, roles=("served",), versions=(champion_version,))
    shadow = read_log(config, paths, since, until, roles=("shadow",), versions=(challenger_version,))
    shadow = shadow[["inference_id", *answer]].rename(columns={c: f"challenger_{c}" for c in answer})
    served = served_frame(served.drop(columns=["role", "model_name", "model_version"]))
    served = served.rename(columns={c: f"champion_{c}" for c in answer})
    return served.merge(shadow, on="inference_id", how="inner", sort=False).reset_index(drop=True)


def recent(hours: float, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(hours=hours)


def pii_hashed(config: AirloopConfig, paths: StatePaths) -> set[str]:
    """The dataset columns the log holds as keyed hashes (from the newest file's schema)."""
    import pyarrow.fs
    import pyarrow.parquet as pq

    root = log_location(config, paths)
    files = log_files(root)
    if not files:
        return set()
    filesystem, _ = pyarrow.fs.FileSystem.from_uri(root if "://" in root else str(Path(root).resolve()))
    schema = pq.read_schema(files[-1], filesystem=filesystem)
    return {name.partition(".")[2] for name in hashed_columns(schema)}


def compact_log(config: AirloopConfig, paths: StatePaths, now: datetime | None = None) -> dict[str, int]:
    """Replace each finished hour's many small files (one per worker per flush) by one file
    of the same rows, each prediction once; returns {hours, files} compacted.

    An hour is finished ten minutes after it ends (no writer is still flushing into it).
    The new file is written before the old ones go, so a reader meanwhile may see rows
    twice, which it drops (see the module docstring), never none.
    """
    import pyarrow as pa
    import pyarrow.fs
    import pyarrow.parquet as pq

    from airloop.packaging.prediction_sink import write_table

    root = log_location(config, paths)
    filesystem, base = pyarrow.fs.FileSystem.from_uri(root if "://" in root else str(Path(root).resolve()))
    finished_before = (now or datetime.now(UTC)) - timedelta(hours=1, minutes=10)
    by_hour: dict[datetime, list[str]] = {}
    for path in log_files(root):
        hour = _hour_of(path)
        if hour is not None and hour <= finished_before:
            by_hour.setdefault(hour, []).append(path)
    compacted = {"hours": 0, "files": 0}
    for hour, files in sorted(by_hour.items()):
        if len(files) < 2:
            continue
        tables = [pq.read_table(f, filesystem=filesystem) for f in files]
        table = pa.concat_tables(tables, promote_options="default")
        first = _first_rows(table, ["inference_id", "role"])
        write_table(root, table if first is None else table.take(first), now=hour)
        for path in files:
            filesystem.delete_file(path)
        compacted["hours"] += 1
        compacted["files"] += len(files)
    return compacted


def _hour_of(path: str) -> datetime | None:
    """The hour a log file's partition folders name (date=YYYY-MM-DD/hour=HH), UTC."""
    parts = dict(p.split("=", 1) for p in path.split("/") if p.startswith(("date=", "hour=")))
    try:
        return datetime.strptime(f"{parts['date']} {parts['hour']}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except (KeyError, ValueError):
        return None


def _first_rows(table: Any, keys: list[str]) -> Any:
    """The positions of each key's first row in `table` (in order), None when no key repeats:
    pandas' drop_duplicates on the frame, hashed in Arrow before the text becomes Python
    objects (half the time at a million rows)."""
    import numpy as np
    import pyarrow as pa

    rows = pa.table([*(table.column(k) for k in keys), pa.array(np.arange(table.num_rows))], [*keys, "__row"])
    first = rows.group_by(keys, use_threads=False).aggregate([("__row", "min")])
    if first.num_rows == table.num_rows:
        return None
    return np.sort(first.column("__row_min").to_numpy())


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
