"""Labels of any type become what a model learns, the same way in training, evaluation and
monitoring; configs whose label cannot fit the task fail at load, naming dataset.target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airloop.config import ConfigError, parse_config
from airloop.data.labels import (
    align_scores,
    class_key,
    labelled_rows,
    labels,
    predicted_classes,
    training_classes,
)


def _config(task: str, target: dict, label_type: str, metric: str = "accuracy") -> dict:
    return {
        "name": "t",
        "task": task,
        "dataset": {
            "target": target,
            "features": ["x"],
            "columns": {"x": {"type": "float"}, "y": {"type": label_type, "nullable": True}},
        },
        "model": {"family": "xgboost", "registered_name": "t"},
        "gate": {"metric": metric},
    }


@pytest.mark.parametrize(
    ("label_type", "positive", "values", "expected"),
    [
        ("str", "Yes", ["Yes", "No", "Yes"], [1, 0, 1]),
        ("bool", True, [True, False, True], [1, 0, 1]),
        ("int", 2, [2, 1, 2], [1, 0, 1]),
        # An int column read with nulls arrives as floats: 2.0 is still the positive class 2.
        ("int", 2, [2.0, 1.0, 2.0], [1, 0, 1]),
    ],
)
def test_a_binary_label_of_any_type_names_its_positive_class(label_type, positive, values, expected) -> None:
    config = parse_config(_config("binary_classification", {"column": "y", "positive": positive}, label_type))
    frame = pd.DataFrame({"x": 0.0, "y": values})
    assert labels(frame, config).tolist() == expected


def test_bool_and_0_1_labels_need_no_positive_class() -> None:
    as_bool = parse_config(_config("binary_classification", {"column": "y"}, "bool"))
    assert labels(pd.DataFrame({"y": [True, False]}), as_bool).tolist() == [1, 0]
    as_int = parse_config(_config("binary_classification", {"column": "y"}, "int"))
    assert labels(pd.DataFrame({"y": [0, 1]}), as_int).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("task", "target", "label_type", "metric", "message"),
    [
        ("binary_classification", {"column": "y"}, "str", "accuracy", "needs positive"),
        ("binary_classification", {"column": "y", "positive": True}, "str", "accuracy", "quote it"),
        (
            "binary_classification",
            {"column": "y", "positive": "a", "positive_above": 1},
            "str",
            "accuracy",
            "not both",
        ),
        (
            "binary_classification",
            {"column": "y", "positive": "a", "classes": ["b", "c"]},
            "str",
            "accuracy",
            "not one of classes",
        ),
        ("binary_classification", {"column": "y", "positive_above": 1}, "str", "accuracy", "numeric column"),
        ("regression", {"column": "y"}, "str", "rmse", "regression needs a numeric column"),
        ("regression", {"column": "y", "positive": 1}, "int", "rmse", "only apply to classification"),
        (
            "multiclass_classification",
            {"column": "y"},
            "float",
            "accuracy",
            "multiclass labels are int, str or bool",
        ),
        (
            "multiclass_classification",
            {"column": "y", "positive": "a"},
            "str",
            "accuracy",
            "each value is a class",
        ),
        ("multiclass_classification", {"column": "y"}, "str", "average_precision", "does not fit task"),
        ("multiclass_classification", {"column": "y", "classes": ["a"]}, "str", "accuracy", "at least two"),
        ("binary_classification", {"column": "y"}, "date", "accuracy", "is a date column"),
    ],
)
def test_a_label_that_cannot_fit_its_task_fails_at_config_check(
    task, target, label_type, metric, message
) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(_config(task, target, label_type, metric))
    assert message in str(error.value)
    assert "dataset.target" in str(error.value) or "gate.metric" in str(error.value)


def test_multiclass_classes_come_from_the_config_else_from_training() -> None:
    frame = pd.DataFrame({"x": 0.0, "y": ["b", "a", "c", "a", None]})
    undeclared = parse_config(_config("multiclass_classification", {"column": "y"}, "str"))
    assert training_classes(frame, undeclared) == ["a", "b", "c"]
    declared = parse_config(
        _config("multiclass_classification", {"column": "y", "classes": ["c", "b", "a", "d"]}, "str")
    )
    # The declared order, less a class the training rows never hold (no model could learn it).
    classes = training_classes(frame, declared)
    assert classes == ["c", "b", "a"]
    assert labels(labelled_rows(frame, declared, classes), declared, classes).tolist() == [1, 2, 0, 2]
    # A label outside the model's classes is a row the model cannot be scored on.
    assert len(labelled_rows(pd.DataFrame({"y": ["a", "z"]}), declared, classes)) == 1


def test_int_classes_keep_their_type_and_match_floats_read_with_nulls() -> None:
    config = parse_config(_config("multiclass_classification", {"column": "y"}, "int"))
    frame = pd.DataFrame({"y": [3.0, 1.0, np.nan, 2.0]})
    classes = training_classes(frame, config)
    assert classes == [1, 2, 3] and all(type(c) is int for c in classes)
    assert labels(labelled_rows(frame, config, classes), config, classes).tolist() == [2, 0, 1]
    assert class_key(3.0) == class_key(3) == "3"


def test_scores_realign_between_models_with_different_classes() -> None:
    scores = np.array([[0.7, 0.3], [0.2, 0.8]])
    aligned = align_scores(scores, ["a", "b"], ["b", "c", "a"])
    assert aligned.tolist() == [[0.3, 0.0, 0.7], [0.8, 0.0, 0.2]]
    assert predicted_classes(scores, [1, 2]).tolist() == ["1", "2"]
