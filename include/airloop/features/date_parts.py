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

from airloop.data.dates import parse_dates

_NANOSECONDS_A_DAY = 86_400 * 10**9


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
            if not pd.api.types.is_datetime64_any_dtype(dates.dtype):
                # Beyond what nanoseconds reach (a year 9999 placeholder): unknown.
                dates = pd.to_datetime(dates, errors="coerce")
            origin = pd.Timestamp(since)
            blocks.extend(_part(dates, part, origin) for part in parts)
        return np.column_stack(blocks) if blocks else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = [f"{name}_{part}" for name, (_, parts, _) in (self.columns or {}).items() for part in parts]
        return np.asarray(names, dtype=object)
