"""Numbers a model derives from date columns: year, month, day of week, hour, days since.

The transformer is a step of the model's pipeline, so the served model takes the raw date
(text in the column's format, or a timestamp) and computes exactly what training computed.
An unreadable or missing date becomes NaN in every part, which every family handles
(trees route it, the linear and network families impute it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

_NANOSECONDS_A_DAY = 86_400 * 10**9


def parse_dates(values: Any, fmt: str | None) -> pd.Series:
    """Timestamps (UTC, without zone) of a column of text or timestamps; NaT where unreadable."""
    series = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        parsed = series
    else:
        if fmt is not None and pd.api.types.is_numeric_dtype(series.dtype):
            series = _digits(series, fmt)
        text = series.where(series.notna(), None).astype("object")
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        # Without a format pandas takes the first value's and drops the rest's: read
        # those that did not fit one by one.
        missed = parsed.isna() & text.notna()
        if fmt is None and missed.any():
            parsed[missed] = pd.to_datetime(text[missed], format="mixed", errors="coerce", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed


def _digits(numbers: pd.Series, fmt: str) -> pd.Series:
    """An all-digit date (20130105) a CSV reader took for a number, as its text again, with
    the leading zeros a number loses (05012013 for "%d%m%Y")."""
    from datetime import datetime

    width = len(datetime(2001, 1, 1).strftime(fmt))
    whole = numbers.astype("Int64").astype("string")
    return whole.str.zfill(width).astype(object).where(numbers.notna(), None)


def _part(dates: pd.Series, part: str, since: pd.Timestamp) -> np.ndarray:
    if part == "days_since":
        delta = dates.to_numpy(dtype="datetime64[ns]") - since.to_datetime64()
        days = delta.astype("int64") / _NANOSECONDS_A_DAY
        return np.where(dates.isna().to_numpy(), np.nan, days)
    accessor = {"day_of_week": "dayofweek", "day_of_year": "dayofyear"}.get(part, part)
    return getattr(dates.dt, accessor).to_numpy(dtype="float64", na_value=np.nan)


class DateParts(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Turn each date column into its declared parts (float columns, NaN where unknown).

    `columns` maps each input column, in order, to (format or None, parts, since).
    """

    def __init__(self, columns: dict[str, tuple[str | None, tuple[str, ...], str]] | None = None) -> None:
        self.columns = columns

    def fit(self, X: Any, y: Any = None) -> DateParts:
        self.n_features_in_ = len(self.columns or {})
        return self

    def transform(self, X: Any) -> np.ndarray:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=list(self.columns or {}))
        blocks: list[np.ndarray] = []
        for name, (fmt, parts, since) in (self.columns or {}).items():
            dates = parse_dates(frame[name].reset_index(drop=True), fmt)
            origin = pd.Timestamp(since)
            blocks.extend(_part(dates, part, origin) for part in parts)
        return np.column_stack(blocks) if blocks else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = [f"{name}_{part}" for name, (_, parts, _) in (self.columns or {}).items() for part in parts]
        return np.asarray(names, dtype=object)
