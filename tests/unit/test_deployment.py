"""One deployment, many models: which configs are models, overlays, broken configs, and how
a command picks its model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from airloop.cli import select
from airloop.config import ConfigError
from airloop.deployment import load_deployment, model_config_files
from airloop.ops.stack import Stack
from airloop.paths import PROJECT_ROOT, StatePaths
from tests.conftest import FLIGHTS_CONFIG

WEATHER_CONFIG = PROJECT_ROOT / "configs" / "weather.yaml"


def _copy(folder: Path, name: str, **changes) -> Path:
    raw = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    raw["name"], raw["model"]["registered_name"] = name, f"{name}-model"
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_configs_folder_holds_the_models_and_overlays_live_apart() -> None:
    files = [p.name for p in model_config_files("")]
    assert files == ["flights.yaml", "weather.yaml"]
    assert (PROJECT_ROOT / "configs" / "overlays" / "production.yaml").is_file()


def test_a_new_yaml_file_is_a_new_model(tmp_path) -> None:
    _copy(tmp_path, "churn")
    _copy(tmp_path, "fraud")
    deployment = load_deployment(str(tmp_path), "")
    assert deployment.names() == ["churn", "fraud"] and deployment.broken == {}
    assert deployment.files["churn"] == (tmp_path / "churn.yaml").resolve()


def test_configs_can_be_named_file_by_file_and_folder_by_folder(tmp_path) -> None:
    (tmp_path / "more").mkdir()
    _copy(tmp_path / "more", "churn")
    spec = os.pathsep.join([str(FLIGHTS_CONFIG), str(tmp_path / "more")])
    assert load_deployment(spec, "").names() == ["churn", "flights"]


def test_overlays_are_laid_over_every_model(tmp_path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"training": {"max_parallel_trials": 1}}))
    spec = os.pathsep.join([str(FLIGHTS_CONFIG), str(WEATHER_CONFIG)])
    deployment = load_deployment(spec, str(overlay))
    assert {c.training.max_parallel_trials for c in deployment.models.values()} == {1}


def test_a_broken_config_breaks_only_its_model_naming_the_key(tmp_path) -> None:
    _copy(tmp_path, "good")
    _copy(tmp_path, "bad", gate={"metric": "rmse"})
    deployment = load_deployment(str(tmp_path), "")
    assert deployment.names() == ["good"]
    [(path, message)] = deployment.broken.items()
    assert path.name == "bad.yaml" and "gate.metric" in message
    with pytest.raises(ConfigError, match="gate.metric"):
        deployment.model("bad")


def test_two_configs_may_not_share_a_registered_model(tmp_path) -> None:
    _copy(tmp_path, "aaa")
    clash = _copy(tmp_path, "bbb")
    raw = yaml.safe_load(clash.read_text())
    raw["model"]["registered_name"] = "aaa-model"
    clash.write_text(yaml.safe_dump(raw))
    deployment = load_deployment(str(tmp_path), "")
    assert deployment.names() == ["aaa"]
    assert "model.registered_name: 'aaa-model' is already model 'aaa'" in deployment.broken[clash.resolve()]


def test_a_command_about_one_model_needs_it_named_when_there_are_several(monkeypatch) -> None:
    monkeypatch.delenv("AIRLOOP_CONFIGS", raising=False)
    with pytest.raises(ConfigError, match=r"models \['flights', 'weather'\].*--model"):
        select(None, None).one()
    assert select("weather", None).one().name == "weather"
    with pytest.raises(ConfigError, match="no model 'churn'.*flights"):
        select("churn", None)


def test_the_config_given_reaches_the_stack(tmp_path, monkeypatch) -> None:
    """`airloop --config X stack up` runs Airflow on exactly X, not on the configs folder."""
    monkeypatch.delenv("AIRLOOP_CONFIGS", raising=False)
    churn = _copy(tmp_path, "churn")
    selection = select(None, str(churn))
    stack = Stack(StatePaths(tmp_path / "state"), configs=selection.configs_spec())
    assert stack.env()["AIRLOOP_CONFIGS"] == str(churn.resolve())
    assert stack.models() == ["churn"]
    assert "AIRLOOP_CONFIGS" not in Stack(StatePaths(tmp_path / "other")).env()
    assert Stack(StatePaths(tmp_path / "other")).models() == ["flights", "weather"]


def test_a_stage_names_the_dag_of_the_chosen_model() -> None:
    assert select("weather", None).dag_id("continuous_training") == "weather__continuous_training"
    assert select("weather", None).dag_id("flights__monitor_drift") == "flights__monitor_drift"


def test_each_models_own_files_lie_in_its_subtree_and_the_stores_are_shared(tmp_path) -> None:
    root = StatePaths(tmp_path)
    flights, weather = root.for_model("flights"), root.for_model("weather")
    for owned in ("landing", "data", "dvc_remote", "quarantine", "reports", "runs", "promotion_lock"):
        assert getattr(flights, owned).is_relative_to(tmp_path / "models" / "flights"), owned
        assert getattr(flights, owned) != getattr(weather, owned)
    for shared in ("mlflow_db", "mlflow_artifacts", "bentoml_home", "evidently_workspace", "airflow_home"):
        assert getattr(flights, shared) == getattr(weather, shared) == getattr(root, shared)
