"""Reading date columns, one way for every stage that reads them.

Validation, the model's date parts, the row order, drift and the serving skew check all
read a date column through `parse_dates`, so a value that validates is the date the model
sees, and one that does not read is NaT everywhere.
"""

from __future__ import annotations

import math
import warnings
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd


def parse_dates(values: Any, fmt: str | None) -> pd.Series:
    """`values` (a Series or any sequence) as naive UTC timestamps, NaT where null or not a date.

    datetime64 columns (Parquet carries real timestamps) and date or datetime objects are dates
    already; text must match `fmt` when given, else read as a date (`_parse_text`); numbers are
    dates only as the digits of `fmt` (a CSV reads 20130105 as a number).
    """
    if not isinstance(values, pd.Series):
        values = pd.Series(values, dtype=None if len(values) else object)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _as_naive_ns(values)
    width = _digit_width(fmt)
    inputs = values.map(lambda value: _date_input(value, width)).to_numpy(dtype=object)
    is_text = np.fromiter((isinstance(v, str) for v in inputs), dtype=bool, count=len(inputs))
    is_date = np.fromiter((isinstance(v, date) for v in inputs), dtype=bool, count=len(inputs))
    out = np.full(len(inputs), np.datetime64("NaT"), dtype="datetime64[ns]")
    if is_text.any():
        out[is_text] = _parse_text(pd.Series(inputs[is_text], dtype=object), fmt).to_numpy()
    if is_date.any():
        out[is_date] = _to_datetime(pd.Series(inputs[is_date], dtype=object)).to_numpy()
    return pd.Series(out, index=values.index, name=values.name)


def _digit_width(fmt: str | None) -> int | None:
    """How many digits a date in `fmt` has when it is all digits ("%d%m%Y": 8), else None."""
    sample = datetime(2001, 1, 1).strftime(fmt) if fmt else ""
    return len(sample) if sample.isdigit() else None


def _date_input(value: Any, width: int | None) -> str | date | None:
    """What in a raw value may be a date: text, a date object, or, where the format is all
    digits (`width` of them), a whole number's digits with the leading zeros a CSV drops."""
    if isinstance(value, str | date):
        return value
    if isinstance(value, np.datetime64):
        try:
            return pd.Timestamp(value)
        except (ValueError, OverflowError):
            return None
    if width is None or isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    return str(value).zfill(width) if isinstance(value, int | np.integer) and value >= 0 else None


def _parse_text(text: pd.Series, fmt: str | None) -> pd.Series:
    """Text as naive UTC timestamps, NaT where it does not read.

    With `fmt`, every value must match it. Without, each value is read in the form pandas
    infers from the first one (fast), and what that leaves unread is read value by value
    (dateutil), so the slow parse only sees the odd ones out. Not format="ISO8601": pandas
    2.3 applies an earlier value's UTC offset to a later value that has none.
    """
    if fmt is not None:
        return _to_datetime(text, format=fmt)
    parsed = _to_datetime(text)
    unread = parsed.isna().to_numpy()
    if unread.any():
        parsed[unread] = _to_datetime(text[unread], format="mixed").to_numpy()
    return parsed


def _to_datetime(values: pd.Series, **how: str) -> pd.Series:
    with warnings.catch_warnings():
        # "Could not infer format ...": parsing each value alone is the intended fallback.
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(values, errors="coerce", utc=True, **how)
        except (ValueError, TypeError, OverflowError):
            # A format pandas cannot apply at all (a bad directive): no value reads in it.
            return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    return _as_naive_ns(parsed)


def _as_naive_ns(stamps: pd.Series) -> pd.Series:
    """Timestamps in UTC without time zone, at nanosecond resolution where they fit it."""
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert(None)
    try:
        return stamps.astype("datetime64[ns]")
    except (ValueError, OverflowError):
        # Beyond nanosecond range (year 9999 from Parquet): GX compares these per value instead.
        return stamps


def utc_naive(moment: Any) -> pd.Timestamp:
    """`moment` as a timestamp without time zone, in UTC (a naive one is taken as UTC)."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert(None) if stamp.tzinfo is not None else stamp
