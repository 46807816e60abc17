"""Ground truth that arrives later, joined to what the model answered.

A labels file (CSV or Parquet) waits in `labels.source.location` (a folder or object
storage, taken once settled, as batch scoring's inputs are: `airloop.data.pending_files`),
else in the model's labels landing; a SQL source lands the day's labels there. It holds, per
row, the inference id the service returned (`labels.id_column`), or the dataset's keys,
the label (the target column) and when it was known (`labels.time_column`).
Each file becomes one joined partition, `data/labelled/<file>-<hash>.parquet`, versioned with
DVC: the log's answer (version, prediction, score, when) beside the label, and the features
as served. The file then moves to `labels/joined/` (a bad one to `labels/quarantine/`; an object
also moves to `joined/` or `quarantine/` beside it), never deleted nor overwritten (a name
landed again is kept as `name.1`, ...), with a report of what happened to every row:

    joined        labels matched to a logged prediction
    unmatched     no prediction was logged with that id (or keys) in the last max_age_days
                  (the log is read no further back: older predictions count here too)
    duplicates    a later label of the same prediction in the file replaced them
    wrong_type    the label does not read as the target's type
    missing       no label at all

A label of a prediction already labelled in an earlier file is joined again: the later one
(by its time) is what live performance counts (`labelled_predictions`).
"""

from __future__ import annotations

import filecmp
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from airloop.config import AirloopConfig, FileSource
from airloop.data.pending_files import PendingFile, is_object_storage, move_into, move_object, pending_files
from airloop.paths import StatePaths

LABELLED_AT = "labelled_at"
LABEL_FILE_SUFFIXES = (".csv", ".parquet")


class LabelsFileRejected(ValueError):
    """A labels file that cannot be joined at all (its rows are not labels of this model)."""


def labels_location(config: AirloopConfig, paths: StatePaths) -> str:
    """Where labels files wait: the configured location (a folder or object storage), else the
    model's labels landing."""
    return getattr(config.labels.source, "location", None) or str(paths.labels_landing)


def labels_landing(config: AirloopConfig, paths: StatePaths) -> Path:
    """The local folder labels files land in (object storage: the model's labels landing,
    where SQL extracts land too)."""
    location = labels_location(config, paths)
    return paths.labels_landing if is_object_storage(location) else Path(location).expanduser()


def pending_labels(config: AirloopConfig, paths: StatePaths, now: float | None = None) -> list[PendingFile]:
    """Settled labels files (CSV or Parquet) in the labels location, oldest name first; objects
    are copied to `labels/incoming/` to be read."""
    source = config.labels.source
    settle = source.settle_seconds if isinstance(source, FileSource) else 0.0
    incoming = paths.model_home / "labels" / "incoming"
    found = pending_files(labels_location(config, paths), source.pattern, settle, incoming, now)
    return [file for file in found if file.local.suffix in LABEL_FILE_SUFFIXES]


def extract_labels(config: AirloopConfig, paths: StatePaths, period_start: datetime | None) -> list[Path]:
    """A SQL labels source: land the labels of the day `period_start` falls in and of the day
    before (bound to `:partition` as YYYY-MM-DD; today when None), so labels written to a day
    after its last run are still taken. Files sources: nothing to do. An unchanged day lands
    the same file again, which is already joined."""
    from airloop.config import SqlSource
    from airloop.data.sources import connection_uri, extract_partition

    source = config.labels.source
    if not isinstance(source, SqlSource):
        return []
    day = period_start or datetime.now(UTC)
    uri, landing = connection_uri(source.conn_id), labels_landing(config, paths)
    return [extract_partition(source, f"{d:%Y-%m-%d}", uri, landing) for d in (day - timedelta(days=1), day)]


def join_pending_labels(
    config: AirloopConfig, paths: StatePaths, now: datetime | None = None
) -> dict[str, Any]:
    """Join every pending labels file; returns {files, joined rows, each file's report}."""
    reports = [join_labels_file(config, paths, file, now) for file in pending_labels(config, paths)]
    return {
        "files": len(reports),
        "joined": sum(r.get("joined", 0) for r in reports),
        "partitions": [r["partition"] for r in reports if r.get("partition")],
        "reports": reports,
    }


def join_labels_file(
    config: AirloopConfig, paths: StatePaths, file: Path | PendingFile, now: datetime | None = None
) -> dict[str, Any]:
    """Join one labels file to the prediction log (see the module docstring); never raises
    for bad rows or a bad file: they are counted, or the file is quarantined with the reason."""
    from airloop.data.versioning import version_file
    from airloop.production.predictions import read_log, served_frame

    file = file if isinstance(file, PendingFile) else PendingFile(file.name, file)
    path, now = file.local, now or datetime.now(UTC)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    output = paths.labelled / f"{path.stem}-{digest}.parquet"
    report: dict[str, Any] = {"file": path.name, "partition": None}
    try:
        labels, counts = read_labels(config, path, now)
    except LabelsFileRejected as rejected:
        return _finish(paths, file, {**report, "status": "rejected", "reason": str(rejected)}, "quarantine")
    if output.exists():
        return _finish(
            paths, file, {**report, "status": "already_joined", "partition": output.name}, "joined"
        )
    log = served_frame(read_log(config, paths, since=now - timedelta(days=config.labels.max_age_days)))
    joined, unmatched = match_predictions(config, paths, labels, log)
    counts.update(joined=len(joined), unmatched=unmatched)
    report.update(status="joined", counts=counts)
    if len(joined):
        paths.labelled.mkdir(parents=True, exist_ok=True)
        scratch = output.with_name(f".{output.name}")
        joined.to_parquet(scratch, index=False)
        scratch.rename(output)
        report.update(partition=output.name, dvc_hash=version_file(output, paths), joined=len(joined))
    return _finish(paths, file, report, "joined")


def read_labels(
    config: AirloopConfig, path: Path, now: datetime
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The file's usable labels, one per prediction (the latest), and the counts of the rest.

    Columns: the id column or the keys (as text), the target (as the target's type), and
    `labelled_at` (UTC). Raises LabelsFileRejected when the file does not read or lacks
    the columns to join or the label.
    """
    target = config.dataset.target.column
    frame = _read_file(path)
    by = join_columns(config, frame)
    if target not in frame.columns:
        raise LabelsFileRejected(f"{path.name} has no label column {target!r} (dataset.target.column)")
    counts = {"rows": len(frame)}
    frame = frame.copy()
    for column in by:
        frame[column] = _as_key(frame[column])
    present = frame[target].notna()
    label = _as_label(frame[target], config.dataset.columns[target].type)
    counts["missing"] = int((~present).sum())
    counts["wrong_type"] = int((present & label.isna()).sum())
    frame[target] = label
    frame[LABELLED_AT] = _label_times(config, frame, now)
    frame = frame[label.notna() & frame[by].notna().all(axis=1)]
    latest = frame.sort_values(LABELLED_AT, kind="stable").drop_duplicates(by, keep="last")
    counts["duplicates"] = len(frame) - len(latest)
    return latest[[*by, target, LABELLED_AT]].reset_index(drop=True), counts


def join_columns(config: AirloopConfig, frame: pd.DataFrame) -> list[str]:
    """What the file's labels are matched by: the inference id, else all the dataset's keys."""
    id_column = config.labels.id_column
    if id_column in frame.columns:
        return [id_column]
    keys = list(config.dataset.keys)
    if keys and all(k in frame.columns for k in keys):
        return keys
    wanted = f"an {id_column!r} column (labels.id_column)"
    if keys:
        wanted += f" or the dataset's keys {keys}"
    raise LabelsFileRejected(f"the labels have {wanted}; found columns {list(frame.columns)}")


def match_predictions(
    config: AirloopConfig, paths: StatePaths, labels: pd.DataFrame, log: pd.DataFrame
) -> tuple[pd.DataFrame, int]:
    """(labels joined to their logged predictions, how many labels matched none)."""
    from airloop.packaging.prediction_sink import pii_hasher
    from airloop.packaging.serving import pii_key
    from airloop.production.predictions import pii_hashed

    by = join_columns(config, labels)
    if by == [config.labels.id_column]:
        left, right = labels.rename(columns={by[0]: "inference_id"}), ["inference_id"]
    else:
        left, right = labels.copy(), by
        # The log keeps hashed keys: the labels' keys are hashed alike to meet them.
        hash_value = pii_hasher(pii_key(paths).encode())
        for key in set(by) & pii_hashed(config, paths):
            left[key] = left[key].map(hash_value)
    if log.empty or any(c not in log.columns for c in right):
        return pd.DataFrame(), len(labels)
    target = config.dataset.target.column
    found = _match_by_codes(left, log, right, target)
    if found is not None:
        return found
    log = log.copy()
    for column in right:
        log[column] = _as_key(log[column])
    # A prediction logged twice (served, then rescored in a batch) is one label each.
    answers = log.drop(columns=[target], errors="ignore")
    joined = left.merge(answers, on=right, how="inner", validate="one_to_many")
    matched = left.merge(answers[right].drop_duplicates(), on=right, how="inner")
    return joined.reset_index(drop=True), len(labels) - len(matched)


def _match_by_codes(
    left: pd.DataFrame, log: pd.DataFrame, on: list[str], target: str
) -> tuple[pd.DataFrame, int] | None:
    """`match_predictions`' merge, the same rows in the same order, each key hashed once (the
    id: a hash table of the labels' ids; keys: integer codes of each key): pandas' merge of
    text keys hashes them several times over (and its one-to-many check once more), seconds
    at a million rows. None where only the merge gives the same answer: labels with a null
    or repeated key (the merge matches nulls and refuses repeats), or columns the merge
    would rename."""
    import numpy as np

    answer_columns = [c for c in log.columns if c not in on and c != target]
    names = [*left.columns, *answer_columns]
    if not left.columns.is_unique or not log.columns.is_unique or len(set(names)) != len(names):
        return None
    if any(left[c].dtype != object for c in on) or left[on].isna().any(axis=None):
        return None  # (the merge refuses to match text with numbers; nulls it matches)
    if len(on) == 1:  # (the id: one hash table of the labels, looked up by the log's ids)
        index = pd.Index(left[on[0]], dtype=object)
        if not index.is_unique:
            return None
        label_of = index.get_indexer(_as_key(log[on[0]]))
    else:
        codes = _key_codes([left[c] for c in on], [_as_key(log[c]) for c in on])
        ours, theirs = codes[: len(left)], codes[len(left) :]
        if len(ours) and np.bincount(ours).max() > 1:
            return None
        row_of = np.full(int(codes.max(initial=-1)) + 1, -1, dtype=np.int64)
        row_of[ours] = np.arange(len(ours))
        label_of = np.where(theirs >= 0, row_of[np.where(theirs >= 0, theirs, 0)], -1)
    log_rows = np.flatnonzero(label_of >= 0)
    label_rows = label_of[log_rows]
    # The merge keeps the labels' order, each label's predictions in the log's order.
    order = np.argsort(label_rows, kind="stable")
    label_rows, log_rows = label_rows[order], log_rows[order]
    positions = [log.columns.get_loc(c) for c in answer_columns]
    labelled, answers = left.take(label_rows), log.iloc[log_rows, positions]
    labelled.index = answers.index = pd.RangeIndex(len(label_rows))  # (reset_index copies)
    joined = pd.concat([labelled, answers], axis=1, copy=False)
    matched = int(np.count_nonzero(np.diff(label_rows))) + 1 if len(label_rows) else 0  # (sorted)
    return joined, len(left) - matched


def _key_codes(left: list[pd.Series], right: list[pd.Series]) -> Any:
    """One int64 code per row of the labels, then of the log, equal where all the keys are
    (a row with a null key: -1)."""
    import numpy as np

    combined = None
    for ours, theirs in zip(left, right, strict=True):
        codes, _ = pd.factorize(pd.concat([ours, theirs], ignore_index=True), sort=False)
        codes = codes.astype(np.int64)
        if combined is None:
            combined = codes
            continue
        null = (combined < 0) | (codes < 0)
        pairs = combined * (int(codes.max(initial=0)) + 1) + codes
        combined, _ = pd.factorize(np.where(null, -1, pairs), sort=False)
        combined = np.where(null, -1, combined).astype(np.int64)
    return combined


def labelled_predictions(paths: StatePaths) -> pd.DataFrame:
    """Every joined label, the latest one per prediction (by labelled_at); empty if none."""
    files = sorted(paths.labelled.glob("*.parquet")) if paths.labelled.is_dir() else []
    if not files:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    frame = frame.sort_values(LABELLED_AT, kind="stable")
    return frame.drop_duplicates(["inference_id", "role"], keep="last", ignore_index=True)


def _read_file(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        # Ids and keys are compared as text: read everything as text, type the label after.
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise LabelsFileRejected(f"{path.name} does not read as {path.suffix[1:]}: {error}") from None


def _as_key(values: pd.Series) -> pd.Series:
    """Join keys as text, an integral float (an int column read with nulls) as the int."""
    from airloop.data.labels import label_keys

    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "string":
        return values.where(values.notna(), None)  # text already is its own key (fast path)
    return label_keys(values)


def _as_label(values: pd.Series, kind: str) -> pd.Series:
    """The labels as the target column's type; null where one does not read as it."""
    if kind in ("int", "float"):
        numbers = pd.to_numeric(values, errors="coerce")
        if kind == "int":
            numbers = numbers.where(numbers.isna() | (numbers == numbers.round()))
        return numbers.astype("float64")
    if kind == "bool":
        text = values.map(lambda v: str(v).strip().lower(), na_action="ignore")
        return text.map({"true": True, "false": False, "1": True, "0": False}).astype(object)
    return values.map(str, na_action="ignore").astype(object)


def _label_times(config: AirloopConfig, frame: pd.DataFrame, now: datetime) -> pd.Series:
    column = config.labels.time_column
    if column is None or column not in frame.columns:
        return pd.Series(pd.Timestamp(now), index=frame.index)
    times = pd.to_datetime(frame[column], errors="coerce", utc=True)
    return times.fillna(pd.Timestamp(now))


def _keep(local: Path, folder: Path) -> str:
    """Move the file into `folder`; a copy identical to the one kept there under its name
    (a SQL day extracted again unchanged) goes instead: nothing is lost."""
    same = folder / local.name
    if same.is_file() and filecmp.cmp(same, local, shallow=False):
        local.unlink()
        return str(same)
    return move_into(local, folder)


def _finish(paths: StatePaths, file: PendingFile, report: dict[str, Any], folder: str) -> dict[str, Any]:
    """Move the labels file out of its location into the model's `labels/<folder>/` (an
    object: into `<folder>/` beside it, its local copy kept there), never deleted nor
    overwritten, and write its report beside the others."""
    if file.remote is not None:
        report["moved_to"] = move_object(file, folder)
    kept = _keep(file.local, paths.model_home / "labels" / folder)
    record = paths.report_dir("labels") / f"{Path(kept).name}.json"
    record.write_text(json.dumps({**report, "kept": kept}, indent=2, default=str))
    return {**report, "kept": kept, "report_path": str(record)}
