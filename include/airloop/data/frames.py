"""Reading tables and turning rows into features and labels, the same way everywhere."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from airloop.config import AirloopConfig


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, chosen by its suffix."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, low_memory=False)
    raise ValueError(f"unsupported file type {path.suffix!r} for {path} (expected .csv or .parquet)")


# A missing categorical is a category of its own; the same token whether the frame came from
# CSV (NaN) or Parquet (None), and the one the serving bento uses.
MISSING_CATEGORY = "nan"


def feature_frame(frame: pd.DataFrame, config: AirloopConfig) -> pd.DataFrame:
    """The model's input columns, categoricals as strings (what training and serving both see)."""
    features = frame.loc[:, list(config.dataset.features)].copy()
    for name in config.dataset.categorical_features():
        column = features[name]
        features[name] = column.astype(str).where(column.notna(), MISSING_CATEGORY)
    return features


def labelled_rows(frame: pd.DataFrame, config: AirloopConfig) -> pd.DataFrame:
    """Rows whose target is known; rows without one (e.g. cancelled flights) cannot be scored."""
    return frame[frame[config.dataset.target.column].notna()]


def labels(frame: pd.DataFrame, config: AirloopConfig) -> pd.Series:
    """The target of labelled rows: 0/1 for binary classification, the value for regression."""
    target = config.dataset.target
    values = frame[target.column]
    if config.task == "binary_classification" and target.positive_above is not None:
        return (values > target.positive_above).astype("int64")
    return values.astype("int64" if config.task == "binary_classification" else "float64")
