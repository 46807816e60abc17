"""Fit a family's pipeline while watching a validation set, and keep its learning curve.

The preprocessing is fitted on the training rows only, then the validation rows go
through it, so the estimator can be scored per boosting round or epoch (and stop early)
on exactly what it will see when it serves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from airloop.config import AirloopConfig

# A learning curve: metric name -> one value per boosting round or epoch.
History = dict[str, list[float]]


def fit_with_validation(
    pipeline: Pipeline,
    config: AirloopConfig,
    train: tuple[pd.DataFrame, np.ndarray],
    validation: tuple[pd.DataFrame, np.ndarray],
) -> History:
    """Fit `pipeline` in place on `train`; return per-iteration validation metrics."""
    prep, model = pipeline.named_steps["prep"], pipeline.named_steps["model"]
    train_X = prep.fit_transform(*train)
    valid_X, valid_y = prep.transform(validation[0]), validation[1]
    family = config.model.family
    if family == "xgboost":
        model.fit(train_X, train[1], eval_set=[(valid_X, valid_y)], verbose=False)
        rounds = model.evals_result()["validation_0"]
        return {f"validation_{name}": [float(v) for v in values] for name, values in rounds.items()}
    if family == "torch_mlp":
        model.fit(train_X, train[1], eval_set=(valid_X, valid_y))
        return {name: values for name, values in model.history_.items() if values}
    if family == "sklearn_hgb":
        return _fit_boosting_with_curve(model, train_X, train[1], valid_X, valid_y)
    model.fit(train_X, train[1])
    return {}


def _fit_boosting_with_curve(model: Any, train_X: Any, train_y: Any, valid_X: Any, valid_y: Any) -> History:
    """HistGradientBoosting scores a given validation set per iteration as it goes (cheaply,
    from its running predictions) only with early stopping on: turn it on, but with a
    patience it can never reach, so the configured number of iterations is kept."""
    model.set_params(early_stopping=True, scoring="loss", n_iter_no_change=model.max_iter + 1)
    model.fit(train_X, train_y, X_val=valid_X, y_val=valid_y)
    # validation_score_ is the negated loss, starting before the first iteration.
    return {"validation_loss": [-float(score) for score in model.validation_score_[1:]]}
