"""Config validation: bad configs fail before any compute, naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml

from airloop.cli import main
from airloop.config import ConfigError, load_config, parse_config
from tests.conftest import FLIGHTS_CONFIG

RAW = yaml.safe_load(FLIGHTS_CONFIG.read_text())


def broken(**changes) -> dict:
    data = copy.deepcopy(RAW)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return data


def test_flights_config_loads(config) -> None:
    assert config.dataset.categorical_features() == ["carrier", "origin", "dest"]
    assert "dep_delay" in config.dataset.numeric_features()
    assert config.drift_columns()[-1] == "arr_delay"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"bogus": 1}, "bogus"),
        ({"model__family": "catboost"}, "model.family"),
        ({"model__params": "deep"}, "model.params"),
        ({"model__params": {"max_depth": "deep"}}, "params.max_depth"),
        ({"model__params": {"n_estimators": 0}}, "params.n_estimators"),
        ({"model__params": {"learning_rate": 3}}, "params.learning_rate"),
        ({"model__params": {"colour": "red"}}, "params.colour"),
        ({"model__family": "sklearn_linear", "model__params": {"max_depth": 3}}, "params.max_depth"),
        ({"dataset__features": ["carrier", "nope"]}, "'nope'"),
        ({"dataset__target__column": "missing"}, "'missing'"),
        ({"gate__metric": "rmse"}, "gate.metric"),
        ({"drift__share_threshold": 2}, "drift.share_threshold"),
        ({"split__window_partitions": 0}, "split.window_partitions"),
        ({"dataset__columns__distance__type": "decimal"}, "dataset.columns.distance.type"),
        ({"model__family": "torch_mlp", "model__params": {"dropout": 1.5}}, "params.dropout"),
        ({"model__params": {"max_depth": 4}, "split__validation_fraction": 0.7}, "split.validation_fraction"),
        ({"training": {"runner": "kubernetes"}}, "training.runner"),
        ({"training": {"gpu": "maybe"}}, "training.gpu"),
        ({"training": {"max_parallel_trials": 0}}, "training.max_parallel_trials"),
        ({"training": {"docker": {"image": "x", "volumes": []}}}, "training.docker.volumes"),
        ({"retraining": {"schedule": "every tuesday"}}, "retraining.schedule"),
        ({"retraining": {"drift_cooldown_hours": -1}}, "retraining.drift_cooldown_hours"),
        ({"schedules": {"monitor_drift": "0 25 * * *"}}, "schedules.monitor_drift"),
        ({"drift__window_partitions": 0}, "drift.window_partitions"),
    ],
)
def test_bad_config_names_the_key(changes, named) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(broken(**changes), "test.yaml")
    assert named in str(error.value)
    assert "test.yaml" in str(error.value)


def test_missing_file_and_bad_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overlays_replace_keys_section_by_section(tmp_path) -> None:
    overlay = tmp_path / "production.yaml"
    overlay.write_text("training: {runner: docker}\nmodel: {params: {max_depth: 8}}\n")
    config = load_config(f"{FLIGHTS_CONFIG}:{overlay}")
    assert config.training.runner == "docker" and config.training.gpu == "auto"
    assert config.model.params == {**RAW["model"]["params"], "max_depth": 8}
    assert config.model.family == RAW["model"]["family"]

    overlay.write_text("training: {gpu: sometimes}\n")
    with pytest.raises(ConfigError, match=f"invalid config {FLIGHTS_CONFIG} \\+ {overlay}:\n  training.gpu"):
        load_config(f"{FLIGHTS_CONFIG}:{overlay}")
    overlay.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping of sections, not list"):
        load_config(f"{FLIGHTS_CONFIG}:{overlay}")


def test_cli_rejects_a_bad_config_before_doing_anything(tmp_path, paths, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken(model__family="catboost")))
    assert main(["--config", str(bad), "ingest"]) == 2
    assert "model.family" in capsys.readouterr().err
    assert not paths.home.exists()
