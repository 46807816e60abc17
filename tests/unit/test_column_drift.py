"""The count-based column drift tests give Evidently's own scores and verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airloop.monitoring.column_drift import (
    CATEGORICAL_ONLY,
    METHODS,
    NUMERIC_ONLY,
    compare_column,
    count_values,
    default_method,
)

RNG = np.random.default_rng(0)
CATS = np.array(list("abcdefg"))


def _numeric(n: int, shift: float, scale: float = 1.0) -> pd.Series:
    values = RNG.normal(shift, scale, n)
    values[:5] = np.nan
    values[5:8] = np.inf  # Evidently drops infinities with the nulls
    return pd.Series(values)


def _categorical(n: int, shares: list[float], extra: str | None = None) -> pd.Series:
    values = list(CATS[: len(shares)]) if extra is None else [*CATS[: len(shares) - 1], extra]
    series = pd.Series(RNG.choice(values, n, p=shares), dtype=object)
    series[:4] = None
    return series


CASES = {
    # name: (reference, current, kind)
    "numeric shifted": (_numeric(5000, 0), _numeric(4000, 0.15, 1.1), "numerical"),
    "numeric same": (_numeric(20000, 0), _numeric(20000, 0), "numerical"),
    "numeric small": (_numeric(300, 0), _numeric(200, 0.3), "numerical"),
    "numeric large (asymptotic ks)": (_numeric(30000, 0), _numeric(25000, 0.02), "numerical"),
    "numeric 15 values": (
        pd.Series(RNG.integers(0, 15, 3000).astype(float)),
        pd.Series(RNG.integers(2, 16, 2500).astype(float)),
        "numerical",
    ),
    "numeric 4 values, small": (
        pd.Series(RNG.integers(0, 4, 500).astype(float)),
        pd.Series(RNG.integers(0, 4, 400).astype(float)),
        "numerical",
    ),
    "categorical, a new value": (
        _categorical(3000, [0.3, 0.2, 0.15, 0.15, 0.1, 0.1]),
        _categorical(2000, [0.2, 0.2, 0.15, 0.15, 0.1, 0.1, 0.1], extra="h"),
        "categorical",
    ),
    "categorical small": (
        _categorical(400, [0.25, 0.25, 0.25, 0.25]),
        _categorical(300, [0.4, 0.2, 0.2, 0.2]),
        "categorical",
    ),
    "binary small": (_categorical(800, [0.5, 0.5]), _categorical(600, [0.56, 0.44]), "categorical"),
    "binary large": (_categorical(8000, [0.5, 0.5]), _categorical(6000, [0.52, 0.48]), "categorical"),
}


def _evidently(reference: pd.Series, current: pd.Series, kind: str, method: str | None):
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
    ref = reference.replace([np.inf, -np.inf], np.nan).dropna()
    cur = current.replace([np.inf, -np.inf], np.nan).dropna()
    test = get_stattest(ref, cur, column_type, method)
    return test, test(ref, cur, column_type, None)


@pytest.mark.parametrize("case", list(CASES))
def test_every_method_scores_and_decides_as_evidently_does(case: str) -> None:
    reference, current, kind = CASES[case]
    ref, cur = count_values(reference, kind), count_values(current, kind)
    wrong_kind = NUMERIC_ONLY if kind == "categorical" else CATEGORICAL_ONLY
    methods = [None, *(m for m in METHODS if m not in wrong_kind)]
    if ref.distinct > 2 or cur.distinct > 2:
        methods = [m for m in methods if m != "z"]  # a two-value test
    for method in methods:
        ours = compare_column("x", ref, cur, method)
        test, theirs = _evidently(reference, current, kind, method)
        assert ours.method == test.name
        assert ours.score == pytest.approx(theirs.drift_score, rel=1e-9, abs=1e-12), (case, method)
        assert ours.drifted == bool(theirs.drifted), (case, method, ours.score)
        assert ours.threshold == theirs.actual_threshold


def test_the_default_method_follows_evidentlys_rules() -> None:
    picks = {}
    for case, (reference, current, kind) in CASES.items():
        ref, cur = count_values(reference, kind), count_values(current, kind)
        picks[case] = default_method(ref, cur)
    assert picks == {
        "numeric shifted": "wasserstein",
        "numeric same": "wasserstein",
        "numeric small": "ks",
        "numeric large (asymptotic ks)": "wasserstein",
        "numeric 15 values": "wasserstein",
        "numeric 4 values, small": "chisquare",
        "categorical, a new value": "jensenshannon",
        "categorical small": "chisquare",
        "binary small": "z",
        "binary large": "jensenshannon",
    }


def test_an_empty_side_is_named() -> None:
    empty = count_values(pd.Series([np.nan, np.inf]), "numerical")
    full = count_values(_numeric(100, 0), "numerical")
    with pytest.raises(ValueError, match="current column 'delay' has no non-null values"):
        compare_column("delay", full, empty)


def test_a_test_that_does_not_fit_the_column_is_replaced_and_says_so() -> None:
    full = count_values(_numeric(100, 0), "numerical")
    labels = count_values(_categorical(100, [0.5, 0.5]), "categorical")

    on_labels = compare_column("carrier", labels, labels, "wasserstein", threshold=0.3)
    on_numbers = compare_column("delay", full, full, "chisquare", threshold=0.01)

    # Evidently's own pick replaces it; a threshold of the same kind of score is kept.
    assert (on_labels.method, on_labels.requested_method) == ("z", "wasserstein")
    assert (
        on_labels.note
        == "wasserstein replaced by z: wasserstein compares numbers; 'carrier' holds categories"
    )
    assert on_labels.threshold == 0.05 and not on_labels.drifted
    assert (on_numbers.method, on_numbers.requested_method) == ("ks", "chisquare")
    assert on_numbers.note is not None and f"'delay' has {full.distinct} distinct numbers" in on_numbers.note
    assert on_numbers.threshold == 0.01
    assert compare_column("delay", full, full, "ks").note is None
