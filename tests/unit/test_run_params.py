"""A run's params (the trigger form) laid over the config, checked like a config file."""

from __future__ import annotations

import pytest

from airloop.config import ConfigError, load_config
from airloop.orchestration.run_params import config_for_run, run_overrides


def test_params_set_their_config_keys_for_one_run() -> None:
    config = load_config()
    params = {"model_params": {"max_depth": 3}, "window_partitions": 2, "min_improvement": 0.01}
    run = config_for_run(config, "continuous_training", params)
    assert run.model.params["max_depth"] == 3
    # The other hyperparameters stay as the config has them.
    assert {k: v for k, v in run.model.params.items() if k != "max_depth"} == {
        k: v for k, v in config.model.params.items() if k != "max_depth"
    }
    assert run.split.window_partitions == 2 and run.gate.min_improvement == 0.01
    assert config_for_run(config, "monitor_drift", {"window_partitions": 4}).drift.window_partitions == 4
    empty = {"model_params": {}, "window_partitions": None, "min_improvement": None}
    assert run_overrides("continuous_training", empty) == {}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"model_params": {"max_depth": 0}}, "model"),
        ({"model_params": {"no_such_knob": 1}}, "no_such_knob"),
        ({"window_partitions": 0}, "split.window_partitions"),
    ],
)
def test_a_bad_param_is_refused_naming_the_key(params: dict, named: str) -> None:
    with pytest.raises(ConfigError, match="continuous_training run params") as refused:
        config_for_run(load_config(), "continuous_training", params)
    assert named in str(refused.value)


def test_every_stage_has_a_trigger_form_entry_and_an_unknown_stage_is_an_error() -> None:
    from airloop.orchestration.naming import STAGES
    from airloop.orchestration.run_params import RUN_PARAMS, param_specs

    assert set(RUN_PARAMS) == set(STAGES)
    with pytest.raises(KeyError, match="no run params for stage 'continous_training'"):
        param_specs("continous_training")
