"""A model's drift reference: its training data's per-column value counts, computed once.

Training logs the profile with the model's run (`REFERENCE_ARTIFACT`), so a drift check
counts only the current window. A profile holds each compared column's distinct values and
their counts: everything Evidently's drift tests read (see `airloop.monitoring.column_drift`),
and enough to rebuild the reference rows for an Evidently report. It also holds the model's
own scores on its training rows, counted the same way, the reference for prediction drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airloop.config import AirloopConfig
from airloop.monitoring.column_drift import ColumnCounts, ColumnKind, count_values

# Where a training run keeps its profile among its MLflow artifacts.
REFERENCE_ARTIFACT = "drift/reference_profile.npz"
# The model's scores, as a column of reports (positive-class probability or predicted value).
PREDICTION = "prediction"


@dataclass(frozen=True)
class ReferenceProfile:
    """The reference rows' count, each compared column's value counts, the model's scores'."""

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
    """How each compared column is tested: numbers as numerical, strings and booleans as categories."""
    specs = config.dataset.columns
    return {
        name: "numerical" if specs[name].type in ("int", "float") else "categorical"
        for name in config.drift_columns()
    }


def reference_profile(
    frame: pd.DataFrame, config: AirloopConfig, predictions: np.ndarray | None = None
) -> ReferenceProfile:
    """Count the compared columns of a model's training frame (and the model's scores on it).

    Raises ValueError on a schema mismatch.
    """
    kinds = column_kinds(config)
    check_schema(frame, "reference", kinds)
    if predictions is not None and PREDICTION in kinds:
        raise ValueError(f"compared column {PREDICTION!r} would clash with the model's scores; rename it")
    return ReferenceProfile(
        len(frame),
        {name: count_values(frame[name], kind) for name, kind in kinds.items()},
        None if predictions is None else count_predictions(predictions),
    )


def count_predictions(scores: np.ndarray) -> ColumnCounts:
    return count_values(pd.Series(np.asarray(scores, dtype=float)), "numerical")


def check_schema(frame: pd.DataFrame, label: str, kinds: dict[str, ColumnKind]) -> None:
    """Raise ValueError when a compared column is missing or a numeric one holds non-numbers."""
    missing = [name for name in kinds if name not in frame.columns]
    if missing:
        raise ValueError(f"{label} frame lacks compared column(s) {missing}")
    for name, kind in kinds.items():
        if kind != "numerical":
            continue
        dtype = frame[name].dtype
        # An all-null column reads as object; it is reported as skipped, not as a type error.
        if not pd.api.types.is_numeric_dtype(dtype) and frame[name].notna().any():
            raise ValueError(f"{label} frame column {name!r} is declared numeric but has dtype {dtype}")
        if pd.api.types.is_bool_dtype(dtype):
            raise ValueError(f"{label} frame column {name!r} is declared numeric but is boolean")
