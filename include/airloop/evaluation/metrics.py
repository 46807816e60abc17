"""Scoring a model on labelled rows, and the naive baseline every model must beat."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from airloop.config import AirloopConfig
from airloop.data.frames import labelled_rows, labels

HIGHER_IS_BETTER = {
    "roc_auc": True,
    "average_precision": True,
    "accuracy": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
    "r2": True,
}


def metric_value(
    metric: str, y_true: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None = None
) -> float:
    """One metric from true labels and model scores (probabilities or predicted values)."""
    w = sample_weight
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


def task_metrics(config: AirloopConfig) -> list[str]:
    if config.task == "binary_classification":
        return ["roc_auc", "average_precision", "log_loss", "accuracy"]
    return ["rmse", "mae", "r2"]


def model_scores(model: Any, features: pd.DataFrame, config: AirloopConfig) -> np.ndarray:
    """Positive-class probability for classification, the predicted value for regression."""
    if config.task == "binary_classification":
        return np.asarray(model.predict_proba(features))[:, 1]
    return np.asarray(model.predict(features), dtype=float)


def score_all(y_true: np.ndarray, scores: np.ndarray, config: AirloopConfig) -> dict[str, float]:
    return {name: metric_value(name, y_true, scores) for name in task_metrics(config)}


def baseline_metrics(train: pd.DataFrame, frame: pd.DataFrame, config: AirloopConfig) -> dict[str, float]:
    """The naive model: always the training prior (classification) or mean (regression)."""
    constant = float(labels(labelled_rows(train, config), config).mean())
    y_true = labels(labelled_rows(frame, config), config).to_numpy()
    return score_all(y_true, np.full(len(y_true), constant), config)
