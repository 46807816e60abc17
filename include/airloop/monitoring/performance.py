"""Performance drift: the champion's metric on newly labelled rows vs on its own evaluation set.

Labels often arrive after the rows were scored (a flight's delay is known once it lands).
When the current window carries them, the champion's gate metric on those rows is compared
with what it scored on its evaluation set when it was trained; a fall of more than
`drift.max_metric_drop` is a performance drop. Too few labelled rows, a window with one
class only, or a champion with no recorded metric is a skip with its reason, never "ok".
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from airloop.config import AirloopConfig, Label
from airloop.data.labels import labelled_mask, labels
from airloop.evaluation.metrics import HIGHER_IS_BETTER, metric_value

PerformanceStatus = Literal["degraded", "ok", "skipped"]


@dataclass(frozen=True)
class PerformanceCheck:
    status: PerformanceStatus
    metric: str
    # The champion's metric on its own evaluation set, and on the labelled window.
    expected: float | None
    observed: float | None
    # How much worse the window is (positive: worse, whichever way the metric points).
    drop: float | None
    labelled_rows: int
    reason: str

    @property
    def degraded(self) -> bool:
        return self.status == "degraded"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_performance(
    config: AirloopConfig,
    expected: float | None,
    window: pd.DataFrame,
    scores: np.ndarray,
    classes: list[Label] | None = None,
) -> PerformanceCheck:
    """Score the window's labelled rows (`scores`: the champion's, one per window row;
    `classes`: a multiclass champion's, whose other labels it cannot be scored on)."""
    metric, limit = config.gate.metric, config.drift.max_metric_drop
    known = labelled_mask(window, config, classes)
    count = int(known.sum())

    def skipped(reason: str) -> PerformanceCheck:
        return PerformanceCheck("skipped", metric, expected, None, None, count, reason)

    if expected is None:
        return skipped(f"the champion has no recorded eval_{metric} to compare with")
    if count < config.drift.min_rows:
        minimum = config.drift.min_rows
        return skipped(f"{count} labelled rows in the window, fewer than drift.min_rows={minimum}")
    truth = labels(window[known], config, classes).to_numpy()
    with warnings.catch_warnings():
        # sklearn warns and answers NaN for, e.g., the ROC AUC of a window of one class.
        warnings.simplefilter("ignore")
        try:
            observed = metric_value(metric, truth, scores[known])
        except ValueError as why:
            return skipped(f"{metric} cannot be computed on the labelled window: {why}")
    if not np.isfinite(observed):
        present = np.unique(truth).tolist()
        return skipped(f"{metric} cannot be computed on the labelled window (classes present: {present})")
    drop = expected - observed if HIGHER_IS_BETTER[metric] else observed - expected
    degraded = drop > limit
    reason = (
        f"{metric} {observed:.4f} on {count} labelled rows vs {expected:.4f} at evaluation: "
        f"{'worse' if drop > 0 else 'better'} by {abs(drop):.4f}, "
        f"{'more' if degraded else 'no more'} than drift.max_metric_drop={limit}"
    )
    return PerformanceCheck("degraded" if degraded else "ok", metric, expected, observed, drop, count, reason)
