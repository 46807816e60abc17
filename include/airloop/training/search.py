"""Hyperparameter search: the trials a config asks for, and the best of their results.

Each trial is the configured `model.params` with one point of `model.search.space` laid
over it. Trials are MLflow child runs of one parent run per continuous-training run; the
best is the one with the best gate metric on the validation rows (never the evaluation
set, which is kept for the gate).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from airloop.config import AirloopConfig, ModelConfig
from airloop.evaluation.metrics import HIGHER_IS_BETTER
from airloop.paths import StatePaths
from airloop.registry.tracking import tracking_client, use_tracking
from airloop.training.train import TrainResult

SEARCH_TAG = "airloop.search"


def trial_params(model: ModelConfig) -> list[dict[str, Any]]:
    """Hyperparameters per trial: just `params` without a search, else the (sampled) grid."""
    if model.search is None:
        return [dict(model.params)]
    keys = sorted(model.search.space)
    points = itertools.product(*(model.search.space[k] for k in keys))
    grid = [dict(zip(keys, point, strict=True)) for point in points]
    if len(grid) > model.search.max_trials:
        grid = random.Random(model.seed).sample(grid, model.search.max_trials)
    return [{**model.params, **point} for point in grid]


def best_trial(results: list[TrainResult], metric: str) -> TrainResult:
    """The result with the best validation `metric`; ties go to the lower trial number."""
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    return max(sorted(results, key=lambda r: r.trial), key=lambda r: sign * r.validation[metric])


def parent_run(config: AirloopConfig, paths: StatePaths, run_key: str, trials: list[dict[str, Any]]) -> str:
    """The MLflow run the trials of `run_key` are children of (the same one on a retry)."""
    use_tracking(config, paths)
    client = tracking_client(paths)
    experiment = client.get_experiment_by_name(config.name)
    assert experiment is not None  # use_tracking created it
    found = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{SEARCH_TAG}` = 'parent' and tags.`airloop.airflow_run_id` = '{run_key}'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment.experiment_id,
        run_name=f"search {run_key}",
        tags={SEARCH_TAG: "parent", "airloop.airflow_run_id": run_key},
    )
    client.log_dict(run.info.run_id, {"trials": trials}, "search/trials.json")
    return run.info.run_id


def record_best(paths: StatePaths, parent_run_id: str, best: TrainResult, metric: str, trials: int) -> None:
    """Close the parent run with what won: its trial, run, params and validation score."""
    client = tracking_client(paths)
    client.set_tag(best.run_id, SEARCH_TAG, "best")
    client.log_param(parent_run_id, "trials", trials)
    client.log_metric(parent_run_id, f"best_val_{metric}", best.validation[metric])
    client.set_tag(parent_run_id, "airloop.best_trial", str(best.trial))
    client.set_tag(parent_run_id, "airloop.best_run_id", best.run_id)
    client.log_dict(parent_run_id, best.params, "search/best_params.json")
    client.set_terminated(parent_run_id)
