"""Training through the local runner, and the registry's versions and aliases (real MLflow)."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from airloop.registry.tracking import tracking_client
from airloop.registry.versions import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    current_champion,
    promote_champion,
    register_candidate,
)
from airloop.training.runners import run_local
from airloop.training.train import TrainRequest, train_candidate


def test_local_runner_trains_in_a_process_and_is_reproducible(config, paths, training_window) -> None:
    import mlflow

    request = TrainRequest(
        config.model_dump(mode="json"),
        training_window.train_path,
        training_window.eval_path,
        {"airloop.data_hash": training_window.train_hash},
    )
    request.write(paths.runs / "first" / "request.json")
    in_process = run_local(paths.runs / "first" / "request.json", paths.runs / "first" / "result.json")
    assert (paths.runs / "first" / "result.json").exists()
    assert in_process.metrics["roc_auc"] > 0.6

    again = train_candidate(request, paths)
    assert again.metrics == in_process.metrics  # same data, config and seed
    assert again.run_id != in_process.run_id

    client = tracking_client(paths)
    run = client.get_run(in_process.run_id)
    assert run.data.tags["airloop.data_hash"] == training_window.train_hash
    assert run.data.params["family"] == "xgboost"
    assert len(run.data.tags["airloop.git_commit"]) == 40 and "cores" in run.data.tags["airloop.hardware"]
    plots = {a.path for a in client.list_artifacts(in_process.run_id, "plots")}
    assert plots == {
        f"plots/{n}.png" for n in ("roc_curve", "precision_recall", "confusion_matrix", "feature_importance")
    }

    mlflow.set_tracking_uri(paths.tracking_uri())
    packages = mlflow.artifacts.load_dict(f"runs:/{in_process.run_id}/environment/packages.json")
    assert packages["xgboost"] == version("xgboost")
    model = mlflow.sklearn.load_model(in_process.model_uri)
    assert hasattr(model, "predict_proba")


def test_runner_failure_carries_the_process_output(config, paths) -> None:
    request = TrainRequest(
        config.model_dump(mode="json"), "/nonexistent/train.parquet", "/nonexistent/eval.parquet", {}
    )
    with pytest.raises(RuntimeError, match="nonexistent"):
        request.write(paths.runs / "broken" / "request.json")
        run_local(paths.runs / "broken" / "request.json", paths.runs / "broken" / "result.json")


def test_registration_is_idempotent_and_promotion_keeps_the_previous_champion(
    config, paths, training_window
) -> None:
    client = tracking_client(paths)
    name = config.model.registered_name
    request = TrainRequest(
        config.model_dump(mode="json"), training_window.train_path, training_window.eval_path, {}
    )
    first, second = (train_candidate(request, paths) for _ in range(2))
    tags = {"airloop.data_hash": training_window.train_hash, "airloop.airflow_run_id": "run-1"}

    v1 = register_candidate(client, name, first.run_id, first.model_uri, tags, paths.tracking_uri())
    assert (
        register_candidate(client, name, first.run_id, first.model_uri, tags, paths.tracking_uri()).version
        == v1.version
    )
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == v1.version
    assert client.get_model_version(name, v1.version).tags["airloop.airflow_run_id"] == "run-1"

    assert current_champion(client, name) is None
    promote_champion(client, name, v1.version, evaluated_against=None)
    v2 = register_candidate(client, name, second.run_id, second.model_uri, tags, paths.tracking_uri())
    promote_champion(client, name, v2.version, evaluated_against=v1.version)
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == v2.version
    assert str(client.get_model_version_by_alias(name, PREVIOUS_CHAMPION).version) == v1.version
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
