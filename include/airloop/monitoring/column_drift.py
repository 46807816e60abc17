"""Evidently 0.7's column drift tests, computed from value counts instead of raw rows.

A column is summarised once as `ColumnCounts`: its sorted distinct non-null values, how
often each occurs, and (numeric) the standard deviation. Every test Evidently's
`DataDriftPreset` runs can be computed exactly from two such summaries, so the reference
side (the champion's training data) is summarised once when the model is trained and a
drift check only has to count the current window (see `airloop.monitoring.reference`).

The formulas, thresholds, binning and default-method rules follow Evidently 0.7.23's
`evidently.legacy.calculations.stattests` (checked value for value against it in
tests/unit/test_column_drift.py):

- wasserstein: SciPy's Wasserstein-1 distance over the std of the reference, >= threshold
- jensenshannon, psi, kl_div: over shared bins (Sturges edges over both samples for a
  numeric column with more than 20 distinct reference values, else one bin per value),
  >= threshold
- ks: two-sample Kolmogorov-Smirnov p-value, <= threshold
- chisquare, z: p-values over categories, < threshold

Default per column, as Evidently picks it: a reference of more than 1000 rows gets
wasserstein (numeric with more than 5 distinct values) or jensenshannon; a smaller one gets
ks (numeric, more than 5 values), chisquare (more than 2 values) or z.

Every column gets a finite score. A test that cannot apply to the column as it turned out
is replaced, and `ColumnDrift` records the method asked for, the one used and why:

- wasserstein or ks on categories (strings have no order or distance);
- chisquare or z on a numeric column of more than 5 distinct values (Evidently only runs
  them on numbers where its own default picks them: 5 values or fewer; the numbers are
  then tested as categories, and `evidently_kind` says to declare them so to Evidently,
  which accepts these tests by name only for categorical columns);
- z on more than two distinct values (it tests one value's share against the rest's);
- chisquare on a single value (no degrees of freedom: its p-value is NaN);
- any other score that is not finite (scipy's jensenshannon takes the square root of a
  rounding error below zero on shares that differ only in their last bits).

The replacement is the test Evidently would pick for the column, else psi (defined for
any two non-empty columns and never NaN). It keeps the threshold asked for when both
tests give the same kind of score (p-values: ks, chisquare, z; the others: distances),
else it takes its own default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

ColumnKind = Literal["numerical", "categorical"]
METHODS = ("wasserstein", "jensenshannon", "psi", "kl_div", "ks", "chisquare", "z")
DEFAULT_THRESHOLDS = {
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
    "kl_div": 0.1,
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
}
NUMERIC_ONLY = ("wasserstein", "ks")
CATEGORICAL_ONLY = ("chisquare", "z")
P_VALUE_METHODS = ("ks", "chisquare", "z")
# The last resort when neither the test asked for nor Evidently's pick gives a score.
FALLBACK_METHOD = "psi"
# Evidently's limits: above this many reference rows the distance tests are the default;
# with more distinct reference values than this, numeric columns are binned.
_SMALL_REFERENCE_ROWS = 1000
_BINNED_ABOVE_DISTINCT = 20
# Evidently's default tests numbers as categories (chisquare, z) up to this many values.
_CATEGORY_TESTS_MAX_NUMBERS = 5
# scipy's ks_2samp computes exact p-values up to this sample size, asymptotic ones above.
_KS_EXACT_MAX_N = 10000


@dataclass(frozen=True)
class ColumnCounts:
    """One column's non-null values as (sorted distinct values, occurrences)."""

    kind: ColumnKind
    values: np.ndarray
    counts: np.ndarray
    # np.std of the raw values (numeric columns; 0.0 for categorical ones).
    std: float = 0.0

    @property
    def rows(self) -> int:
        return int(self.counts.sum())

    @property
    def distinct(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class ColumnDrift:
    """One column's test: which method, its score and threshold, and the verdict.

    `method` is the test that ran. When it replaced the one asked for (configured, else
    Evidently's pick), `requested_method` names that one and `note` says why, in the form
    "chisquare replaced by z: <reason>"; both are None when the test ran as asked.
    """

    column: str
    method: str
    score: float
    threshold: float
    drifted: bool
    requested_method: str | None = None
    note: str | None = None


def count_values(column: pd.Series, kind: ColumnKind) -> ColumnCounts:
    """Summarise a column as Evidently sees it: infinities and nulls dropped."""
    if kind == "numerical":
        raw = column.to_numpy(dtype="float64", na_value=np.nan)
        raw = raw[np.isfinite(raw)]
        values, counts = np.unique(raw, return_counts=True)
        return ColumnCounts(kind, values, counts, float(np.std(raw)) if len(raw) else 0.0)
    present = column.dropna()
    values, counts = np.unique(present.astype(str).to_numpy(dtype=str), return_counts=True)
    return ColumnCounts(kind, values, counts)


def default_method(reference: ColumnCounts, current: ColumnCounts) -> str:
    """The test Evidently's DataDriftPreset would pick for this column."""
    distinct = len(np.union1d(reference.values, current.values))
    if reference.rows <= _SMALL_REFERENCE_ROWS:
        if reference.kind == "numerical" and distinct > 5:
            return "ks"
        return "chisquare" if distinct > 2 else "z"
    if reference.kind == "numerical" and distinct > 5:
        return "wasserstein"
    return "jensenshannon"


def compare_column(
    column: str,
    reference: ColumnCounts,
    current: ColumnCounts,
    method: str | None = None,
    threshold: float | None = None,
) -> ColumnDrift:
    """Run `method` (Evidently's default when None) on one column, or the test that replaces it.

    Always gives a finite score (see the module docstring for when and how a test is
    replaced). Raises ValueError only when a side has no non-null values to test or the two
    sides were counted as different kinds.
    """
    for label, side in (("reference", reference), ("current", current)):
        if side.rows == 0:
            raise ValueError(f"{label} column {column!r} has no non-null values to test")
    if reference.kind != current.kind:
        raise ValueError(f"column {column!r} was counted {reference.kind} in reference, {current.kind} now")
    asked = method or default_method(reference, current)
    reason = _inapplicable(column, asked, reference, current)
    if reason is None:
        score = _score(asked, reference, current)
        if np.isfinite(score):
            return _verdict(column, asked, score, _threshold(asked, threshold))
        reason = f"{asked} gave no finite score ({score}) on these values"
    return _replacement(column, asked, reason, reference, current, threshold)


def _replacement(
    column: str,
    asked: str,
    reason: str,
    reference: ColumnCounts,
    current: ColumnCounts,
    threshold: float | None,
) -> ColumnDrift:
    """Evidently's pick for the column, else psi, in place of `asked`; the note says why."""
    for candidate in (default_method(reference, current), FALLBACK_METHOD):
        if candidate == asked or _inapplicable(column, candidate, reference, current):
            continue
        score = _score(candidate, reference, current)
        if np.isfinite(score):
            # A threshold set for a p-value means nothing for a distance, and the other way round.
            kept = threshold is not None and (asked in P_VALUE_METHODS) == (candidate in P_VALUE_METHODS)
            test = _verdict(column, candidate, score, _threshold(candidate, threshold if kept else None))
            return replace(test, requested_method=asked, note=f"{asked} replaced by {candidate}: {reason}")
    raise AssertionError(f"{FALLBACK_METHOD} gave no finite score for {column!r}")  # psi is always finite


def evidently_kind(kind: ColumnKind, method: str) -> ColumnKind:
    """The column type to declare to Evidently for a column tested by `method`.

    Evidently accepts chisquare and z by name only for categorical columns, so a numeric
    column they test is declared categorical: both tests read the values as categories
    (no order), so the scores are the ones they give on it as numbers.
    """
    return "categorical" if method in CATEGORICAL_ONLY else kind


def unseen_share(reference: ColumnCounts, current: ColumnCounts) -> float:
    """The share of current non-null rows whose value never occurs in the reference (0.0 if none)."""
    if current.rows == 0:
        return 0.0
    unseen = ~np.isin(current.values, reference.values)
    return float(current.counts[unseen].sum() / current.rows)


def _inapplicable(column: str, method: str, reference: ColumnCounts, current: ColumnCounts) -> str | None:
    """Why `method` cannot test this column, or None when it can."""
    if method not in _SCORES:
        return f"{method} is not a known drift test ({', '.join(METHODS)})"
    if method in NUMERIC_ONLY and reference.kind != "numerical":
        return f"{method} compares numbers; {column!r} holds categories"
    distinct = len(np.union1d(reference.values, current.values))
    many_numbers = reference.kind == "numerical" and distinct > _CATEGORY_TESTS_MAX_NUMBERS
    if method in CATEGORICAL_ONLY and many_numbers:
        return f"{method} compares categories; {column!r} has {distinct} distinct numbers"
    if method == "z" and distinct > 2:
        return f"z compares two values; {column!r} has {distinct}"
    if method == "chisquare" and distinct < 2:
        # One category leaves no degrees of freedom: scipy's p-value is NaN.
        return f"chisquare needs two values or more; {column!r} has one"
    return None


def _score(method: str, reference: ColumnCounts, current: ColumnCounts) -> float:
    # chisquare divides by the zero expected rows of a category new in current (p = 0, as
    # Evidently's); a NaN or infinite score is the caller's to replace.
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(_SCORES[method](reference, current))


def _threshold(method: str, threshold: float | None) -> float:
    return DEFAULT_THRESHOLDS[method] if threshold is None else threshold


def _verdict(column: str, method: str, score: float, threshold: float) -> ColumnDrift:
    """Evidently's decision rule: p-values drift below the threshold (ks: at it), distances at or above."""
    if method == "ks":
        drifted = score <= threshold
    elif method in ("chisquare", "z"):
        drifted = score < threshold
    else:
        drifted = score >= threshold
    return ColumnDrift(column, method, score, threshold, bool(drifted))


def _aligned(reference: ColumnCounts, current: ColumnCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both sides' counts over the union of their values."""
    support = np.union1d(reference.values, current.values)
    ref, cur = np.zeros(len(support)), np.zeros(len(support))
    ref[np.searchsorted(support, reference.values)] = reference.counts
    cur[np.searchsorted(support, current.values)] = current.counts
    return support, ref, cur


def _sturges_edges(reference: ColumnCounts, current: ColumnCounts) -> np.ndarray:
    """np.histogram_bin_edges(concat(reference, current), bins="sturges"), from the summaries."""
    low = min(reference.values[0], current.values[0])
    high = max(reference.values[-1], current.values[-1])
    if low == high:
        low, high = low - 0.5, high + 0.5
    width = (high - low) / (np.log2(reference.rows + current.rows) + 1.0)
    bins = int(np.ceil((high - low) / width)) if width else 1
    return np.linspace(low, high, bins + 1, endpoint=True)


def _shares(
    reference: ColumnCounts, current: ColumnCounts, fill_zeroes: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each side's share of rows per bin (Evidently's get_binned_data)."""
    if reference.kind == "numerical" and reference.distinct > _BINNED_ABOVE_DISTINCT:
        edges = _sturges_edges(reference, current)
        ref = np.histogram(reference.values, edges, weights=reference.counts)[0] / reference.rows
        cur = np.histogram(current.values, edges, weights=current.counts)[0] / current.rows
    else:
        _, ref_counts, cur_counts = _aligned(reference, current)
        ref, cur = ref_counts / reference.rows, cur_counts / current.rows
    if fill_zeroes:
        # Evidently replaces empty bins by a small share so logarithms stay finite.
        for shares in (ref, cur):
            smallest = shares[shares != 0].min()
            shares[shares == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return ref, cur


def _wasserstein(reference: ColumnCounts, current: ColumnCounts) -> float:
    from scipy.stats import wasserstein_distance

    distance = wasserstein_distance(reference.values, current.values, reference.counts, current.counts)
    return float(distance / max(reference.std, 0.001))


def _jensenshannon(reference: ColumnCounts, current: ColumnCounts) -> float:
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(*_shares(reference, current, fill_zeroes=False)))


def _psi(reference: ColumnCounts, current: ColumnCounts) -> float:
    ref, cur = _shares(reference, current, fill_zeroes=True)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def _kl_div(reference: ColumnCounts, current: ColumnCounts) -> float:
    from scipy.stats import entropy

    return float(entropy(*_shares(reference, current, fill_zeroes=True)))


def _ks(reference: ColumnCounts, current: ColumnCounts) -> float:
    from scipy.stats import distributions, ks_2samp

    n1, n2 = reference.rows, current.rows
    if max(n1, n2) <= _KS_EXACT_MAX_N:  # small: scipy's exact p-value on the rows themselves
        rows = [np.repeat(side.values, side.counts) for side in (reference, current)]
        return float(ks_2samp(*rows).pvalue)
    _, ref, cur = _aligned(reference, current)
    differences = np.cumsum(ref) / n1 - np.cumsum(cur) / n2
    statistic = max(float(np.clip(-differences.min(), 0, 1)), float(differences.max()))
    larger, smaller = max(n1, n2), min(n1, n2)
    return float(distributions.kstwo.sf(statistic, np.round(larger * smaller / (larger + smaller))))


def _chisquare(reference: ColumnCounts, current: ColumnCounts) -> float:
    from scipy.stats import chisquare

    _, ref, cur = _aligned(reference, current)
    # A category new in current has no expected rows: the statistic is infinite, p = 0.
    return float(chisquare(cur, ref * (current.rows / reference.rows))[1])


def _z(reference: ColumnCounts, current: ColumnCounts) -> float:
    from scipy.stats import norm

    if reference.distinct == 1 and current.distinct == 1 and reference.values[0] == current.values[0]:
        return 1.0
    support, ref, cur = _aligned(reference, current)
    # The share of rows that are not the first value, on each side; a pooled z-test.
    p1, p2 = 1 - ref[0] / reference.rows, 1 - cur[0] / current.rows
    n1, n2 = reference.rows, current.rows
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(2 * (1 - norm.cdf(abs(z))))


_SCORES = {
    "wasserstein": _wasserstein,
    "jensenshannon": _jensenshannon,
    "psi": _psi,
    "kl_div": _kl_div,
    "ks": _ks,
    "chisquare": _chisquare,
    "z": _z,
}
