"""Batch scoring: the champion scores every file pending in the model's scoring location.

Where files wait (`scoring.source`):

- files: a local folder (`location`; none: the model's `scoring/landing`), or object
  storage (`s3://...`, `file://...`, read through Airflow's ObjectStoragePath: each object is
  copied to `scoring/incoming/` to be read). Files matching `pattern` that have not changed
  for `settle_seconds` are pending; dot-names are still being written.
- SQL: `extract_scoring_partition` runs the query for one partition and lands
  `<partition>.parquet` in `scoring/landing`, pending like any other file.

Each pending file, oldest name first:

1. read (CSV or Parquet) and validated with the model's input suite: the ingest suite
   (`airloop.data.validation.validate_frame`) on `scoring_config(config)`, every column and
   table check of the training data except those about a training partition (row-count
   bounds and growth, partition dates), and the target optional (absent, or checked as
   declared). A file that does not read, fails, or cannot be scored moves to
   `quarantine/scoring/<file>/` with its validation result; the other files go on. To score
   it after a fix, put it back in the scoring location.
2. scored by the champion (registry alias `champion`) exactly as it is served: its MLflow
   sklearn pipeline on `airloop.data.frames.feature_frame`.
3. written to `scoring/scores/<file stem>-<sha256[:12]>-v<version>.parquet`: per row an
   inference id, the model's name and version, the prediction, the score (multiclass: the
   predicted class's probability, and `probability.<class>` for every class), then the
   input's own columns as they came, to join back by. An answer column whose name an input
   column already has is prefixed `airloop_`.
4. appended to the prediction log with role "batch": the same inference ids, features and
   keys (pii hashed, as the service logs them).
5. recorded (`scoring/records/<output name>.json`), and moved to `scored/` beside it
   (object storage: the object is moved there); nothing is deleted.

Idempotent per file and champion: the output is keyed by the file's name, content hash and
the champion's version, and its record says it was written and logged. The same file scored
again by the same champion writes and logs nothing (it only leaves the pending location);
a run that died after logging but before its record finds its log file by name and does not
log again. Inference ids are `<key digest>-<row>`: the same rows get the same ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airloop.config import AirloopConfig, FileSource, SqlSource, with_overrides
from airloop.data.pending_files import PendingFile, is_object_storage, move_object, retire
from airloop.data.pending_files import pending_files as waiting_files
from airloop.paths import StatePaths, safe_key

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from airloop.data.validation import ValidationOutcome

ROLE = "batch"
SCORED_FOLDER, QUARANTINE_FOLDER = "scored", "quarantine"
PROBABILITY_PREFIX = "probability."
# The checks about a training partition, which a scoring file is not.
_PARTITION_ONLY = {"min_rows": 1, "max_rows": None, "max_row_growth": None}


# --------------------------------------------------------------------------- what is pending


def scoring_location(config: AirloopConfig, paths: StatePaths) -> str:
    """Where files to score wait: the configured location, else the model's scoring landing."""
    source = config.scoring.source
    location = source.location if isinstance(source, FileSource) else None
    return location or str(paths.scoring_landing)


def pending_files(config: AirloopConfig, paths: StatePaths, now: float | None = None) -> list[PendingFile]:
    """The settled files in the scoring location, oldest name first (objects in object storage
    copied to `scoring/incoming/` first)."""
    source = config.scoring.source
    settle = source.settle_seconds if isinstance(source, FileSource) else 0.0
    incoming = paths.scores.parent / "incoming"
    return waiting_files(scoring_location(config, paths), source.pattern, settle, incoming, now)


def extract_scoring_partition(config: AirloopConfig, paths: StatePaths, partition: str) -> str:
    """A SQL scoring source: land one partition (`:partition` bound) in the scoring landing as
    `<partition>.parquet`, to be scored as a file. Raises ValueError for a files source."""
    from airloop.data.sources import connection_uri, extract_partition

    source = config.scoring.source
    if not isinstance(source, SqlSource):
        raise ValueError(
            f"scoring.source is {source.kind!r}, not 'sql': there is no database to extract from"
        )
    return str(extract_partition(source, partition, connection_uri(source.conn_id), paths.scoring_landing))


# --------------------------------------------------------------------------- the champion


@dataclass(frozen=True)
class Scorer:
    """The champion as batch scoring uses it: its pipeline, and a multiclass model's classes."""

    name: str
    version: str
    model: Any
    classes: list[Any] | None


def champion_scorer(config: AirloopConfig, paths: StatePaths) -> Scorer | None:
    """The current champion, loaded; None when there is none yet. Raises RuntimeError naming
    the version when its model does not load."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from airloop.data.labels import logged_classes
    from airloop.registry.tracking import point_mlflow_at, tracking_client
    from airloop.registry.versions import current_champion

    champion = current_champion(tracking_client(paths), config.model.registered_name)
    if champion is None:
        return None
    point_mlflow_at(paths)
    try:
        model = mlflow.sklearn.load_model(champion.uri)
        multiclass = config.task == "multiclass_classification"
        classes = logged_classes(champion.uri) if multiclass else None
    except (MlflowException, OSError) as error:
        raise RuntimeError(f"champion {champion.uri} does not load: {error}") from None
    if config.task == "multiclass_classification" and not classes:
        raise RuntimeError(f"champion {champion.uri} was logged without its classes")
    return Scorer(champion.name, champion.version, model, classes)


# --------------------------------------------------------------------------- scoring files


def score_pending(config: AirloopConfig, paths: StatePaths, now: float | None = None) -> dict[str, Any]:
    """Score every pending file with the current champion (see the module docstring).

    Returns a small summary: `status` ("scored", "nothing_pending" or "skipped") and its
    `reason`, the champion's name and version, each file's outcome (`files`), and the names
    of the files newly scored, already scored and rejected, with the new outputs and rows.
    With no champion yet nothing is read or moved: the files wait for one.
    """
    location = scoring_location(config, paths)
    pending = pending_files(config, paths, now)
    if not pending:
        return _summary(config, None, [], "nothing_pending", f"no file waits in {location}")
    scorer = champion_scorer(config, paths)
    if scorer is None:
        why = f"no champion model yet: {len(pending)} file(s) wait in {location}"
        return _summary(config, None, [], "skipped", why)
    return _summary(config, scorer, [score_file(config, paths, file, scorer) for file in pending])


def score_given_file(config: AirloopConfig, paths: StatePaths, path: Path) -> dict[str, Any]:
    """Score one named file (`airloop score FILE`) as a pending one is, except that a file
    outside the scoring location stays where it is, scored or rejected."""
    path = Path(path).resolve()
    location = scoring_location(config, paths)
    inside = not is_object_storage(location) and path.parent == Path(location).expanduser().resolve()
    if not path.is_file():
        return _summary(config, None, [], "skipped", f"no such file: {path}")
    scorer = champion_scorer(config, paths)
    if scorer is None:
        return _summary(config, None, [], "skipped", f"no champion model yet: {path.name} is not scored")
    return _summary(
        config, scorer, [score_file(config, paths, PendingFile(path.name, path), scorer, not inside)]
    )


def batch_scores_extra(summary: dict[str, Any]) -> dict[str, Any]:
    """What the model's `batch_scores` asset carries for downstream consumers."""
    keys = ("scored", "outputs", "model_name", "model_version", "rows")
    return {"files": summary["scored"], **{key: summary[key] for key in keys if key != "scored"}}


def score_file(
    config: AirloopConfig, paths: StatePaths, file: PendingFile, scorer: Scorer, leave: bool = False
) -> dict[str, Any]:
    """Validate, score, write and log one file, record it, and move it out of the pending
    location (unless `leave`). Never raises for a bad file: it is rejected (quarantined,
    unless `leave`) with the reason. Returns its outcome, `status` "scored",
    "already_scored" or "rejected"."""
    digest = _sha256(file.local)
    key = f"{safe_key(file.local.stem)}-{digest[:12]}-v{scorer.version}"
    output, record_path = paths.scores / f"{key}.parquet", _records(paths) / f"{key}.json"
    base: dict[str, Any] = {"file": file.name, "sha256": digest, "model_version": scorer.version}
    record = _read_json(record_path)
    if record.get("status") == "scored":
        kept = {"output": str(output), "rows": record.get("rows")}
        return {**base, "status": "already_scored", **kept, **_retire(file, leave)}
    result_path = paths.report_dir("scoring") / f"{key}.validation.json"
    try:
        frame, outcome = _read_and_validate(file, config, result_path)
        scores_table, log_table = _answer(config, paths, frame, scorer, key, file.name, result_path)
    except _Rejected as rejected:
        return _reject(paths, file, base, rejected.outcome, leave)
    del frame
    _write_parquet(scores_table, output)
    log_file = _log_once(config, paths, log_table, record_path, {**base, "output": str(output)})
    done = {
        **base, "status": "scored", "rows": scores_table.num_rows, "output": str(output),
        "log_file": log_file, "validation": str(result_path), "warnings": outcome.warnings,
    }  # fmt: skip
    _write_json(record_path, {**done, "scored_at": datetime.now(UTC).isoformat()})
    return {**done, **_retire(file, leave)}


class _Rejected(Exception):
    def __init__(self, outcome: ValidationOutcome) -> None:
        super().__init__(outcome.partition)
        self.outcome = outcome


def scoring_config(config: AirloopConfig) -> AirloopConfig:
    """The config whose ingest suite is the model's input suite for scoring files: the same
    column and table checks, none about a training partition (row-count bounds and growth,
    partition dates), and the target optional: it may be all null (labels not known yet), and
    its values, where given, are checked as declared. (A file without it is checked as if it
    held it all null; were it ever checked absent, that only warns.)"""
    target = config.dataset.target.column
    spec = config.dataset.columns[target]
    optional = {"nullable": True, "all_null_ok": True, "warn_on": sorted({*spec.warn_on, "exists"})}
    overrides = {
        "dataset": {
            **_PARTITION_ONLY,
            "partition": {"kind": "key", "date_format": None, "column": None},
            "columns": {target: optional},
        }
    }
    return with_overrides(config, overrides, f"{config.name} scoring suite")


def _read_and_validate(
    file: PendingFile, config: AirloopConfig, result_path: Path
) -> tuple[pd.DataFrame, ValidationOutcome]:
    """The file's rows and their validation outcome; _Rejected if it does not read or fails."""
    from airloop.data.validation import READABLE_FILE, validate_frame

    try:
        frame = read_scoring_file(file.local, config)
    except Exception as error:  # noqa: BLE001 - anything that stops a read is a rejection
        details = f"{type(error).__name__}: {error}".strip()[:500]
        raise _Rejected(_failed(file.name, result_path, READABLE_FILE, details)) from None
    outcome = validate_frame(_with_target(frame, config), scoring_config(config), file.name, result_path)
    if not outcome.success:
        raise _Rejected(outcome)
    return frame, outcome


def _with_target(frame: pd.DataFrame, config: AirloopConfig) -> pd.DataFrame:
    """`frame` as validation checks it: an absent target as a column of nulls, which the
    scoring suite allows. (GX errs on every check of a missing column, and the whole suite
    then ran four to five times slower on a million rows: benchmarks/RESULTS.md.)"""
    import numpy as np
    import pandas as pd

    from airloop.config import NUMERIC_TYPES

    target = config.dataset.target.column
    if target in frame.columns:
        return frame
    numeric = config.dataset.columns[target].type in NUMERIC_TYPES
    checked = frame.copy(deep=False)
    checked[target] = pd.Series(
        np.nan if numeric else None, index=frame.index, dtype="float64" if numeric else object
    )
    return checked


# pandas' read_csv defaults (its na_values), which Arrow's lack two of.
_CSV_NULLS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip


def read_scoring_file(path: Path, config: AirloopConfig) -> pd.DataFrame:
    """The file's rows as `airloop.data.frames.read_table` reads them, a CSV through Arrow's
    multi-threaded reader (a third of pandas' time on a million rows): the same nulls (None
    rather than NaN in text columns), the same inferred number and boolean columns, and the
    declared text columns (str and date ones) kept as text.
    A CSV Arrow does not read alike (quoted newlines, repeated column names, ...) is read by
    `read_table`, whose errors decide that a file is unreadable."""
    import pyarrow as pa
    import pyarrow.csv as csv

    from airloop.config import DATE_TYPES
    from airloop.data.frames import read_table

    if path.suffix != ".csv":
        return read_table(path)
    declared = config.dataset.columns.items()
    text = {name: pa.string() for name, spec in declared if spec.type in (*DATE_TYPES, "str")}
    options = csv.ConvertOptions(column_types=text, null_values=_CSV_NULLS, strings_can_be_null=True)
    try:
        table = csv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeError):
        return read_table(path)
    if len(set(table.column_names)) != table.num_columns:
        return read_table(path)  # it names repeated columns apart
    return table.to_pandas()


def _answer(
    config: AirloopConfig, paths: StatePaths, frame: pd.DataFrame, scorer: Scorer, key: str, name: str,
    result_path: Path,
) -> tuple[pa.Table, pa.Table]:  # fmt: skip
    """The scores output and the prediction log's rows of a validated frame."""
    from airloop.data.frames import feature_frame
    from airloop.evaluation.metrics import model_scores

    try:
        started = time.perf_counter()
        scores = model_scores(scorer.model, feature_frame(frame, config), config)
        latency_ms = (time.perf_counter() - started) * 1000
        answers = _answers(config, scorer, scores, key, len(frame))
        return _scores_table(frame, answers, scorer), _log_table(
            config, paths, frame, answers, scorer, latency_ms
        )
    except (ValueError, TypeError, KeyError) as error:
        # Past validation, a value the model or the log cannot take (e.g. 1.5 in an int
        # column that may hold nulls, which validation reads as floats).
        details = f"the champion could not score it: {type(error).__name__}: {error}"[:500]
        raise _Rejected(_failed(name, result_path, "scorable", details)) from None


def _answers(
    config: AirloopConfig, scorer: Scorer, scores: np.ndarray, key: str, rows: int
) -> dict[str, Any]:
    """inference_id, prediction, score and (multiclass) probabilities, as arrays."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from airloop.data.labels import predicted_classes

    prefix = hashlib.sha256(key.encode()).hexdigest()[:24] + "-"
    ids = pc.binary_join_element_wise(prefix, pc.cast(pa.array(np.arange(rows)), pa.string()), "")
    if config.task == "binary_classification":
        return {"inference_id": ids, "prediction": (scores >= 0.5).astype("int64"), "score": scores}
    if config.task == "regression":
        return {"inference_id": ids, "prediction": scores, "score": None}
    classes = scorer.classes or []
    return {
        "inference_id": ids,
        "prediction": predicted_classes(scores, classes).astype(str),
        "score": scores.max(axis=1) if rows else np.empty(0),
        "probabilities": scores,
    }


def _scores_table(frame: pd.DataFrame, answers: dict[str, Any], scorer: Scorer) -> pa.Table:
    """The answer columns, then the input's own columns as they came."""
    import pyarrow as pa

    from airloop.data.labels import class_key

    rows = len(frame)
    score = answers["score"]
    columns: dict[str, Any] = {
        "inference_id": answers["inference_id"],
        "model_name": pa.repeat(pa.scalar(scorer.name), rows),
        "model_version": pa.repeat(pa.scalar(scorer.version), rows),
        "prediction": pa.array(answers["prediction"]),
        "score": pa.nulls(rows, pa.float64()) if score is None else pa.array(score, pa.float64()),
    }
    for position, value in enumerate(scorer.classes or []):
        columns[PROBABILITY_PREFIX + class_key(value)] = pa.array(
            answers["probabilities"][:, position], pa.float64()
        )
    taken = {str(c) for c in frame.columns}
    named = {(f"airloop_{name}" if name in taken else name): column for name, column in columns.items()}
    inputs = pa.Table.from_pandas(frame, preserve_index=False)
    return pa.table({**named, **dict(zip(inputs.column_names, inputs.columns, strict=True))})


def _log_table(
    config: AirloopConfig, paths: StatePaths, frame: pd.DataFrame, answers: dict[str, Any], scorer: Scorer,
    latency_ms: float,
) -> pa.Table:  # fmt: skip
    """The prediction log's rows for these answers, as the service logs its own: features,
    the keys that are not features, pii hashed with the deployment's key."""
    from airloop.packaging.prediction_sink import frame_table, log_schema, now_ms, pii_hasher

    dataset = config.dataset
    features: dict[str, str] = {name: dataset.columns[name].type for name in dataset.features}
    keys: dict[str, str] = {name: dataset.columns[name].type for name in config.logged_keys()}
    pii = {name: mode for name, mode in config.pii_columns().items() if name in features or name in keys}
    hash_value = None
    if "hash" in pii.values():
        from airloop.packaging.serving import pii_key

        hash_value = pii_hasher(pii_key(paths).encode())
    schema = log_schema(config.task, features, keys, pii, hashing=hash_value is not None)
    logged = {**answers, "served_at": now_ms(), "latency_ms": latency_ms}
    if "probabilities" in answers:
        logged["probabilities"] = _probabilities_json(answers["probabilities"], scorer.classes or [])
    return frame_table(
        frame, logged, schema, scorer.name, scorer.version, ROLE, hash_value, {**features, **keys}
    )


def _probabilities_json(scores: np.ndarray, classes: list[Any]) -> pa.Array:
    """{class as text: probability} per row as JSON text, as the service logs it, built column
    by column (json.dumps per row costs seconds on a million)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = [
        pc.binary_join_element_wise(
            f"{json.dumps(str(value))}: ", pc.cast(pa.array(scores[:, i], pa.float64()), pa.string()), ""
        )
        for i, value in enumerate(classes)
    ]
    return pc.binary_join_element_wise("{", pc.binary_join_element_wise(*parts, ", "), "}", "")


# --------------------------------------------------------------------------- writing and moving


def _write_parquet(table: pa.Table, target: Path) -> None:
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.tmp")
    pq.write_table(table, scratch)
    os.replace(scratch, target)


def _log_once(
    config: AirloopConfig, paths: StatePaths, table: pa.Table, record_path: Path, base: dict[str, Any]
) -> str | None:
    """Append the rows to the prediction log unless an earlier try already did; its file.

    Before writing, the record notes when and from which host: the log file's name starts
    with both, so a try that died before its record was finished is found, not repeated."""
    from airloop.packaging.prediction_sink import write_table
    from airloop.production.predictions import log_location

    if not config.serving.log.enabled:
        return None
    root = log_location(config, paths)
    earlier = _read_json(record_path)
    if earlier.get("status") == "logging":
        found = _logged_file(root, datetime.fromisoformat(earlier["logging_at"]), earlier["host"])
        if found is not None:
            return found
    moment, host = datetime.now(UTC), socket.gethostname()
    _write_json(record_path, {**base, "status": "logging", "logging_at": moment.isoformat(), "host": host})
    return write_table(root, table, moment)


def _logged_file(root: str, moment: datetime, host: str) -> str | None:
    """The log file `write_table` wrote at `moment` from `host`, if it is there."""
    import pyarrow.fs

    filesystem, base = pyarrow.fs.FileSystem.from_uri(root if "://" in root else os.path.abspath(root))
    folder = f"{base.rstrip('/')}/date={moment:%Y-%m-%d}/hour={moment:%H}"
    selector = pyarrow.fs.FileSelector(folder, allow_not_found=True)
    start = f"{moment:%H%M%S.%f}-{host}-"
    names = [info.path for info in filesystem.get_file_info(selector)]
    return next((name for name in names if name.rpartition("/")[2].startswith(start)), None)


def _retire(file: PendingFile, leave: bool) -> dict[str, Any]:
    """Move a scored file to `scored/` beside it (object storage: the object, and the local
    copy it was read from goes); never deleted."""
    return {"moved_to": None if leave else retire(file, SCORED_FOLDER)}


def _reject(
    paths: StatePaths, file: PendingFile, base: dict[str, Any], outcome: ValidationOutcome, leave: bool
) -> dict[str, Any]:
    """A rejected file's outcome. The file moves to `quarantine/scoring/<file>/` with its
    result, as a rejected training partition does (an object to `quarantine/` beside it,
    its local copy to the model's quarantine)."""
    from airloop.data.validation import quarantine_file

    reasons = [_reason(f) for f in outcome.failures[:8]]
    rejected = {**base, "status": "rejected", "reason": "; ".join(reasons), "validation": outcome.result_path}
    if leave:
        return {**rejected, "quarantined": None}
    quarantine = paths.quarantine / "scoring" / safe_key(file.local.stem)
    if file.remote is not None:
        rejected["moved_to"] = move_object(file, QUARANTINE_FOLDER)
    quarantine_file(file.local, Path(outcome.result_path), quarantine)
    return {**rejected, "quarantined": str(quarantine)}


def _reason(failure: dict[str, Any]) -> str:
    where = f" on column {failure['column']!r}" if failure.get("column") is not None else ""
    return f"{failure['expectation']}{where} ({failure['details']})"


def _failed(name: str, result_path: Path, check: str, details: str) -> ValidationOutcome:
    """The outcome of a file that failed before (or after) GX could check it, written where
    its validation result would be."""
    from airloop.data.validation import ValidationOutcome

    failure = {"expectation": check, "column": None, "details": details, "check": check, "severity": "error"}
    _write_json(result_path, {"success": False, "file": name, "results": [failure]})
    return ValidationOutcome(name, False, 0, [failure], str(result_path))


def _summary(
    config: AirloopConfig, scorer: Scorer | None, outcomes: list[dict[str, Any]], status: str = "scored",
    reason: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    def named(state: str) -> list[str]:
        return [o["file"] for o in outcomes if o["status"] == state]

    scored = [o for o in outcomes if o["status"] == "scored"]
    if reason is None:
        counts = {state: len(named(state)) for state in ("scored", "already_scored", "rejected")}
        reason = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in counts.items() if n)
    return {
        "status": status,
        "reason": reason,
        "model_name": config.model.registered_name,
        "model_version": scorer.version if scorer else None,
        "scored": named("scored"),
        "already_scored": named("already_scored"),
        "rejected": named("rejected"),
        "outputs": [o["output"] for o in scored],
        "rows": sum(o["rows"] for o in scored),
        "files": outcomes,
    }


# --------------------------------------------------------------------------- small files


def _records(paths: StatePaths) -> Path:
    """One record per output: what was scored, by which version, where it went."""
    return paths.scores.parent / "records"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(json.dumps(value, indent=2, default=str))
    os.replace(scratch, path)
