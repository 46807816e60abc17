"""Drift on every column type and every method, held to real Evidently: it never crashes.

A matrix of column types (low-cardinality ints, floats, text, booleans, dates with a format,
ISO datetimes, constant columns, columns constant on one side) by methods (each drift
method, configured where the config allows it, and Evidently's own pick): every check gives
a verdict, and `compare_frames` itself holds each verdict to Evidently's report on the same
rows. A test that cannot apply is replaced, and the result says which and why.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airloop.config import DriftMethod, parse_config
from airloop.monitoring.column_drift import (
    CATEGORICAL_ONLY,
    METHODS,
    NUMERIC_ONLY,
    ColumnCounts,
    compare_column,
    count_values,
    evidently_kind,
)
from airloop.monitoring.drift import compare_frames, compare_to_reference
from airloop.monitoring.reference import (
    ReferenceProfile,
    compared_frame,
    count_predictions,
    reference_profile,
)

DATE_FORMAT = "%d/%m/%Y"
# Each compared column's declared type.
TYPES = {
    "int1": "int",  # one distinct value on both sides
    "int2": "int",
    "int3": "int",
    "int10": "int",
    "int_one_side": "int",  # three values in the reference, one in the current window
    "amount": "float",
    "carrier": "str",
    "constant": "str",
    "new_value": "str",  # constant in the reference; the current window adds a value
    "flag": "bool",
    "day": "date",
    "stamp": "datetime",
}
NUMERIC = {"int", "float", "date", "datetime"}


def make_config(task: str = "regression", **drift: Any) -> Any:
    columns: dict[str, Any] = {name: {"type": kind} for name, kind in TYPES.items()}
    columns["day"] = {"type": "date", "format": DATE_FORMAT}
    target: dict[str, Any] = {"column": "y"}
    if task == "multiclass_classification":
        columns["y"] = {"type": "str"}
        target["classes"] = ["a", "b", "c", "d"]
        gate = "accuracy"
    else:
        columns["y"] = {"type": "float"}
        gate = "rmse"
    return parse_config(
        {
            "name": "types",
            "task": task,
            "dataset": {"columns": columns, "target": target, "features": list(TYPES)},
            "model": {"family": "sklearn_linear", "registered_name": "types"},
            "gate": {"metric": gate},
            "drift": {"min_rows": 50, **drift},
        }
    )


def make_frame(rows: int, seed: int, current: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 60, rows), unit="D")
    day = pd.Series(days.strftime(DATE_FORMAT), dtype=object)
    day[:3] = "not a date"  # unreadable: counted as null
    stamps = days + pd.to_timedelta(rng.integers(0, 24, rows), unit="h")
    return pd.DataFrame(
        {
            "int1": np.full(rows, 7),
            "int2": rng.integers(0, 2, rows),
            "int3": rng.integers(0, 3, rows),
            "int10": rng.integers(0, 10, rows),
            "int_one_side": np.ones(rows, dtype=int) if current else rng.integers(0, 3, rows),
            "amount": rng.normal(0.0, 1.0, rows),
            "carrier": rng.choice(["AA", "DL", "UA", "WN"], rows),
            "constant": "same",
            "new_value": rng.choice(["a", "b"], rows, p=[0.9, 0.1]) if current else "a",
            "flag": rng.random(rows) < 0.3,
            "day": day,
            "stamp": pd.Series(stamps.strftime("%Y-%m-%dT%H:%M:%S")),
            "y": rng.normal(10.0, 2.0, rows),
        }
    )


def _configurable(method: str | None) -> dict[str, str]:
    """`method` for every column the config allows it on (the others get Evidently's pick)."""
    if method is None:
        return {}
    numeric_only, categorical_only = method in NUMERIC_ONLY, method in CATEGORICAL_ONLY
    return {
        name: method
        for name, kind in TYPES.items()
        if not (numeric_only and kind not in NUMERIC) and not (categorical_only and kind in NUMERIC)
    }


def _recorded(json_path: str) -> dict[str, tuple[str, bool]]:
    """Per column: the method and verdict Evidently's own report recorded."""
    snapshot = json.loads(Path(json_path).read_text())
    verdicts = {t["metric_config"]["metric_id"]: t["status"] == "FAIL" for t in snapshot["tests"]}
    return {
        m["config"]["column"]: (m["config"]["method"], verdicts[m["id"]])
        for m in snapshot["metrics"]
        if m["config"]["type"].endswith(":ValueDrift")
    }


def test_the_methods_listed_are_the_configs() -> None:
    assert set(typing.get_args(DriftMethod)) == set(METHODS)


@pytest.mark.parametrize("reference_rows", [400, 1500], ids=["small reference", "large reference"])
@pytest.mark.parametrize("method", [None, *METHODS])
def test_every_column_type_with_every_method_gets_a_verdict(
    method: str | None, reference_rows: int, tmp_path: Path
) -> None:
    config = make_config(methods=_configurable(method))
    reference = make_frame(reference_rows, seed=1)
    current = make_frame(reference_rows * 3 // 4, seed=2, current=True)

    # Inside, the verdicts are held to Evidently's report on the same rows (RuntimeError if not).
    result = compare_frames(reference, current, config, tmp_path, "matrix")

    assert result.status in {"drift", "no_drift"}
    assert all(np.isfinite(score) for score in result.column_scores.values())
    assert json.loads(json.dumps(result.summary())) == result.summary()
    recorded = _recorded(result.json_path or "")
    assert {column: used for column, (used, _) in recorded.items()} == result.column_methods
    assert [column for column, (_, drifted) in recorded.items() if drifted] == result.drifted_columns
    # Identical constant columns never drift; one side's new value and the shrunk int do.
    assert {"int1", "constant"}.isdisjoint(result.drifted_columns)
    assert result.unseen_shares["new_value"] == pytest.approx((current["new_value"] == "b").mean(), abs=1e-12)
    assert result.unseen_shares["carrier"] == 0.0 and result.unseen_shares["flag"] == 0.0
    assert "new_value" in result.reason and "unseen in the reference" in result.reason
    for column, note in result.column_notes.items():
        asked = result.requested_methods[column]
        assert note.startswith(f"{asked} replaced by {result.column_methods[column]}: ")
        assert f"{column}: {note}" in result.reason
    if method == "chisquare":
        # A single value leaves chisquare no degrees of freedom: Evidently's pick runs instead.
        expected = "z" if reference_rows <= 1000 else "jensenshannon"
        assert result.column_methods["constant"] == expected
        assert "chisquare needs two values or more; 'constant' has one" in result.column_notes["constant"]
    if method == "z":
        # Four carriers, not two values: Evidently's pick runs instead.
        assert result.column_methods["carrier"] == (
            "chisquare" if reference_rows <= 1000 else "jensenshannon"
        )
        assert "z compares two values; 'carrier' has 4" in result.column_notes["carrier"]
        assert "flag" not in result.column_notes
    if method is None:
        assert result.column_notes == {}


def test_a_regression_table_of_low_cardinality_ints_reaches_evidently(tmp_path: Path) -> None:
    # Evidently picks chisquare (3 to 5 values) or z (2) for these on a small reference, and
    # refuses both by name for a numeric column: they are declared categorical to it.
    config = make_config(columns=["int2", "int3", "int_one_side", "amount", "y"])
    reference, current = make_frame(600, seed=3), make_frame(500, seed=4, current=True)

    result = compare_frames(reference, current, config, tmp_path, "regression")

    assert result.column_methods == {
        "int2": "z",
        "int3": "chisquare",
        "int_one_side": "chisquare",
        "amount": "ks",
        "y": "ks",
    }
    assert result.drifted_columns == ["int_one_side"] and result.column_notes == {}
    assert {column: used for column, (used, _) in _recorded(result.json_path or "").items()} == (
        result.column_methods
    )


@pytest.mark.parametrize("method", [None, *METHODS])
@pytest.mark.parametrize(
    ("kind", "reference", "current"),
    [
        ("numerical", [7.0] * 300, [7.0] * 200),
        ("numerical", [1.0] * 300, [2.0] * 200),
        ("numerical", [0.0, 1.0] * 150, [1.0] * 200),
        ("numerical", [0.0, 1.0, 2.0] * 100, [0.0, 1.0, 2.0, 2.0] * 50),
        ("numerical", list(range(10)) * 150, list(range(10)) * 100),
        ("categorical", ["x"] * 1500, ["x"] * 1000),
        ("categorical", ["x"] * 300, ["y"] * 200),
        ("categorical", ["True", "False"] * 150, ["True"] * 200),
        ("categorical", ["a", "b", "c"] * 100, ["a", "b", "c", "d"] * 50),
    ],
    ids=[
        "constant number",
        "two constants",
        "two values, one left",
        "three values",
        "ten values, large",
        "constant text, large",
        "two text constants",
        "bool, one left",
        "three categories, one new",
    ],
)
def test_every_method_on_few_values_scores_as_evidently_does(
    kind: str, reference: list, current: list, method: str | None
) -> None:
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    ref, cur = count_values(pd.Series(reference), kind), count_values(pd.Series(current), kind)  # type: ignore[arg-type]

    ours = compare_column("x", ref, cur, method)

    assert np.isfinite(ours.score)
    assert (ours.note is None) == (ours.requested_method is None)
    if method is not None and ours.method != method:
        assert ours.requested_method == method and ours.note and ours.note.startswith(f"{method} replaced")
    if ref.distinct == cur.distinct == 1 and ref.values[0] == cur.values[0]:
        assert not ours.drifted
    # Evidently, told the column type `evidently_kind` gives, runs the same test to the same score.
    declared = (
        ColumnType.Categorical
        if evidently_kind(ref.kind, ours.method) == "categorical"
        else ColumnType.Numerical
    )
    rows = [pd.Series(reference), pd.Series(current)]
    with np.errstate(divide="ignore"):  # chisquare on a new category: p = 0
        theirs = get_stattest(*rows, declared, ours.method)(*rows, declared, ours.threshold)
    assert ours.score == pytest.approx(theirs.drift_score, rel=1e-9, abs=1e-12)
    assert ours.drifted == bool(theirs.drifted)


def test_all_null_or_unreadable_current_columns_are_skipped_not_crashed(tmp_path: Path) -> None:
    config = make_config()
    reference = make_frame(400, seed=5)
    for column, empty in (("day", "never a date"), ("flag", None), ("int3", np.nan)):
        current = make_frame(300, seed=6)
        current[column] = empty

        result = compare_frames(reference, current, config, tmp_path, "empty")

        assert result.status == "skipped" and f"{column!r} (0)" in result.reason


def test_dates_compare_as_days_and_held_as_text_or_timestamps(tmp_path: Path) -> None:
    config = make_config(columns=["day", "stamp"])
    reference = make_frame(1500, seed=7)
    as_timestamps = make_frame(1200, seed=8)
    as_timestamps["day"] = pd.to_datetime(as_timestamps["day"], format=DATE_FORMAT, errors="coerce")
    as_timestamps["stamp"] = pd.to_datetime(as_timestamps["stamp"])
    later = make_frame(1200, seed=8)
    later["stamp"] = (pd.to_datetime(later["stamp"]) + pd.Timedelta(days=90)).astype(str)

    compared = compared_frame(as_timestamps, "current", config)
    steady = compare_frames(reference, as_timestamps, config, tmp_path, "steady")
    shifted = compare_frames(reference, later, config, tmp_path, "later")

    assert compared["day"].isna().sum() == 3  # the three unreadable dates
    assert compared["stamp"].min() >= (pd.Timestamp("2024-01-01") - pd.Timestamp("1970-01-01")).days
    assert steady.status == "no_drift" and steady.column_methods == {
        "day": "wasserstein",
        "stamp": "wasserstein",
    }
    assert shifted.drifted_columns == ["stamp"]


def test_booleans_held_as_text_are_the_same_booleans(tmp_path: Path) -> None:
    config = make_config(columns=["flag", "amount"])
    reference, current = make_frame(400, seed=9), make_frame(300, seed=10)
    as_text = current.assign(flag=current["flag"].map({True: "true", False: "FALSE"}))

    as_bools = compare_frames(reference, current, config, tmp_path, "bools")
    from_text = compare_frames(reference, as_text, config, tmp_path, "text")

    assert from_text.column_scores == as_bools.column_scores
    assert from_text.unseen_shares == {"flag": 0.0}


def _labels(rows: int, seed: int, shares: list[float], classes: str = "abcd") -> np.ndarray:
    return np.random.default_rng(seed).choice(list(classes), rows, p=shares)


def test_multiclass_predictions_are_classes_saved_and_compared_as_categories(tmp_path: Path) -> None:
    config = make_config("multiclass_classification", columns=["amount", "carrier"])
    reference = make_frame(1500, seed=11)
    trained = _labels(len(reference), 12, [0.4, 0.3, 0.2, 0.1])

    profile = ReferenceProfile.load(reference_profile(reference, config, trained).save(tmp_path / "p.npz"))
    current = make_frame(1000, seed=13)
    steady = compare_to_reference(
        profile, current, config, tmp_path, "steady", _labels(1000, 14, [0.4, 0.3, 0.2, 0.1])
    )
    shifted = compare_to_reference(
        profile, current, config, tmp_path, "shifted", _labels(1000, 15, [0.1, 0.2, 0.3, 0.3, 0.1], "abcde")
    )

    assert profile.predictions is not None and profile.predictions.kind == "categorical"
    assert list(profile.predictions.values) == ["a", "b", "c", "d"]
    assert steady.prediction_drift is not None and steady.prediction_drift.method == "jensenshannon"
    assert steady.status == "no_drift" and steady.unseen_shares["prediction"] == 0.0
    assert shifted.status == "drift" and shifted.prediction_drift is not None
    assert shifted.prediction_drift.drifted and shifted.drifted_columns == []
    assert shifted.unseen_shares["prediction"] == pytest.approx(0.1, abs=0.03)  # class "e"
    assert shifted.summary()["prediction_drift"]["method"] == "jensenshannon"


def test_numeric_predictions_still_round_trip_and_two_dimensional_ones_are_refused(tmp_path: Path) -> None:
    config = make_config(columns=["amount"])
    reference = make_frame(500, seed=16)
    scores = np.random.default_rng(17).random(500)

    loaded = ReferenceProfile.load(reference_profile(reference, config, scores).save(tmp_path / "p.npz"))

    assert _same(loaded.predictions, count_predictions(scores))
    assert count_predictions(np.array(["b", "a", None], dtype=object)).kind == "categorical"
    with pytest.raises(ValueError, match=r"one value a row \(1-D\), not shape \(500, 3\)"):
        reference_profile(reference, config, np.ones((500, 3)))


def _same(left: ColumnCounts | None, right: ColumnCounts) -> bool:
    return (
        left is not None
        and left.kind == right.kind
        and np.array_equal(left.values, right.values)
        and (np.array_equal(left.counts, right.counts) and left.std == right.std)
    )
