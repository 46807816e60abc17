"""Scoring a model on labelled rows, and the naive baseline every model must beat.

Scores are what a model says of each row: the positive-class probability (binary), a row
of class probabilities in the model's class order (multiclass), or the predicted value
(regression). Labels are the codes of `airloop.data.labels`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from airloop.config import METRICS_OF_TASK, AirloopConfig, Label
from airloop.data.labels import labelled_rows, labels

HIGHER_IS_BETTER = {
    "roc_auc": True,
    "average_precision": True,
    "accuracy": True,
    "log_loss": False,
    "macro_f1": True,
    "balanced_accuracy": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}


def metric_value(
    metric: str, y_true: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None = None
) -> float:
    """One metric from true labels and model scores (see the module docstring)."""
    w = sample_weight
    if scores.ndim == 2:
        return _multiclass_value(metric, y_true, scores, w)
    if metric == "roc_auc":
        return float(skm.roc_auc_score(y_true, scores, sample_weight=w))
    if metric == "average_precision":
        return float(skm.average_precision_score(y_true, scores, sample_weight=w))
    if metric == "accuracy":
        return float(skm.accuracy_score(y_true, scores >= 0.5, sample_weight=w))
    if metric == "log_loss":
        clipped = np.clip(scores, 1e-15, 1 - 1e-15)
        return float(skm.log_loss(y_true, clipped, labels=[0, 1], sample_weight=w))
    if metric == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y_true, scores, sample_weight=w)))
    if metric == "mae":
        return float(skm.mean_absolute_error(y_true, scores, sample_weight=w))
    if metric == "r2":
        return float(skm.r2_score(y_true, scores, sample_weight=w))
    raise ValueError(f"unknown metric {metric!r}")


def _multiclass_value(metric: str, y_true: np.ndarray, scores: np.ndarray, w: np.ndarray | None) -> float:
    classes = list(range(scores.shape[1]))
    if metric == "log_loss":
        # float32 probabilities (XGBoost's) sum to 1 only within ~1e-7: renormalised, as
        # sklearn otherwise warns on every call.
        clipped = np.clip(scores, 1e-15, 1)
        clipped = clipped / clipped.sum(axis=1, keepdims=True)
        return float(skm.log_loss(y_true, clipped, labels=classes, sample_weight=w))
    if metric == "roc_auc":
        return macro_ovr_auc(y_true, scores, w)
    predicted = np.argmax(scores, axis=1)
    if metric == "accuracy":
        return float(skm.accuracy_score(y_true, predicted, sample_weight=w))
    if metric == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y_true, predicted, sample_weight=w))
    if metric == "macro_f1":
        # Over the classes the rows hold or the model answers, as sklearn's own macro F1.
        return float(skm.f1_score(y_true, predicted, average="macro", sample_weight=w, zero_division=0))
    raise ValueError(f"unknown metric {metric!r} for multiclass classification")


def macro_ovr_auc(y_true: np.ndarray, scores: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean one-vs-rest ROC AUC over the classes that have rows of both kinds (NaN if none)."""
    weights = np.ones(len(y_true)) if w is None else w
    aucs = []
    for code in range(scores.shape[1]):
        positive = y_true == code
        if weights[positive].sum() > 0 and weights[~positive].sum() > 0:
            aucs.append(skm.roc_auc_score(positive, scores[:, code], sample_weight=w))
    return float(np.mean(aucs)) if aucs else float("nan")


def task_metrics(config: AirloopConfig) -> list[str]:
    return list(METRICS_OF_TASK[config.task])


def model_scores(model: Any, features: pd.DataFrame, config: AirloopConfig) -> np.ndarray:
    """The model's scores on `features` (see the module docstring)."""
    if config.task == "binary_classification":
        return np.asarray(model.predict_proba(features))[:, 1]
    if config.task == "multiclass_classification":
        return np.asarray(model.predict_proba(features), dtype=float)
    return np.asarray(model.predict(features), dtype=float)


def score_all(y_true: np.ndarray, scores: np.ndarray, config: AirloopConfig) -> dict[str, float]:
    return {name: metric_value(name, y_true, scores) for name in task_metrics(config)}


def baseline_scores(train_labels: np.ndarray, rows: int, classes: int | None = None) -> np.ndarray:
    """The naive model's scores: the training class priors, or the training mean."""
    if classes is not None:
        priors = np.bincount(train_labels, minlength=classes) / max(len(train_labels), 1)
        return np.tile(priors, (rows, 1))
    return np.full(rows, float(np.mean(train_labels)))


def baseline_metrics(
    train: pd.DataFrame, frame: pd.DataFrame, config: AirloopConfig, classes: list[Label] | None = None
) -> dict[str, float]:
    """The naive model's metrics on `frame`'s labelled rows (see `baseline_scores`)."""
    train_labels = labels(labelled_rows(train, config, classes), config, classes).to_numpy()
    y_true = labels(labelled_rows(frame, config, classes), config, classes).to_numpy()
    multiclass = len(classes) if config.task == "multiclass_classification" and classes else None
    return score_all(y_true, baseline_scores(train_labels, len(y_true), multiclass), config)
