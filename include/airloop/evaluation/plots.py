"""The figures people look at for a trained model, drawn on the evaluation set."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure


def classification_figures(y_true: np.ndarray, scores: np.ndarray) -> dict[str, Figure]:
    """ROC and precision-recall curves and the confusion matrix at a 0.5 threshold."""
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    figures = {}
    for name, display in (("roc_curve", RocCurveDisplay), ("precision_recall", PrecisionRecallDisplay)):
        figure = Figure(figsize=(5, 4))
        display.from_predictions(y_true, scores, ax=figure.subplots())
        figures[name] = figure
    figure = Figure(figsize=(5, 4))
    ConfusionMatrixDisplay.from_predictions(
        y_true, (scores >= 0.5).astype(int), ax=figure.subplots(), colorbar=False
    )
    figures["confusion_matrix"] = figure
    return figures


def regression_figures(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, Figure]:
    """Residuals against predictions."""
    figure = Figure(figsize=(5, 4))
    axes = figure.subplots()
    axes.scatter(predicted, y_true - predicted, s=2, alpha=0.3)
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set(xlabel="predicted", ylabel="residual (true - predicted)")
    return {"residuals": figure}


def feature_importance_figure(pipeline: Any, features: list[str]) -> Figure | None:
    """The estimator's own importances over the model's input columns, when it has them."""
    importances = getattr(pipeline[-1], "feature_importances_", None)
    if importances is None:
        return None
    names = list(pipeline[:-1].get_feature_names_out(features))
    order = np.argsort(importances)
    figure = Figure(figsize=(5, max(3, 0.3 * len(names))))
    axes = figure.subplots()
    axes.barh([names[i] for i in order], np.asarray(importances)[order])
    axes.set(xlabel="importance")
    figure.tight_layout()
    return figure
