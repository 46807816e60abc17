"""Every model family through the real trainer: learning curves, validation scores, a loadable model."""

from __future__ import annotations

import importlib
import json
import sys
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from airloop.registry.tracking import tracking_client
from airloop.training.train import TrainRequest, train_candidate
from tests.conftest import config_variant

SMALL_PARAMS = {
    "xgboost": {"n_estimators": 30, "max_depth": 4},
    "sklearn_hgb": {"max_iter": 30},
    "sklearn_linear": {"C": 0.5},
    "torch_mlp": {"hidden_units": 32, "max_epochs": 8, "batch_size": 256, "learning_rate": 0.01},
}
# The metric each family's learning curve is logged under (one value per round or epoch).
CURVE_OF_FAMILY = {
    "xgboost": "validation_logloss",
    "sklearn_hgb": "validation_loss",
    "torch_mlp": "validation_loss",
}


def with_model(config, family: str, **params):
    # CPU even where a GPU is visible: these tests compare exact metrics and the CPU device.
    model = {"family": family, "params": {**SMALL_PARAMS[family], **params}}
    return config_variant(config, model=model, training={"gpu": False})


def request_for(config, training_window) -> TrainRequest:
    return TrainRequest(
        config.model_dump(mode="json"), training_window.train_path, training_window.eval_path, {}
    )


@pytest.mark.parametrize("family", list(SMALL_PARAMS))
def test_each_family_trains_logs_its_curve_and_serves_the_training_transforms(
    config, paths, training_window, family
) -> None:
    import mlflow

    family_config = with_model(config, family)
    result = train_candidate(request_for(family_config, training_window), paths)
    assert result.metrics["roc_auc"] > 0.6 and result.validation["roc_auc"] > 0.6
    assert result.device == "cpu"

    client = tracking_client(paths)
    run = client.get_run(result.run_id)
    assert run.data.params["family"] == family
    labelled = pd.read_parquet(training_window.train_path)["arr_delay"].notna().sum()
    held_out = int(run.data.params["validation_rows"])
    assert 0 < held_out < labelled and int(run.data.params["train_rows"]) + held_out == labelled
    assert run.data.tags["airloop.device"] == "cpu"
    assert {"val_roc_auc", "eval_roc_auc", "fit_seconds", "fit_rows_per_second"} <= set(run.data.metrics)
    if family in CURVE_OF_FAMILY:
        curve = client.get_metric_history(result.run_id, CURVE_OF_FAMILY[family])
        assert len(curve) >= 2 and [m.step for m in curve] == list(range(len(curve)))

    # The logged model takes raw rows (strings for categoricals, an unseen carrier included).
    mlflow.set_tracking_uri(paths.tracking_uri())
    model = mlflow.sklearn.load_model(result.model_uri)
    rows = pd.read_parquet(training_window.eval_path).head(20)
    from airloop.data.frames import feature_frame

    features = feature_frame(rows, family_config)
    features.loc[0, "carrier"] = "NEVER-SEEN"
    probabilities = model.predict_proba(features)[:, 1]
    assert probabilities.shape == (20,) and np.all((probabilities >= 0) & (probabilities <= 1))

    # The bento's service builds the model's input from JSON records itself where it can;
    # it must be the matrix the pipeline's own preprocessing builds, bit for bit.
    service = _service_module(family_config)
    records = json.loads(rows[list(family_config.dataset.features)].to_json(orient="records"))
    records[0]["carrier"], records[1]["dep_delay"] = "NEVER-SEEN", None
    # A null in a nullable numeric is scored by every family, not passed on as NaN.
    served = model.predict_proba(service.feature_frame(records, service.ARGS))[:, 1]
    assert np.all(np.isfinite(served))
    encode = service.compiled_inputs(model, service.ARGS)
    if family == "sklearn_linear":
        assert encode is None  # one-hot columns: served through the pipeline
    else:
        expected = model.steps[0][1].transform(service.feature_frame(records, service.ARGS))
        np.testing.assert_array_equal(encode(records), expected)
        np.testing.assert_array_equal(
            model.steps[-1][1].predict_proba(encode(records)),
            model.predict_proba(service.feature_frame(records, service.ARGS)),
        )


def _service_module(config) -> ModuleType:
    """The service module as a served bento imports it: with its template arguments set."""
    from bentoml._internal.utils.args import set_arguments

    set_arguments({
        "model_tag": "m:v1", "registered_name": "m", "registry_version": "1", "task": config.task,
        "features": {name: config.dataset.columns[name].type for name in config.dataset.features},
        "nullable": [n for n in config.dataset.features if config.dataset.columns[n].nullable],
    })  # fmt: skip
    sys.modules.pop("airloop.packaging.service", None)
    return importlib.import_module("airloop.packaging.service")


def test_torch_mlp_is_reproducible_on_cpu_and_stops_early(config, paths, training_window) -> None:
    family_config = with_model(config, "torch_mlp", max_epochs=40, patience=1, learning_rate=0.05)
    first = train_candidate(request_for(family_config, training_window), paths)
    again = train_candidate(request_for(family_config, training_window), paths)
    assert again.metrics == first.metrics and again.validation == first.validation

    client = tracking_client(paths)
    epochs = client.get_metric_history(first.run_id, "train_loss")
    assert 1 < len(epochs) < 40  # patience 1 with a large step size stops well before 40 epochs


def test_a_feature_missing_from_the_data_fails_before_training_naming_the_key(
    config, paths, training_window
) -> None:
    frame = pd.read_parquet(training_window.train_path).drop(columns=["distance"])
    broken = paths.home / "no-distance.parquet"
    frame.to_parquet(broken)
    request = TrainRequest(config.model_dump(mode="json"), str(broken), training_window.eval_path, {})
    with pytest.raises(ValueError, match=r"dataset.features: \['distance'\] not in .*no-distance.parquet"):
        train_candidate(request, paths)
    client = tracking_client(paths)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
