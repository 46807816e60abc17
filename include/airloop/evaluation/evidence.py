"""What the promotion gate decides on, measured on the frozen evaluation set.

Candidate and champion score the same rows. The improvement's uncertainty comes from a
paired bootstrap: the same resampled rows for both models, so row difficulty cancels out
and the interval is much narrower than two independent intervals would be.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from airloop.evaluation.metrics import HIGHER_IS_BETTER, metric_value


@dataclass(frozen=True)
class SegmentScore:
    """One value of a segment column (e.g. origin = JFK) and both models' metric on its rows."""

    column: str
    value: str
    rows: int
    candidate: float
    champion: float


@dataclass(frozen=True)
class Evidence:
    metric: str
    candidate: float
    baseline: float
    champion: float | None = None
    champion_version: str | None = None
    # Paired-bootstrap interval of the candidate's gain over the champion (positive = better).
    gain_interval: tuple[float, float] | None = None
    segments: list[SegmentScore] = field(default_factory=list)
    # 95th percentile of one-record prediction latency, and the logged model's size.
    latency_p95_ms: float | None = None
    model_mb: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def gain(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old`, positive when better, whatever the direction."""
    return new - old if HIGHER_IS_BETTER[metric] else old - new


def paired_bootstrap_gain(
    metric: str,
    y_true: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """The `confidence` interval of gain(candidate, champion) over resampled evaluation rows.

    A resample is drawn as a count per row (how often it was picked), i.e. a weight, so
    each resample's metric is a weighted metric over the original rows.
    """
    rng = np.random.default_rng(seed)
    rows = len(y_true)
    score_candidate, score_champion = (
        weighted_metric(metric, y_true, candidate),
        weighted_metric(metric, y_true, champion),
    )
    gains = []
    for _ in range(resamples):
        weights = np.bincount(rng.integers(0, rows, rows), minlength=rows).astype(float)
        gains.append(gain(metric, score_candidate(weights), score_champion(weights)))
    return _interval(gains, resamples, confidence)


def bootstrap_gain(
    metric: str,
    candidate: tuple[np.ndarray, np.ndarray],
    champion: tuple[np.ndarray, np.ndarray],
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """The `confidence` interval of gain(candidate, champion) when each model answered rows
    of its own (a canary's callers and the champion's): each side is resampled on its own.
    `candidate` and `champion` are (labels, scores)."""
    rng = np.random.default_rng(seed)
    sides = [(weighted_metric(metric, truth, scores), len(truth)) for truth, scores in (candidate, champion)]
    gains = []
    for _ in range(resamples):
        new, old = (
            score(np.bincount(rng.integers(0, rows, rows), minlength=rows).astype(float))
            for score, rows in sides
        )
        gains.append(gain(metric, new, old))
    return _interval(gains, resamples, confidence)


def _interval(gains: list[float], resamples: int, confidence: float) -> tuple[float, float]:
    finite = np.asarray(gains)[np.isfinite(gains)]
    # A resample with a single class has no ranking metric; too many such and no interval.
    if len(finite) < resamples / 2:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def weighted_metric(metric: str, y_true: np.ndarray, scores: np.ndarray) -> Any:
    """metric(weights) for fixed labels and scores; ROC AUC in O(rows) per call.

    A multiclass ROC AUC is the mean of its one-vs-rest AUCs, each computed the same way.
    """
    if metric != "roc_auc":
        return lambda weights: metric_value(metric, y_true, scores, sample_weight=weights)
    if scores.ndim == 1:
        return _ranked_auc(y_true, scores)
    per_class = [_ranked_auc(y_true == code, scores[:, code]) for code in range(scores.shape[1])]

    def macro_auc(weights: np.ndarray) -> float:
        aucs = [auc(weights) for auc in per_class]
        finite = [a for a in aucs if np.isfinite(a)]
        return float(np.mean(finite)) if finite else float("nan")

    return macro_auc


def _ranked_auc(y_true: np.ndarray, scores: np.ndarray) -> Any:
    # Sorted once: per call, AUC is the weighted share of (positive, negative) pairs ranked
    # in the right order, ties counting half.
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    group = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1
    positive = y_true[order].astype(float)

    def auc(weights: np.ndarray) -> float:
        w = weights[order]
        pos = np.bincount(group, weights=w * positive)
        neg = np.bincount(group, weights=w * (1 - positive))
        below = np.cumsum(neg) - neg
        pairs = pos.sum() * neg.sum()
        return float(np.sum(pos * (below + 0.5 * neg)) / pairs) if pairs else float("nan")

    return auc


def segment_scores(
    metric: str,
    frame: pd.DataFrame,
    y_true: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    columns: tuple[str, ...],
    min_rows: int,
) -> list[SegmentScore]:
    """Both models' metric per value of each segment column, for values with enough rows."""
    found = []
    for column in columns:
        values = frame[column].astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            if mask.sum() < min_rows or (metric == "roc_auc" and len(np.unique(y_true[mask])) < 2):
                continue
            found.append(
                SegmentScore(
                    column,
                    value,
                    int(mask.sum()),
                    metric_value(metric, y_true[mask], candidate[mask]),
                    metric_value(metric, y_true[mask], champion[mask]),
                )
            )
    return found


def latency_p95_ms(model: Any, features: pd.DataFrame, calls: int = 50, rounds: int = 3) -> float:
    """95th percentile of the time to predict one record, over `calls` different records.

    The best of `rounds` rounds: other processes on the machine (the scheduler, a trial
    training beside it) only ever add time, and the budget is about the model.
    """
    records = [features.iloc[[i % len(features)]] for i in range(calls)]
    model.predict(records[0])  # first call pays lazy initialisation, not the budget
    best = float("inf")
    for _ in range(rounds):
        timings = []
        for record in records:
            started = time.perf_counter()
            model.predict(record)
            timings.append((time.perf_counter() - started) * 1000)
        best = min(best, float(np.percentile(timings, 95)))
    return best
