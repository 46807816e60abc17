"""Propose the `dataset:` section of a config from a reference sample, for a person to edit.

`airloop data profile FILE` prints `profile_yaml(FILE)`. Every proposal is drawn from the sample
alone, by rules that know nothing of any dataset:

- type: from the dtype (`bool`, `int`, `float`); object and string columns from their values
  (`str`, or `bool`/`int`/`float` when every value is one). A float column of whole numbers stays
  `float` (CSV stores a nullable int that way, but declaring it `int` would make serving refuse
  fractions the validator lets through); strings that look like numbers stay `str` (they are
  strings to the validator, and often identifiers whose leading zeros matter).
- nullable: true exactly when the sample has nulls; all_null_ok only when it has nothing else.
- min/max: the sample's range widened by `range_margin` of its spread on each side, never past
  zero for a column of one sign, rounded outward to a round number. A constant column has no
  spread to widen, so it only keeps its sign.
- allowed: the sorted values of a string column with at most `max_categories` distinct values,
  each seen twice on average (so a small sample's identifiers are not taken for categories); a
  string column with a single value gets none, as a numeric constant gets no range.
- mean: the sample's mean and standard deviation for a non-constant numeric column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from airloop.config import ColumnType
from airloop.data.frames import read_table

# One month of nycflights13 needs about 22% of its spread to accept the other eleven (July has a
# flight at 1 a.m.; January's earliest leaves at 5); half the spread leaves room for excursions
# the sample did not show, and still rejects a unit mix-up or a -999 sentinel.
RANGE_MARGIN = 0.5
# Significant digits of proposed means and standard deviations: more would be one sample's noise.
STAT_DIGITS = 4
# Row-count bounds as shares of the sample's rows, to two significant digits.
MIN_ROWS_SHARE = 0.5
MAX_ROWS_FACTOR = 3.0
ROW_DIGITS = 2
# Keys longer than this are rarely real keys, and the search grows with each column added.
MAX_KEY_COLUMNS = 4
# Sets of key columns kept at each size of the search; wider finds more, slower.
KEY_BEAM_WIDTH = 4

# What pandas' infer_dtype says of an object column's values, as a config type.
_INFERRED_TYPES: dict[str, ColumnType] = {
    "string": "str",
    "boolean": "bool",
    "integer": "int",
    "floating": "float",
    "mixed-integer-float": "float",
}


def propose_columns(
    frame: pd.DataFrame,
    max_categories: int = 50,
    within_std: float = 3.0,
    range_margin: float = RANGE_MARGIN,
) -> dict[str, dict[str, Any]]:
    """One `ColumnSpec`-shaped mapping per column of `frame`, in the frame's column order.

    Each has `type` and `nullable`, and where the sample supports them `all_null_ok`, `min`/`max`,
    `allowed` and `mean` (`within_std` as given); the rules are the module docstring's. Numbers
    are rounded (bounds outward), so the mapping is what the YAML proposal shows.
    """
    return {
        str(name): _propose_column(frame[name], max_categories, within_std, range_margin)
        for name in frame.columns
    }


def _propose_column(
    column: pd.Series, max_categories: int, within_std: float, range_margin: float
) -> dict[str, Any]:
    kind, _ = _column_type(column)
    nulls = int(column.isna().sum())
    spec: dict[str, Any] = {"type": kind, "nullable": nulls > 0}
    if len(column) > 0 and nulls == len(column):
        spec["all_null_ok"] = True
        return spec
    if kind in ("int", "float"):
        values = _finite(column)
        spec.update(_range(values, integer=kind == "int", margin=range_margin))
        mean = _mean(values, within_std)
        if mean is not None:
            spec["mean"] = mean
    elif kind == "str":
        allowed = _allowed(column, max_categories)
        if allowed is not None:
            spec["allowed"] = allowed
    return spec


def _column_type(column: pd.Series) -> tuple[ColumnType, str | None]:
    """The config type proposed for `column`, and why the validator will refuse it (None if not).

    A column no config type fits (datetimes, categoricals, values of mixed types) is proposed as
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


def _mean(values: pd.Series, within_std: float) -> dict[str, float] | None:
    if values.nunique() < 2:
        return None
    return {
        "reference": _significant(float(values.mean()), STAT_DIGITS),
        "std": _significant(float(values.std()), STAT_DIGITS),
        "within_std": float(within_std),
    }


def _significant(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")


def _allowed(column: pd.Series, max_categories: int) -> list[str] | None:
    values = column.dropna()
    if pd.api.types.infer_dtype(values, skipna=True) != "string":
        return None
    distinct = values.unique()
    # One value is no evidence of a set: the next partition may well hold another.
    if not 1 < len(distinct) <= max_categories or 2 * len(distinct) > len(values):
        return None
    return sorted(str(v) for v in distinct)


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


def propose_row_bounds(rows: int) -> dict[str, int]:
    """`min_rows` and `max_rows` for partitions like a sample of `rows` rows (half and three times)."""
    return {
        "min_rows": max(1, _round_rows(rows * MIN_ROWS_SHARE, math.floor)),
        "max_rows": max(1, _round_rows(rows * MAX_ROWS_FACTOR, math.ceil)),
    }


def _round_rows(value: float, direction: Callable[[float], int]) -> int:
    if value < 1:
        return int(direction(value))
    step = 10 ** max(0, math.floor(math.log10(value)) - ROW_DIGITS + 1)
    return int(direction(value / step) * step)


def profile_yaml(path: str | Path, max_categories: int = 50, within_std: float = 3.0) -> str:
    """A commented YAML proposal for the `dataset:` section, profiled from the CSV/Parquet `path`.

    It holds `columns` (propose_columns), `keys` (propose_keys, when any), `min_rows`/`max_rows`,
    and commented placeholders for the target and features, which no sample can tell.
    Raises ValueError for a file without rows.
    """
    frame = read_table(path)
    if frame.empty:
        raise ValueError(f"{path} has no rows to profile")
    columns = propose_columns(frame, max_categories=max_categories, within_std=within_std)
    keys = propose_keys(frame)
    lines = [
        *_header(path, frame, max_categories),
        "dataset:",
        "  # target: {column: ...}    # what the model predicts",
        "  # features: [...]          # what it predicts from",
    ]
    if keys:
        lines.append(f"  keys: {_flow(keys)}")
    else:
        lines.append(f"  # keys: no set of up to {MAX_KEY_COLUMNS} columns is unique in the sample")
    lines += [f"  {name}: {value}" for name, value in propose_row_bounds(len(frame)).items()]
    lines.append("  columns:")
    notes = _notes(frame)
    for name, spec in columns.items():
        if name in notes:
            lines.append(f"    # {name}: {notes[name]}")
        lines.append(f"    {_flow({name: spec})[1:-1]}")
    return "\n".join(lines) + "\n"


def _header(path: str | Path, frame: pd.DataFrame, max_categories: int) -> list[str]:
    return [
        f"# A proposal for the `dataset:` section of an airloop config, profiled from {path}",
        f"# ({len(frame):,} rows, {len(frame.columns)} columns). Edit it: it knows only this sample.",
        f"# - min/max: the sample's range widened on each side by {RANGE_MARGIN:g} x its spread (never",
        "#   past zero for a column of one sign), rounded outward; a constant keeps only its sign.",
        "# - mean: the sample's mean and standard deviation; a partition whose mean lies more than",
        "#   within_std standard deviations away fails.",
        f"# - allowed: string columns with at most {max_categories} distinct values.",
        "# - keys: the fewest columns (no nulls, no floats) unique together in the sample.",
        f"# - min_rows/max_rows: {MIN_ROWS_SHARE:g} and {MAX_ROWS_FACTOR:g} times the sample's rows.",
        "# Still to add: the target and features, and source/partition/order_by where they apply.",
    ]


def _notes(frame: pd.DataFrame) -> dict[str, str]:
    """Why a column's proposal is thin or will not validate, for a comment above it."""
    notes: dict[str, str] = {}
    for name in frame.columns:
        column = frame[name]
        _, misfit = _column_type(column)
        values = column.dropna()
        if misfit is not None:
            notes[str(name)] = f"{misfit}: convert or drop it, or the type check rejects it"
        elif len(column) and values.empty:
            notes[str(name)] = "only nulls in the sample: its type is a guess"
        elif values.nunique() == 1:
            notes[str(name)] = _constant_note(column, _scalar(values.iloc[0]))
    return notes


def _constant_note(column: pd.Series, value: Any) -> str:
    constant = f"constant in the sample ({_flow(value)})"
    if _column_type(column)[0] not in ("int", "float"):
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
