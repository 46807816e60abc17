"""Labels of any type as the numbers a model learns: 0/1, class codes, or values.

Binary classification: 1 where the label is `target.positive` ("Yes", true, 1) or above
`target.positive_above`; an int or bool column with neither is 0/1 (true) as it stands.
Multiclass: a class's code is its position in the model's classes, which are the
declared `target.classes` seen in training (else the training window's values, sorted).
The classes travel inside the logged model (MLflow model metadata `CLASSES_METADATA`),
so serving answers class names and a later evaluation reads them back.
Labels compare by key: the text of the value, with an integral float (an int column read
with nulls) written as the int.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from airloop.config import AirloopConfig, Label

# Key of the MLflow model metadata that lists a classifier's classes in code order.
CLASSES_METADATA = "airloop_classes"


def class_key(value: Any) -> str:
    """The comparable text of one label value: 3, 3.0 and "3" share a key; True is "True"."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.bool_):
        return str(bool(value))
    return str(value)


def label_keys(values: pd.Series) -> pd.Series:
    """`class_key` of every value (object), None where the label is missing."""
    return values.map(class_key, na_action="ignore").astype(object).where(values.notna(), None)


def _native(value: Any, kind: str) -> Label:
    if kind == "bool":
        return bool(value) if not isinstance(value, str) else value.strip().lower() == "true"
    if kind == "int":
        return int(value)
    return str(value)


def training_classes(frame: pd.DataFrame, config: AirloopConfig) -> list[Label]:
    """A multiclass model's classes: the declared ones present in `frame`, else its values sorted."""
    target = config.dataset.target
    present = set(label_keys(frame[target.column]).dropna())
    if target.classes is not None:
        return [c for c in target.classes if class_key(c) in present]
    kind = config.dataset.columns[target.column].type
    values = frame[target.column].dropna().drop_duplicates()
    by_key = {class_key(v): _native(v, kind) for v in values}
    return [by_key[k] for k in sorted(by_key, key=lambda k: (by_key[k], k))]


def labelled_mask(
    frame: pd.DataFrame, config: AirloopConfig, classes: list[Label] | None = None
) -> np.ndarray:
    """Where the label is known (and, given a multiclass model's classes, one of them)."""
    column = frame[config.dataset.target.column]
    known = column.notna()
    if classes is not None and config.task == "multiclass_classification":
        known &= label_keys(column).isin({class_key(c) for c in classes})
    return known.to_numpy()


def labelled_rows(
    frame: pd.DataFrame, config: AirloopConfig, classes: list[Label] | None = None
) -> pd.DataFrame:
    """The rows of `labelled_mask`."""
    return frame[labelled_mask(frame, config, classes)]


def labels(frame: pd.DataFrame, config: AirloopConfig, classes: list[Label] | None = None) -> pd.Series:
    """The target of labelled rows as the model learns it (see the module docstring)."""
    target = config.dataset.target
    values = frame[target.column]
    if config.task == "regression":
        return values.astype("float64")
    if config.task == "multiclass_classification":
        if classes is None:
            raise ValueError("multiclass labels need the model's classes (training_classes)")
        codes = {class_key(c): i for i, c in enumerate(classes)}
        return label_keys(values).map(codes).astype("int64")
    if target.positive_above is not None:
        return (values > target.positive_above).astype("int64")
    if target.positive is not None:
        return (label_keys(values) == class_key(target.positive)).astype("int64")
    if config.dataset.columns[target.column].type == "bool":
        return (label_keys(values) == "True").astype("int64")
    return values.astype("int64")


def model_classes(metadata: dict[str, Any] | None) -> list[Label] | None:
    """The classes an MLflow model's metadata lists, None for a model that has none."""
    return None if not metadata else metadata.get(CLASSES_METADATA)


def logged_classes(model_uri: str) -> list[Label] | None:
    """The classes an MLflow model (a models:/ or runs:/ URI, or a local folder) was logged with."""
    from mlflow.models import get_model_info

    return model_classes(get_model_info(model_uri).metadata)


def predicted_classes(scores: np.ndarray, classes: list[Label]) -> np.ndarray:
    """The likeliest class of each row of multiclass scores, as class keys (text)."""
    keys = np.asarray([class_key(c) for c in classes], dtype=object)
    return keys[np.argmax(scores, axis=1)] if len(scores) else np.empty(0, dtype=object)


def align_scores(scores: np.ndarray, model: list[Label], target: list[Label]) -> np.ndarray:
    """Multiclass scores in `model`'s class order re-laid in `target`'s (0 for a class the
    model does not know), so two models with different classes score the same labels."""
    position = {class_key(c): i for i, c in enumerate(model)}
    aligned = np.zeros((len(scores), len(target)))
    for j, c in enumerate(target):
        if class_key(c) in position:
            aligned[:, j] = scores[:, position[class_key(c)]]
    return aligned
