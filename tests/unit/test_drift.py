"""Drift checks against a reference profile, held to real Evidently: verdicts, skips, errors, reports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airloop.config import AirloopConfig, ConfigError, parse_config
from airloop.monitoring.drift import DriftResult, compare_frames, compare_to_reference
from airloop.monitoring.reference import ReferenceProfile, reference_profile


def make_config(**drift: Any) -> AirloopConfig:
    return parse_config(
        {
            "name": "synthetic",
            "task": "regression",
            "dataset": {
                "columns": {
                    "x": {"type": "float"},
                    "n": {"type": "int"},
                    "c": {"type": "str"},
                    "y": {"type": "float"},
                    "unused": {"type": "str"},
                },
                "target": {"column": "y"},
                "features": ["x", "n", "c"],
            },
            "model": {"family": "sklearn_linear", "registered_name": "synthetic"},
            "gate": {"metric": "rmse"},
            "drift": {"share_threshold": 0.25, "min_rows": 100, **drift},
        }
    )


def make_frame(rows: int, seed: int, x_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(x_shift, 1.0, rows),
            "n": rng.integers(0, 50, rows),
            "c": rng.choice(["a", "b", "c", "d"], rows, p=[0.4, 0.3, 0.2, 0.1]),
            "y": rng.normal(10.0, 2.0, rows),
            "unused": "ignored",
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_frame(3000, seed=1)


def test_same_distribution_is_no_drift(reference: pd.DataFrame, tmp_path: Path) -> None:
    result = compare_frames(reference, make_frame(2000, seed=2), make_config(), tmp_path, "same")

    assert result.status == "no_drift"
    assert not result.drift_detected
    assert result.drift_share == 0.0
    assert result.drifted_columns == []
    assert set(result.column_scores) == {"x", "n", "c", "y"}
    assert "0 of 4 columns drifted" in result.reason


def test_shifted_column_is_drift_and_named(reference: pd.DataFrame, tmp_path: Path) -> None:
    current = make_frame(2000, seed=3, x_shift=3.0)

    result = compare_frames(reference, current, make_config(), tmp_path, "shifted")

    assert result.status == "drift"
    assert result.drift_detected
    assert result.drifted_columns == ["x"]
    assert result.drift_share == pytest.approx(0.25)
    assert result.column_scores["x"] > result.column_scores["y"]
    assert "1 of 4 columns drifted" in result.reason and "x" in result.reason
    summary = result.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["drift_detected"] is True
    assert summary["drifted_columns"] == ["x"]


def test_small_samples_use_p_values_and_still_detect_drift(tmp_path: Path) -> None:
    # At 1000 rows or fewer Evidently switches to p-value tests, where a low score means drift.
    reference, current = make_frame(400, seed=4), make_frame(400, seed=5, x_shift=3.0)
    current["c"] = "d"

    result = compare_frames(reference, current, make_config(), tmp_path, "small")

    assert result.status == "drift"
    assert result.drifted_columns == ["x", "c"]
    assert result.column_scores["x"] < 0.05
    assert result.column_methods == {"x": "ks", "n": "ks", "c": "chisquare", "y": "ks"}


def test_column_threshold_reaches_evidently(reference: pd.DataFrame, tmp_path: Path) -> None:
    current = make_frame(2000, seed=6, x_shift=0.4)

    default = compare_frames(reference, current, make_config(), tmp_path, "default")
    lenient = compare_frames(reference, current, make_config(column_threshold=0.9), tmp_path, "lenient")

    assert default.drifted_columns == ["x"]
    assert lenient.status == "no_drift"
    assert lenient.column_scores["x"] == pytest.approx(default.column_scores["x"])


def test_too_few_rows_is_skipped_not_no_drift(reference: pd.DataFrame, tmp_path: Path) -> None:
    result = compare_frames(reference, make_frame(50, seed=7), make_config(), tmp_path, "few")

    assert result.status == "skipped"
    assert not result.drift_detected
    assert result.drift_share is None
    assert "current frame has 50 rows" in result.reason and "min_rows=100" in result.reason
    assert result.html_path is None and result.json_path is None
    assert list(tmp_path.iterdir()) == []


def test_all_null_column_is_skipped_and_named(reference: pd.DataFrame, tmp_path: Path) -> None:
    current = make_frame(2000, seed=8)
    current["y"] = np.nan

    result = compare_frames(reference, current, make_config(), tmp_path, "null")

    assert result.status == "skipped"
    assert "current frame" in result.reason and "'y' (0)" in result.reason


def test_missing_column_raises(reference: pd.DataFrame, tmp_path: Path) -> None:
    current = make_frame(2000, seed=9).drop(columns=["n"])

    with pytest.raises(ValueError, match=r"current frame lacks compared column\(s\) \['n'\]"):
        compare_frames(reference, current, make_config(), tmp_path, "missing")


def test_non_numeric_values_in_numeric_column_raise(reference: pd.DataFrame, tmp_path: Path) -> None:
    current = make_frame(2000, seed=10)
    current["x"] = current["x"].astype(str)

    with pytest.raises(ValueError, match="'x' is declared numeric"):
        compare_frames(reference, current, make_config(), tmp_path, "typed")


def test_unsafe_report_name_raises(reference: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not file-name safe"):
        compare_frames(reference, reference, make_config(), tmp_path, "../escape")


def test_reports_are_kept_on_disk(reference: pd.DataFrame, tmp_path: Path) -> None:
    report_dir = tmp_path / "reports" / "drift"

    result = compare_frames(reference, make_frame(2000, seed=11), make_config(), report_dir, "r1")

    assert isinstance(result, DriftResult)
    assert result.html_path == str(report_dir / "r1.html")
    assert result.json_path == str(report_dir / "r1.json")
    html = Path(result.html_path).read_text()
    assert len(html) > 50_000 and "<html" in html.lower()
    saved = json.loads(Path(result.json_path).read_text())
    assert any("DriftedColumnsCount" in m["config"]["type"] for m in saved["metrics"])


def test_reference_is_the_baseline(reference: pd.DataFrame, tmp_path: Path) -> None:
    # Evidently norms the Wasserstein distance by the reference's spread: with current and
    # reference swapped, x (std 1 vs 4) would score ~0.6 instead of ~2.4.
    current = make_frame(2000, seed=12)
    current["x"] = current["x"] * 4.0

    result = compare_frames(reference, current, make_config(column_threshold=1.0), tmp_path, "order")

    assert result.column_scores["x"] == pytest.approx(2.4, abs=0.2)
    assert result.drifted_columns == ["x"]


def _evidently_verdicts(json_path: str) -> dict[str, tuple[str, bool]]:
    """Per column: the method and drift verdict Evidently's own report recorded."""
    snapshot = json.loads(Path(json_path).read_text())
    verdicts = {
        t["metric_config"]["metric_id"]: t["status"] == "FAIL"
        for t in snapshot["tests"]
        if t["id"] == "drift"
    }
    return {
        m["config"]["column"]: (m["config"]["method"], verdicts[m["id"]])
        for m in snapshot["metrics"]
        if m["config"]["type"].endswith(":ValueDrift")
    }


def test_per_column_methods_and_thresholds_from_config_reach_the_report(
    reference: pd.DataFrame, tmp_path: Path
) -> None:
    current = make_frame(2000, seed=12, x_shift=0.15)
    config = make_config(methods={"x": "psi", "c": "chisquare", "n": "ks"}, thresholds={"y": 0.5})

    result = compare_frames(reference, current, config, tmp_path, "methods")

    assert result.column_methods == {"x": "psi", "n": "ks", "c": "chisquare", "y": "wasserstein"}
    recorded = _evidently_verdicts(result.json_path)
    assert {column: method for column, (method, _) in recorded.items()} == result.column_methods
    assert [c for c, (_, drifted) in recorded.items() if drifted] == result.drifted_columns


@pytest.mark.parametrize(
    ("drift", "message"),
    [
        ({"methods": {"c": "wasserstein"}}, "wasserstein compares numbers; 'c' is categorical"),
        ({"methods": {"x": "z"}}, "z compares categories; 'x' is numeric"),
        ({"methods": {"unused": "psi"}}, "drift.methods: ['unused'] are not compared columns"),
        ({"thresholds": {"nope": 0.2}}, "drift.thresholds: ['nope'] are not compared columns"),
        ({"methods": {"x": "hellinger"}}, "drift.methods.x"),
    ],
)
def test_bad_drift_methods_fail_when_the_config_loads(drift: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(**drift)


def test_a_saved_profile_gives_the_same_result_as_the_frame(reference: pd.DataFrame, tmp_path: Path) -> None:
    config, current = make_config(), make_frame(2000, seed=13, x_shift=0.5)
    profile = reference_profile(reference, config)

    loaded = ReferenceProfile.load(profile.save(tmp_path / "profile.npz"))
    from_profile = compare_to_reference(loaded, current, config, tmp_path, "profile")
    from_frame = compare_frames(reference, current, config, tmp_path, "frame")

    assert loaded.rows == len(reference)
    assert from_profile.column_scores == from_frame.column_scores
    assert from_profile.drifted_columns == from_frame.drifted_columns == ["x"]


def test_over_report_rows_the_report_is_a_sample_and_the_verdicts_use_every_row(tmp_path: Path) -> None:
    config = make_config(report_rows=1000)
    reference, current = make_frame(5000, seed=14), make_frame(4000, seed=15, x_shift=0.3)

    result = compare_frames(reference, current, config, tmp_path, "sampled")
    full = compare_frames(reference, current, make_config(), tmp_path, "full")

    assert result.column_scores == full.column_scores and result.drifted_columns == ["x"]
    # The kept report is Evidently's picture of 1000 sampled rows a side: its own numbers.
    snapshot = json.loads(Path(result.json_path).read_text())
    drawn = {
        m["config"]["column"]: m["value"]
        for m in snapshot["metrics"]
        if m["config"]["type"].endswith(":ValueDrift")
    }
    assert drawn.keys() == result.column_scores.keys() and drawn["x"] != result.column_scores["x"]


def test_prediction_drift_is_tested_reported_and_kept_in_the_workspace(
    reference: pd.DataFrame, tmp_path: Path
) -> None:
    from evidently.ui.workspace import Workspace

    config = make_config()
    rng = np.random.default_rng(21)
    trained_scores = rng.normal(10.0, 1.0, len(reference))
    profile = reference_profile(reference, config, trained_scores)
    loaded = ReferenceProfile.load(profile.save(tmp_path / "profile.npz"))
    assert loaded.predictions is not None and loaded.predictions.rows == len(reference)

    current = make_frame(2000, seed=22)  # the data itself does not drift
    steady = compare_to_reference(loaded, current, config, tmp_path, "steady", rng.normal(10.0, 1.0, 2000))
    shifted = compare_to_reference(
        loaded, current, config, tmp_path, "shifted", rng.normal(11.5, 1.0, 2000), tmp_path / "workspace"
    )
    assert steady.status == "no_drift" and steady.prediction_drift is not None
    assert not steady.prediction_drift.drifted
    assert shifted.status == "drift" and shifted.drifted_columns == []
    assert shifted.prediction_drift is not None and shifted.prediction_drift.drifted
    assert shifted.prediction_drift.method == "wasserstein" and shifted.prediction_drift.score > 1.0
    assert "predictions drifted" in shifted.reason
    # The report carries the predictions' ValueDrift with the same score (checked against
    # Evidently inside, both sides being within report_rows).
    report = json.loads(Path(shifted.json_path or "").read_text())
    drift_of_scores = [m for m in report["metrics"] if m["config"].get("column") == "prediction"]
    assert drift_of_scores and drift_of_scores[0]["value"] == pytest.approx(shifted.prediction_drift.score)
    summary = shifted.summary()
    assert summary["prediction_drift"]["drifted"] is True
    assert summary["workspace_run"] == shifted.workspace_run
    workspace = Workspace.create(str(tmp_path / "workspace"))
    (project,) = workspace.search_project("synthetic")
    assert [str(run) for run in workspace.list_runs(project.id)] == [shifted.workspace_run]


def test_predictions_must_match_the_current_rows(reference: pd.DataFrame, tmp_path: Path) -> None:
    config = make_config()
    profile = reference_profile(reference, config, np.zeros(len(reference)))
    with pytest.raises(ValueError, match="10 predictions for 2000 current rows"):
        compare_to_reference(profile, make_frame(2000, seed=3), config, tmp_path, "short", np.zeros(10))


def test_drift_window_and_prediction_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="prediction_method: chisquare compares categories"):
        make_config(prediction_method="chisquare")
    with pytest.raises(ConfigError, match="window_partitions"):
        make_config(window_partitions=0)
