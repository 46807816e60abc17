"""A model's drift reference: its training data's per-column value counts, computed once.

Training logs the profile with the model's run (`REFERENCE_ARTIFACT`), so a drift check
counts only the current window. A profile holds each compared column's distinct values and
their counts: everything Evidently's drift tests read (see `airloop.monitoring.column_drift`),
and enough to rebuild the reference rows for an Evidently report. It also holds the model's
own predictions on its training rows, counted the same way, the reference for prediction
drift: numbers (a probability, a predicted value) or, for a multiclass model, class labels.

Columns are compared as `compared_frame` reads them: int, float, date and datetime columns
as numbers (a date as days since 1970-01-01, read with the column's `format`, an unreadable
one as null), str and bool columns as categories (text; a bool as "True" or "False").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airloop.config import DATE_TYPES, NUMERIC_TYPES, AirloopConfig
from airloop.monitoring.column_drift import ColumnCounts, ColumnKind, count_values

# Where a training run keeps its profile among its MLflow artifacts.
REFERENCE_ARTIFACT = "drift/reference_profile.npz"
# The model's predictions, as a column of reports (positive-class probability, predicted
# value, or a multiclass model's predicted class).
PREDICTION = "prediction"
_DAY = pd.Timedelta(days=1)
_EPOCH = pd.Timestamp("1970-01-01")


@dataclass(frozen=True)
class ReferenceProfile:
    """The reference rows' count, each compared column's value counts, the model's predictions'.

    Saved and loaded as one .npz file; categorical values are kept as text, numbers as floats.
    """

    rows: int
    columns: dict[str, ColumnCounts]
    predictions: ColumnCounts | None = None

    def save(self, path: Path) -> Path:
        arrays: dict[str, np.ndarray] = {}
        specs: dict[str, dict[str, Any]] = {}
        summaries = {**self.columns, **({PREDICTION: self.predictions} if self.predictions else {})}
        for position, (name, counts) in enumerate(summaries.items()):
            arrays[f"values_{position}"] = counts.values.astype(float if counts.kind == "numerical" else str)
            arrays[f"counts_{position}"] = counts.counts
            specs[name] = {"kind": counts.kind, "std": counts.std, "position": position}
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:  # a file object: np.savez would append ".npz" to a name
            has_predictions = self.predictions is not None
            meta = json.dumps({"rows": self.rows, "columns": specs, "predictions": has_predictions})
            np.savez_compressed(out, allow_pickle=False, meta=np.array(meta), **arrays)
        return path

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            summaries = {
                name: ColumnCounts(
                    spec["kind"],
                    stored[f"values_{spec['position']}"],
                    stored[f"counts_{spec['position']}"],
                    float(spec["std"]),
                )
                for name, spec in meta["columns"].items()
            }
        predictions = summaries.pop(PREDICTION) if meta.get("predictions") else None
        return cls(int(meta["rows"]), summaries, predictions)

    def sample_frame(self, rows: int, seed: int = 0) -> pd.DataFrame:
        """Reference rows rebuilt from the counts, at most `rows` of them (a seeded sample).

        Each column's values are rebuilt on their own, so the frame has the reference's
        per-column distributions, not its rows; drift tests compare columns one at a time.
        """
        rng = np.random.default_rng(seed)
        frame = {}
        summaries = {**self.columns, **({PREDICTION: self.predictions} if self.predictions else {})}
        for name, counts in summaries.items():
            column = np.repeat(counts.values, counts.counts)
            # Nulls are not counted; the rebuilt column pads with them to the reference length.
            padded = np.full(self.rows, np.nan if counts.kind == "numerical" else None, dtype=object)
            padded[: len(column)] = column
            if counts.kind == "numerical":
                padded = padded.astype(float)
            frame[name] = padded if rows >= self.rows else rng.choice(padded, rows, replace=False)
        return pd.DataFrame(frame)


def column_kinds(config: AirloopConfig) -> dict[str, ColumnKind]:
    """How each compared column is tested: numbers and dates as numerical, text and booleans as categories."""
    specs = config.dataset.columns
    return {
        name: "numerical" if specs[name].type in (*NUMERIC_TYPES, *DATE_TYPES) else "categorical"
        for name in config.drift_columns()
    }


def prediction_kind(config: AirloopConfig) -> ColumnKind:
    """A multiclass model predicts classes (categories); the others predict numbers."""
    return "categorical" if config.task == "multiclass_classification" else "numerical"


def reference_profile(
    frame: pd.DataFrame, config: AirloopConfig, predictions: np.ndarray | None = None
) -> ReferenceProfile:
    """Count the compared columns of a model's training frame (and the model's predictions on it).

    `predictions`: one per row, 1-D: numbers, or a multiclass model's predicted class labels.
    Raises ValueError on a schema mismatch or predictions that are not one 1-D value a row.
    """
    kinds = column_kinds(config)
    compared = compared_frame(frame, "reference", config)
    if predictions is not None and PREDICTION in kinds:
        raise ValueError(f"compared column {PREDICTION!r} would clash with the model's scores; rename it")
    if predictions is not None and len(predictions) != len(frame):
        raise ValueError(f"{len(predictions)} predictions for {len(frame)} reference rows")
    return ReferenceProfile(
        len(frame),
        {name: count_values(compared[name], kind) for name, kind in kinds.items()},
        None if predictions is None else count_predictions(predictions, prediction_kind(config)),
    )


def count_predictions(predictions: np.ndarray, kind: ColumnKind | None = None) -> ColumnCounts:
    """Count a model's predictions as `kind` (None: numbers unless they are text, objects or booleans).

    Raises ValueError when they are not 1-D (a multiclass model's probability matrix: pass its
    predicted classes) or, counted as numbers, are not numbers.
    """
    values = as_predictions(predictions, kind)
    return count_values(pd.Series(values), "numerical" if values.dtype.kind == "f" else "categorical")


def as_predictions(predictions: np.ndarray, kind: ColumnKind | None = None) -> np.ndarray:
    """Predictions as the drift tests read them: float64 numbers, or text (object, nulls kept)."""
    array = np.asarray(predictions)
    if array.ndim != 1:
        raise ValueError(
            f"predictions must be one value a row (1-D), not shape {array.shape}; "
            "for a multiclass model pass its predicted classes"
        )
    if kind is None:
        kind = "numerical" if array.dtype.kind in "iuf" else "categorical"
    if kind == "categorical":
        return np.asarray(_as_text(pd.Series(array), boolean=array.dtype.kind == "b"), dtype=object)
    try:
        return array.astype("float64")
    except (TypeError, ValueError):
        raise ValueError(f"predictions are compared as numbers but hold {array.dtype} values") from None


def compared_frame(frame: pd.DataFrame, label: str, config: AirloopConfig) -> pd.DataFrame:
    """The compared columns of `frame` as the drift tests read them (see the module docstring).

    Numbers become float64 (infinities kept: the tests drop them with the nulls), dates float
    days since 1970-01-01, categories text with their nulls kept. Raises ValueError as
    `check_schema` does.
    """
    check_schema(frame, label, config)
    specs = config.dataset.columns
    columns: dict[str, pd.Series] = {}
    for name in config.drift_columns():
        column, spec = frame[name], specs[name]
        if spec.type in DATE_TYPES:
            columns[name] = _days(column, spec.format)
        elif spec.type in NUMERIC_TYPES:
            columns[name] = pd.Series(column.to_numpy(dtype="float64", na_value=np.nan), index=frame.index)
        else:
            columns[name] = _as_text(column, boolean=spec.type == "bool")
    return pd.DataFrame(columns, index=frame.index)


def _days(column: pd.Series, fmt: str | None) -> pd.Series:
    """Days since 1970-01-01 of a date column (text in `fmt` or any form pandas reads, or timestamps)."""
    from airloop.data.dates import parse_dates

    # The model's own date parser, so drift reads a date as the model does; NaT where unreadable.
    dates = parse_dates(column, fmt)
    return pd.Series(((dates - _EPOCH) / _DAY).to_numpy(dtype="float64", na_value=np.nan), index=column.index)


def _as_text(column: pd.Series, boolean: bool) -> pd.Series:
    """Values as text, nulls kept; a bool column's true/false (any case) as "True"/"False"."""
    text = column.astype(object).map(str, na_action="ignore")
    if boolean:
        # A CSV and a Parquet partition may hold the same booleans as text and as bools.
        spelled = {"true": "True", "false": "False"}
        text = text.map(lambda value: spelled.get(value.lower(), value), na_action="ignore")
    return text


def check_schema(frame: pd.DataFrame, label: str, config: AirloopConfig) -> None:
    """Raise ValueError when a compared column is missing or a numeric one holds non-numbers.

    Date columns may hold text or timestamps (an unreadable date counts as null); str and
    bool columns anything (compared as text).
    """
    specs = config.dataset.columns
    compared = config.drift_columns()
    missing = [name for name in compared if name not in frame.columns]
    if missing:
        raise ValueError(f"{label} frame lacks compared column(s) {missing}")
    for name in compared:
        if specs[name].type not in NUMERIC_TYPES:
            continue
        dtype = frame[name].dtype
        # An all-null column reads as object; it is reported as skipped, not as a type error.
        if not pd.api.types.is_numeric_dtype(dtype) and frame[name].notna().any():
            raise ValueError(f"{label} frame column {name!r} is declared numeric but has dtype {dtype}")
        if pd.api.types.is_bool_dtype(dtype):
            raise ValueError(f"{label} frame column {name!r} is declared numeric but is boolean")
