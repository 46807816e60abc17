"""The prediction log's format and its writer: what a served model was asked and answered.

Shipped inside every bento beside service.py, so it imports nothing from airloop: only
the standard library and pyarrow. airloop reads the log with `airloop.production.predictions`.

One row per answered record, appended as Parquet files partitioned by the hour answered:

    <root>/date=2026-12-01/hour=14/<HHMMSS.ffffff>-<host>-<pid>-<seq>.parquet

    inference_id   text: the caller's (from the request) or a fresh one, returned to it
    served_at      timestamp (UTC, ms) the answer was computed
    model_name     registered model name
    model_version  registry version
    role           "served" (online: what callers got), "batch" (score_batch), "shadow"
                   (a challenger's answer to a copy of live traffic, never returned to callers)
    latency_ms     time the model took for the batch the record was scored in
    prediction     binary: 0/1; regression: the value; multiclass: the class, as text
    score          binary: P(1); multiclass: the class's probability; regression: null
    probabilities  multiclass: JSON {class: probability}; else null
    feature.<c>    each feature as sent (dates as text)
    key.<c>        the dataset keys that are not features, where the caller sent them

A column marked pii is stored as a keyed hash (HMAC-SHA256 with $AIRLOOP_PII_KEY), or not
at all when it is marked "drop" or no key is set: the log never holds the value.

Files are never rewritten in place: each flush writes a new file under a dot-name and
renames it, so a reader never sees half a file and a crash (even SIGKILL) loses at most
what arrived since the last flush.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

log = logging.getLogger(__name__)

FEATURE_PREFIX = "feature."
KEY_PREFIX = "key."
PII_KEY_ENV = "AIRLOOP_PII_KEY"
# Where a served bento writes its log (set by whoever starts it); unset: no log.
LOG_LOCATION_ENV = "AIRLOOP_PREDICTION_LOG"
ROLES = ("served", "batch", "shadow")
# A server's role (set by whoever starts it): "served" (unset) or "shadow".
ROLE_ENV = "AIRLOOP_ROLE"
SERVER_ROLES = ("served", "shadow")
PII_METADATA = b"airloop.pii_hashed"

_ARROW_TYPES = {
    "int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_(),
    "date": pa.string(), "datetime": pa.string(),
}  # fmt: skip
_PREDICTION_TYPES = {
    "binary_classification": pa.int64(),
    "regression": pa.float64(),
    "multiclass_classification": pa.string(),
}


def log_schema(
    task: str, features: dict[str, str], keys: dict[str, str], pii: dict[str, str], hashing: bool
) -> pa.Schema:
    """The log's columns for a model: `features` and `keys` map column -> airloop type,
    `pii` column -> "hash" | "drop"; a hashed column is text, a dropped one (or a hashed one
    when `hashing` is off: no key) is absent."""
    fields = [
        pa.field("inference_id", pa.string(), nullable=False),
        pa.field("served_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("role", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("prediction", _PREDICTION_TYPES[task]),
        pa.field("score", pa.float64()),
        pa.field("probabilities", pa.string()),
    ]
    hashed = []
    for prefix, columns in ((FEATURE_PREFIX, features), (KEY_PREFIX, keys)):
        for name, kind in columns.items():
            mode = pii.get(name)
            if mode == "drop" or (mode == "hash" and not hashing):
                continue
            if mode == "hash":
                hashed.append(prefix + name)
            fields.append(pa.field(prefix + name, pa.string() if mode == "hash" else _ARROW_TYPES[kind]))
    # Readers (and the labels join, which hashes keys alike) see which columns are hashes.
    return pa.schema(fields, metadata={PII_METADATA: ",".join(hashed).encode()})


def hashed_columns(schema: pa.Schema) -> list[str]:
    """The log columns of `schema` that hold keyed hashes, not values."""
    marked = (schema.metadata or {}).get(PII_METADATA, b"")
    return [name for name in marked.decode().split(",") if name]


def new_inference_id() -> str:
    return uuid.uuid4().hex


def sampled(inference_id: str, rate: float) -> bool:
    """Whether a prediction is kept at sampling `rate`: decided by its id, so every worker
    (and the labels join) agrees on it."""
    if rate >= 1:
        return True
    digest = hashlib.blake2b(inference_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") < rate * 2**32


def pii_hasher(key: bytes) -> Callable[[Any], str | None]:
    """A value's keyed hash as text (a null stays null): equal values hash alike, so a
    hashed key still joins, but the value cannot be read back without the key."""

    def hashed(value: Any) -> str | None:
        if value is None:
            return None
        return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()[:32]

    return hashed


def pii_key_from_env() -> bytes | None:
    value = os.environ.get(PII_KEY_ENV)
    return value.encode() if value else None


def role_from_env() -> str:
    """The role a server logs its answers as: $AIRLOOP_ROLE, "served" when unset or empty.
    Raises ValueError for any other value than "served" or "shadow" (a typo must not log a
    challenger's answers as what callers got)."""
    value = os.environ.get(ROLE_ENV, "").strip() or "served"
    if value not in SERVER_ROLES:
        raise ValueError(f"${ROLE_ENV}={value!r}: a server's role is one of {', '.join(SERVER_ROLES)}")
    return value


@dataclass(frozen=True)
class AnsweredBatch:
    """One model call's records and answers, as the service has them (converted to columns
    only when flushed, off the request path)."""

    served_at_ms: int
    latency_ms: float
    inference_ids: Sequence[str]
    records: Sequence[dict[str, Any]]
    predictions: Sequence[Any]
    scores: Sequence[float | None]
    # multiclass: one {class: probability} per record
    probabilities: Sequence[dict[str, float]] | None = None


def batches_table(
    batches: Sequence[AnsweredBatch], schema: pa.Schema, model_name: str, model_version: str, role: str,
    hash_value: Callable[[Any], str | None] | None,
) -> pa.Table:  # fmt: skip
    """The batches as one table of `schema` (features and keys read from each record)."""
    import json

    def each(get: Callable[[AnsweredBatch], Sequence[Any]]) -> list[Any]:
        return [value for batch in batches for value in get(batch)]

    count = sum(len(b.inference_ids) for b in batches)
    columns: dict[str, list[Any]] = {
        "inference_id": each(lambda b: b.inference_ids),
        "served_at": each(lambda b: [b.served_at_ms] * len(b.inference_ids)),
        "model_name": [model_name] * count,
        "model_version": [model_version] * count,
        "role": [role] * count,
        "latency_ms": each(lambda b: [b.latency_ms] * len(b.inference_ids)),
        "prediction": each(lambda b: b.predictions),
        "score": each(lambda b: b.scores),
        "probabilities": each(
            lambda b: [json.dumps(p) for p in b.probabilities] if b.probabilities else [None] * len(b.scores)
        ),
    }
    if schema.field("prediction").type == pa.string():
        columns["prediction"] = [None if p is None else str(p) for p in columns["prediction"]]
    hashed = set(hashed_columns(schema))
    for name in schema.names:
        if not name.startswith((FEATURE_PREFIX, KEY_PREFIX)):
            continue
        column = name.partition(".")[2]
        values = [record.get(column) for batch in batches for record in batch.records]
        if name in hashed:
            if hash_value is None:
                raise ValueError(f"{name} is pii and no key to hash it with was given")
            values = [hash_value(v) for v in values]
        columns[name] = values
    return pa.table(columns, schema=schema)


def frame_table(
    records: Any, answers: dict[str, Any], schema: pa.Schema, model_name: str, model_version: str,
    role: str, hash_value: Callable[[Any], str | None] | None, types: dict[str, str],
) -> pa.Table:  # fmt: skip
    """`batches_table`'s table built column by column, for many rows at once (batch scoring).

    `records` is a pandas DataFrame holding the features and keys under their dataset names,
    `types` their airloop types (what `log_schema` was given), and `answers` the other
    columns: inference_id, prediction, score and probabilities (JSON text) as arrays (or
    None), served_at (epoch ms) and latency_ms as one value for every row. Pii columns are
    hashed as `batches_table` hashes them: the value as the column's type holds it (an int
    read as a float with nulls still hashes as the int). Raises ValueError naming a column
    whose values are not of its type.
    """
    import pyarrow.compute as pc

    def typed(values: Any, kind: pa.DataType, name: str) -> pa.Array:
        if values is None or isinstance(values, str) or not hasattr(values, "__len__"):
            return pa.repeat(pa.scalar(values, kind), len(records))
        try:
            array = pa.array(values, from_pandas=True)
            if array.type == kind:
                return array
            # Text the way Python writes it, except for integers and strings Arrow casts alike.
            textual = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
            if kind != pa.string() or textual or pa.types.is_integer(array.type):
                return pc.cast(array, kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            if kind != pa.string():
                raise ValueError(f"{name}: the values are not {kind} ({error})") from None
        missing = values.isna().tolist()
        return pa.array([None if m else str(v) for v, m in zip(values.tolist(), missing, strict=True)], kind)

    given = {"model_name": model_name, "model_version": model_version, "role": role, **answers}
    hashed = set(hashed_columns(schema))
    arrays = []
    for field in schema:
        if not field.name.startswith((FEATURE_PREFIX, KEY_PREFIX)):
            arrays.append(typed(given.get(field.name), field.type, field.name))
            continue
        column = field.name.partition(".")[2]
        array = typed(records[column], _ARROW_TYPES[types[column]], field.name)
        if field.name in hashed:
            if hash_value is None:
                raise ValueError(f"{field.name} is pii and no key to hash it with was given")
            array = pa.array([hash_value(v) for v in array.to_pylist()], pa.string())
        arrays.append(array)
    return pa.table(arrays, schema=schema)


def write_table(root: str, table: pa.Table, now: datetime | None = None) -> str:
    """Append `table` to the log at `root` (a local path or an object-storage URL) as one new
    file in the partition of `now` (UTC); returns its path. Local files are written under a
    dot-name and renamed, so no reader ever sees a partial file."""
    import pyarrow.fs
    import pyarrow.parquet as pq

    now = now or datetime.now(UTC)
    filesystem, base = pyarrow.fs.FileSystem.from_uri(root if "://" in root else os.path.abspath(root))
    folder = f"{base.rstrip('/')}/date={now:%Y-%m-%d}/hour={now:%H}"
    name = f"{now:%H%M%S.%f}-{socket.gethostname()}-{os.getpid()}-{next(_sequence)}.parquet"
    filesystem.create_dir(folder, recursive=True)
    final = f"{folder}/{name}"
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        scratch = f"{folder}/.{name}.tmp"
        try:
            pq.write_table(table, scratch, filesystem=filesystem)
        except BaseException:
            # (a full disk: the part written would stay, and take what space is freed)
            with contextlib.suppress(OSError):
                filesystem.delete_file(scratch)
            raise
        filesystem.move(scratch, final)
    else:  # an object store's put is atomic
        pq.write_table(table, final, filesystem=filesystem)
    return final


class _Sequence:
    def __init__(self) -> None:
        self._next, self._lock = 0, threading.Lock()

    def __next__(self) -> int:
        with self._lock:
            self._next += 1
            return self._next


_sequence = _Sequence()


class PredictionLog:
    """A served model's log writer: `append` is cheap and never raises or blocks on I/O; a
    background thread writes what is pending every `flush_seconds`.

    At most `max_pending` records wait; beyond that new ones are dropped and counted
    (`on_dropped`), so an unwritable log never grows memory. A failed write (disk full,
    permissions) is reported to `on_error` and its records are dropped; the next flush tries
    again. `close` writes what is left. `role` is one of ROLES (a server's: `role_from_env()`).
    """

    def __init__(
        self,
        root: str,
        schema: pa.Schema,
        model_name: str,
        model_version: str,
        *,
        role: str = "served",
        flush_seconds: float = 1.0,
        max_pending: int = 100_000,
        sample_rate: float = 1.0,
        pii_key: bytes | None = None,
        on_written: Callable[[int], None] = lambda rows: None,
        on_error: Callable[[Exception], None] = lambda error: None,
        on_dropped: Callable[[int], None] = lambda rows: None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"prediction log role {role!r} is not one of {', '.join(ROLES)}")
        self.root, self.schema = root, schema
        self.model_name, self.model_version, self.role = model_name, model_version, role
        self.flush_seconds, self.max_pending, self.sample_rate = flush_seconds, max_pending, sample_rate
        self.hash_value = pii_hasher(pii_key) if pii_key else None
        self.on_written, self.on_error, self.on_dropped = on_written, on_error, on_dropped
        self._pending: list[AnsweredBatch] = []
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="airloop-prediction-log", daemon=True)
        self._thread.start()

    def append(self, batch: AnsweredBatch) -> None:
        if self.sample_rate < 1:
            batch = _sample(batch, self.sample_rate)
        rows = len(batch.inference_ids)
        if not rows:
            return
        with self._lock:
            if self._pending_rows + rows > self.max_pending:
                dropped = True
            else:
                dropped = False
                self._pending.append(batch)
                self._pending_rows += rows
        if dropped:
            self.on_dropped(rows)

    def flush(self) -> None:
        with self._lock:
            batches, self._pending, self._pending_rows = self._pending, [], 0
        if not batches:
            return
        try:
            table = batches_table(
                batches, self.schema, self.model_name, self.model_version, self.role, self.hash_value
            )
            write_table(self.root, table)
        except Exception as error:  # noqa: BLE001 - the log must never take the service down
            log.warning("prediction log: %d records not written to %s: %s", len(batches), self.root, error)
            self.on_error(error)
            return
        self.on_written(table.num_rows)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.flush_seconds + 30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()


def _sample(batch: AnsweredBatch, rate: float) -> AnsweredBatch:
    keep = [i for i, inference_id in enumerate(batch.inference_ids) if sampled(inference_id, rate)]

    def pick(values: Sequence[Any] | None) -> Sequence[Any] | None:
        return None if values is None else [values[i] for i in keep]

    return AnsweredBatch(
        batch.served_at_ms, batch.latency_ms, [batch.inference_ids[i] for i in keep],
        [batch.records[i] for i in keep], [batch.predictions[i] for i in keep],
        [batch.scores[i] for i in keep], pick(batch.probabilities),
    )  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)
