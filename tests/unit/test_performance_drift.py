"""Performance drift: the champion's metric on a newly labelled window vs at its evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airloop.config import AirloopConfig, parse_config
from airloop.monitoring.performance import check_performance


def classifier_config(max_metric_drop: float = 0.02) -> AirloopConfig:
    return parse_config(
        {
            "name": "perf",
            "task": "binary_classification",
            "dataset": {
                "columns": {"x": {"type": "float"}, "late": {"type": "int"}},
                "target": {"column": "late"},
                "features": ["x"],
            },
            "model": {"family": "sklearn_linear", "registered_name": "perf"},
            "gate": {"metric": "roc_auc"},
            "drift": {"min_rows": 100, "max_metric_drop": max_metric_drop},
        }
    )


def window(rows: int, noise: float, seed: int = 0, unlabelled: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    late = rng.integers(0, 2, rows)
    scores = np.clip(late * 0.6 + 0.2 + rng.normal(0, noise, rows), 0, 1)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "late": late.astype(float)})
    frame.loc[: unlabelled - 1, "late"] = np.nan  # labels not in yet for the first rows
    return frame, scores


def test_a_worse_window_is_a_drop_and_a_like_window_is_ok() -> None:
    config = classifier_config()
    good, good_scores = window(2000, noise=0.1)
    bad, bad_scores = window(2000, noise=0.6)
    ok = check_performance(config, 0.95, good, good_scores)
    dropped = check_performance(config, 0.95, bad, bad_scores)
    assert ok.status == "ok" and not ok.degraded and ok.drop is not None and ok.drop < 0.02
    assert dropped.degraded and dropped.drop is not None and dropped.drop > 0.1
    assert dropped.observed == pytest.approx(0.95 - dropped.drop)
    assert "more than drift.max_metric_drop=0.02" in dropped.reason and dropped.labelled_rows == 2000


def test_lower_is_better_metrics_count_a_rise_as_the_drop() -> None:
    config = parse_config(
        {
            "name": "reg",
            "task": "regression",
            "dataset": {
                "columns": {"x": {"type": "float"}, "y": {"type": "float"}},
                "target": {"column": "y"},
                "features": ["x"],
            },
            "model": {"family": "sklearn_linear", "registered_name": "reg"},
            "gate": {"metric": "rmse"},
            "drift": {"min_rows": 100, "max_metric_drop": 0.5},
        }
    )
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": 0.0, "y": rng.normal(0, 1, 500)})
    result = check_performance(config, 1.0, frame, frame["y"].to_numpy() + rng.normal(0, 2, 500))
    assert result.degraded and result.observed is not None and result.observed > 1.5
    assert result.drop == pytest.approx(result.observed - 1.0)


def test_only_labelled_rows_count_and_too_few_is_a_named_skip() -> None:
    config = classifier_config()
    frame, scores = window(600, noise=0.1, unlabelled=550)
    result = check_performance(config, 0.95, frame, scores)
    assert result.status == "skipped" and not result.degraded and result.labelled_rows == 50
    assert "50 labelled rows in the window, fewer than drift.min_rows=100" in result.reason


def test_one_class_and_no_recorded_metric_are_named_skips() -> None:
    config = classifier_config()
    frame, scores = window(500, noise=0.1)
    frame["late"] = 1.0
    one_class = check_performance(config, 0.95, frame, scores)
    assert one_class.status == "skipped" and "roc_auc cannot be computed" in one_class.reason
    unknown = check_performance(config, None, *window(500, noise=0.1))
    assert unknown.status == "skipped" and "no recorded eval_roc_auc" in unknown.reason
