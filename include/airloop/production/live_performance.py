"""Live performance: how right the served model was, from the labels joined to its answers.

Scored on what the model answered at the time (the logged score or prediction), never on a
re-scoring, so it is what callers got. Per model version per day for the history, and for
the champion version as a whole against what it scored at evaluation: a fall of more than
`drift.max_metric_drop` is the performance drop continuous training answers.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from airloop.config import AirloopConfig, Label
from airloop.data.labels import class_key, labelled_mask, labels
from airloop.evaluation.metrics import metric_value
from airloop.monitoring.performance import PerformanceCheck, check_performance


def logged_scores(frame: pd.DataFrame, config: AirloopConfig, classes: list[Label] | None) -> np.ndarray:
    """The answers in the log as `model_scores` gives them: P(1), the value, or a matrix of
    class probabilities in `classes`' order."""
    if config.task == "binary_classification":
        return frame["score"].to_numpy(dtype="float64")
    if config.task == "regression":
        return frame["prediction"].to_numpy(dtype="float64")
    keys = [class_key(c) for c in classes or []]
    rows = [json.loads(p) if isinstance(p, str) else {} for p in frame["probabilities"]]
    return np.array([[row.get(k, 0.0) for k in keys] for row in rows], dtype="float64").reshape(-1, len(keys))


def champion_performance(
    config: AirloopConfig,
    labelled: pd.DataFrame,
    version: str,
    expected: float | None,
    classes: list[Label] | None = None,
) -> PerformanceCheck:
    """The champion version's gate metric on its labelled answers vs `expected` (its eval
    score); a skip with the reason when there are too few labels or none of this version."""
    rows = labelled[labelled["model_version"].astype(str) == str(version)] if len(labelled) else labelled
    if not len(rows):
        empty = pd.DataFrame({config.dataset.target.column: pd.Series(dtype=object)})
        return check_performance(config, expected, empty, np.empty(0), classes)
    return check_performance(config, expected, rows, logged_scores(rows, config, classes), classes)


def labelled_metric(
    config: AirloopConfig, rows: pd.DataFrame, classes: list[Label] | None = None
) -> tuple[int, float | None]:
    """(labelled rows, the gate metric on the answers they got); None where it cannot be
    computed (no labels, or one class only)."""
    known = labelled_mask(rows, config, classes)
    if not known.any():
        return 0, None
    truth = labels(rows[known], config, classes).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(
                metric_value(config.gate.metric, truth, logged_scores(rows, config, classes)[known])
            )
        except ValueError:
            return int(known.sum()), None
    return int(known.sum()), value if np.isfinite(value) else None


def version_classes(
    config: AirloopConfig, versions: Iterable[str], known: dict[str, list[Label] | None] | None = None
) -> dict[str, list[Label] | None]:
    """Each version's classes as `daily_performance` takes them: for a multiclass model read
    from each registered version's logged model (MLflow must point at the model's store),
    those in `known` as given; None for other tasks, and for a version no longer registered."""
    from mlflow.exceptions import MlflowException

    from airloop.data.labels import logged_classes

    found: dict[str, list[Label] | None] = {str(v): c for v, c in (known or {}).items()}
    for version in map(str, versions):
        if version in found or config.task != "multiclass_classification":
            found.setdefault(version, None)
            continue
        try:
            found[version] = logged_classes(f"models:/{config.model.registered_name}/{version}")
        except MlflowException:
            found[version] = None  # deleted since it answered: its metric is None, not an error
    return found


def daily_performance(
    config: AirloopConfig, labelled: pd.DataFrame, classes_of: dict[str, list[Label] | None]
) -> list[dict[str, Any]]:
    """[{model_version, day, rows, <gate metric>}] per version per day answered, oldest first.

    `classes_of` gives each version's classes (multiclass; `version_classes`); a day whose
    metric cannot be computed (one class only, or a multiclass version without classes)
    has the metric None.
    """
    if not len(labelled):
        return []
    days = pd.to_datetime(labelled["served_at"], utc=True).dt.strftime("%Y-%m-%d")
    out = []
    for (version, day), rows in labelled.groupby([labelled["model_version"].astype(str), days], sort=True):
        count, value = labelled_metric(config, rows, classes_of.get(str(version)))
        out.append({"model_version": str(version), "day": day, "rows": count, config.gate.metric: value})
    return out
