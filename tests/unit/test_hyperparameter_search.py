"""Hyperparameter search: the trials a config asks for, child runs in MLflow, the best on validation."""

from __future__ import annotations

import pytest

from airloop.config import ConfigError
from airloop.pipelines.continuous_training import plan_training, select_candidate, train_trial
from airloop.registry.tracking import tracking_client
from airloop.training.search import best_trial, trial_params
from airloop.training.train import TrainResult
from tests.conftest import config_variant

SPACE = {"max_depth": [2, 5], "learning_rate": [0.05, 0.3]}


def searching(config, space=SPACE, max_trials=8, **params):
    base = {"n_estimators": 20, **params}
    return config_variant(
        config, model={"params": base, "search": {"space": space, "max_trials": max_trials}}
    )


def test_trials_are_the_grid_over_the_configured_params(config) -> None:
    trials = trial_params(searching(config).model)
    assert len(trials) == 4
    assert {(t["max_depth"], t["learning_rate"]) for t in trials} == {
        (2, 0.05),
        (2, 0.3),
        (5, 0.05),
        (5, 0.3),
    }
    assert all(t["n_estimators"] == 20 for t in trials)
    assert trial_params(config.model) == [dict(config.model.params)]


def test_a_large_grid_is_sampled_the_same_way_every_time(config) -> None:
    space = {"max_depth": [2, 3, 4, 5, 6], "learning_rate": [0.05, 0.1, 0.2, 0.3]}
    sampled = trial_params(searching(config, space, max_trials=5).model)
    assert len(sampled) == 5 and len({tuple(sorted(t.items())) for t in sampled}) == 5
    assert sampled == trial_params(searching(config, space, max_trials=5).model)


@pytest.mark.parametrize(
    ("space", "named"),
    [
        ({"max_depth": [3, 0]}, "model: search.space.max_depth: Input should be greater than or equal to 1"),
        ({"max_depth": [3, "deep"]}, "model: search.space.max_depth: Input should be a valid integer"),
        ({"depth": [3]}, "model: search.space.depth: Extra inputs are not permitted"),
        ({"max_depth": []}, "model.search.space: ['max_depth'] list no values to try"),
    ],
)
def test_a_bad_search_space_fails_naming_the_key(config, space, named) -> None:
    with pytest.raises(ConfigError) as error:
        searching(config, space)
    assert named in str(error.value)


def _result(trial: int, auc: float) -> TrainResult:
    return TrainResult(
        f"run{trial}", "models:/x", {}, {"roc_auc": auc, "log_loss": 1 - auc}, 1.0, trial=trial
    )


def test_the_best_trial_follows_the_metric_direction_and_ties_go_to_the_first() -> None:
    results = [_result(0, 0.70), _result(1, 0.75), _result(2, 0.75)]
    assert best_trial(results, "roc_auc").trial == 1
    assert best_trial(results, "log_loss").trial == 1  # lower is better: 0.25
    assert best_trial(list(reversed(results)), "roc_auc").trial == 1


def test_each_trial_is_a_child_run_and_the_best_on_validation_is_the_candidate(
    config, paths, training_window
) -> None:
    searched = searching(config, {"max_depth": [1, 4]})
    window = training_window.summary()
    trials = plan_training(searched, paths, window, "manual__search")
    assert [t["trial"] for t in trials] == [0, 1]
    results = [TrainResult(**train_trial(t)) for t in trials]
    candidate = select_candidate(searched, paths, trials)

    best = max(results, key=lambda r: r.validation["roc_auc"])
    assert candidate["run_id"] == best.run_id and candidate["params"]["max_depth"] == best.params["max_depth"]
    client = tracking_client(paths)
    parents = {client.get_run(r.run_id).data.tags["mlflow.parentRunId"] for r in results}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.data.tags["airloop.best_run_id"] == best.run_id
    assert parent.data.metrics["best_val_roc_auc"] == best.validation["roc_auc"]
    assert parent.info.status == "FINISHED"
    # A retry of the planning task reuses the parent run instead of starting another search.
    again = plan_training(searched, paths, window, "manual__search")
    assert [t["request"] for t in again] == [t["request"] for t in trials]
    assert len(client.search_runs([parent.info.experiment_id], "tags.`airloop.search` = 'parent'")) == 1
