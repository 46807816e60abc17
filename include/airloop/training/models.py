"""Model families: one scikit-learn Pipeline per family, preprocessing included.

The preprocessing lives inside the logged model, so serving applies exactly the
transforms training applied.
"""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from airloop.config import CLASSIFICATION_TASKS, AirloopConfig
from airloop.features.date_parts import DateParts
from airloop.training.devices import Device


def _codes() -> OrdinalEncoder:
    # Integer codes, not one-hot or native categoricals: trees split on them well and they
    # train several times faster; unseen categories map to -1 instead of failing.
    return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)


def date_parts(config: AirloopConfig) -> DateParts:
    """The step that turns each date feature into its declared parts."""
    columns = config.dataset.columns
    return DateParts(
        {
            name: (columns[name].format, columns[name].date_parts(), columns[name].since)
            for name in config.dataset.date_features()
        }
    )


def _with_dates(
    config: AirloopConfig, blocks: list[tuple[str, Any, list[str]]], scale: bool
) -> ColumnTransformer:
    dates = config.dataset.date_features()
    if dates:
        step: Any = date_parts(config)
        if scale:
            step = make_pipeline(
                step, SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler()
            )
        blocks.append(("dates", step, dates))
    return ColumnTransformer(blocks)


def _tree_preprocessing(config: AirloopConfig) -> ColumnTransformer:
    blocks = [
        ("categorical", _codes(), config.dataset.categorical_features()),
        ("numeric", "passthrough", config.dataset.numeric_features()),
    ]
    return _with_dates(config, blocks, scale=False)


def _network_preprocessing(config: AirloopConfig) -> ColumnTransformer:
    # Codes first: the MLP embeds its first n_categorical columns.
    blocks = [
        ("categorical", _codes(), config.dataset.categorical_features()),
        ("numeric", StandardScaler(), config.dataset.numeric_features()),
    ]
    return _with_dates(config, blocks, scale=True)


def _linear_preprocessing(config: AirloopConfig) -> ColumnTransformer:
    # A linear model takes no NaN: a missing number becomes the training mean (0 once
    # scaled), as the MLP does. Trees route missing values themselves.
    numeric = make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler())
    blocks = [
        ("categorical", OneHotEncoder(handle_unknown="ignore"), config.dataset.categorical_features()),
        ("numeric", numeric, config.dataset.numeric_features()),
    ]
    return _with_dates(config, blocks, scale=True)


def _estimator(config: AirloopConfig, device: Device) -> Any:
    params, seed = dict(config.model.params), config.model.seed
    classify = config.task in CLASSIFICATION_TASKS
    family = config.model.family
    if family == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor

        cls = XGBClassifier if classify else XGBRegressor
        return cls(tree_method="hist", device=device, random_state=seed, **params)
    if family == "torch_mlp":
        from airloop.training.torch_mlp import TabularMLPClassifier, TabularMLPRegressor

        mlp = TabularMLPClassifier if classify else TabularMLPRegressor
        n_categorical = len(config.dataset.categorical_features())
        return mlp(n_categorical=n_categorical, random_state=seed, device=device, **params)
    if family == "sklearn_hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        return cls(random_state=seed, **params)
    if family == "sklearn_linear":
        from sklearn.linear_model import LogisticRegression, Ridge

        if classify:
            return LogisticRegression(max_iter=1000, random_state=seed, **params)
        return Ridge(**params)
    raise ValueError(f"model.family {family!r} is not supported")


_PREPROCESSING_OF_FAMILY = {
    "xgboost": _tree_preprocessing,
    "sklearn_hgb": _tree_preprocessing,
    "sklearn_linear": _linear_preprocessing,
    "torch_mlp": _network_preprocessing,
}


def build_pipeline(config: AirloopConfig, device: Device = "cpu") -> Pipeline:
    """An unfitted pipeline: preprocessing for the family, then the estimator (on `device`)."""
    prep = _PREPROCESSING_OF_FAMILY[config.model.family](config)
    return Pipeline([("prep", prep), ("model", _estimator(config, device))])
