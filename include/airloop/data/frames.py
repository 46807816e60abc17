"""Reading tables and turning rows into features and labels, the same way everywhere."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from airloop.config import DATE_TYPES, AirloopConfig


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


def in_row_order(frame: pd.DataFrame, config: AirloopConfig) -> pd.DataFrame:
    """`frame` sorted by `dataset.order_by` (a date column by its date, not its text), if set."""
    column = config.dataset.order_by
    if not column:
        return frame
    spec = config.dataset.columns[column]
    if spec.type not in DATE_TYPES:
        return frame.sort_values(column, kind="stable", ignore_index=True)
    from airloop.data.dates import parse_dates

    dates = parse_dates(frame[column].reset_index(drop=True), spec.format)
    # NumPy sorts NaT (an unreadable or missing date) last.
    order = dates.to_numpy(dtype="datetime64[ns]").argsort(kind="stable")
    return frame.iloc[order].reset_index(drop=True)
