"""Multiclass metrics, the class-prior baseline and the paired bootstrap, checked against
scikit-learn's own definitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from airloop.evaluation.evidence import paired_bootstrap_gain, segment_scores, weighted_metric
from airloop.evaluation.metrics import baseline_scores, metric_value


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    good = rng.dirichlet([1, 1, 1, 1], 2000)
    good[np.arange(2000), y] += 1.0
    good /= good.sum(axis=1, keepdims=True)
    worse = rng.dirichlet([1, 1, 1, 1], 2000)
    return y, good, worse


def test_each_metric_is_sklearns(scored) -> None:
    y, scores, _ = scored
    predicted = scores.argmax(axis=1)
    assert metric_value("log_loss", y, scores) == pytest.approx(skm.log_loss(y, scores))
    assert metric_value("accuracy", y, scores) == pytest.approx(skm.accuracy_score(y, predicted))
    assert metric_value("macro_f1", y, scores) == pytest.approx(skm.f1_score(y, predicted, average="macro"))
    assert metric_value("balanced_accuracy", y, scores) == pytest.approx(
        skm.balanced_accuracy_score(y, predicted)
    )
    assert metric_value("roc_auc", y, scores) == pytest.approx(
        skm.roc_auc_score(y, scores, multi_class="ovr", average="macro")
    )


def test_the_fast_weighted_auc_is_the_weighted_macro_auc(scored) -> None:
    y, scores, _ = scored
    weights = np.random.default_rng(1).integers(0, 3, len(y)).astype(float)
    assert weighted_metric("roc_auc", y, scores)(weights) == pytest.approx(
        metric_value("roc_auc", y, scores, sample_weight=weights)
    )


def test_the_baseline_is_the_training_class_priors() -> None:
    priors = baseline_scores(np.array([0, 0, 1, 2]), rows=3, classes=4)
    assert priors.shape == (3, 4) and priors[0].tolist() == [0.5, 0.25, 0.25, 0.0]


@pytest.mark.parametrize("metric", ["log_loss", "accuracy", "macro_f1", "balanced_accuracy", "roc_auc"])
def test_the_paired_bootstrap_finds_the_better_multiclass_model(scored, metric) -> None:
    y, good, worse = scored
    low, high = paired_bootstrap_gain(metric, y, good, worse, 200, 0.95, seed=0)
    assert 0 < low <= high
    low, high = paired_bootstrap_gain(metric, y, worse, good, 200, 0.95, seed=0)
    assert low <= high < 0


def test_segments_score_multiclass_rows(scored) -> None:
    import pandas as pd

    y, good, worse = scored
    frame = pd.DataFrame({"region": np.where(np.arange(len(y)) % 2, "north", "south")})
    found = segment_scores("macro_f1", frame, y, good, worse, ("region",), min_rows=100)
    assert [s.value for s in found] == ["north", "south"]
    assert all(s.candidate > s.champion for s in found)
