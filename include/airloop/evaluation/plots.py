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


def multiclass_figures(y_true: np.ndarray, scores: np.ndarray, classes: list[str]) -> dict[str, Figure]:
    """The confusion matrix over the likeliest class, and one precision-recall curve per class."""
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay

    size = max(4, 0.5 * len(classes) + 2)
    figure = Figure(figsize=(size + 1, size))
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        np.argmax(scores, axis=1),
        labels=list(range(len(classes))),
        display_labels=classes,
        ax=figure.subplots(),
        colorbar=False,
        xticks_rotation="vertical",
    )
    figure.tight_layout()
    curves = Figure(figsize=(6, 4.5))
    axes = curves.subplots()
    for code, name in enumerate(classes):
        if (y_true == code).any():
            PrecisionRecallDisplay.from_predictions(y_true == code, scores[:, code], ax=axes, name=name)
    axes.set(title="precision-recall per class (one vs rest)")
    return {"confusion_matrix": figure, "precision_recall_per_class": curves}


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
