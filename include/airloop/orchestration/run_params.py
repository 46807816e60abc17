"""The settings a person may change for one DAG run: the Airflow trigger form's fields.

Each is a typed Airflow Param (the form shows its title and description) that lays one
config key over the config for that run only. The merged config is validated like a
config file, so a bad value fails the run's first task, before any compute, naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airloop.config import AirloopConfig, with_overrides

# {stage: {param: (config section, config key, Param keyword arguments)}}, for every stage
# (`airloop.orchestration.naming.STAGES`), so a stage missing here is an error, not an
# empty form.
RUN_PARAMS: dict[str, dict[str, tuple[str, str, dict[str, Any]]]] = {
    "ingest_data": {},
    "extract_sql": {},
    "rollback_champion": {},
    "score_batch": {},
    "join_labels": {},
    "watch_service": {},
    "roll_out": {
        "strategy": (
            "rollout",
            "strategy",
            {
                "default": None,
                "type": ["null", "string"],
                "enum": [None, "blue_green", "canary", "shadow"],
                "title": "Strategy",
                "description": "canary: in rollout.steps, each judged against the champion; shadow: a "
                "copy of the traffic first, judged on it; blue_green: all at once (rollout.strategy). "
                "Empty: the config's.",
            },
        ),
        "bake_minutes": (
            "rollout",
            "bake_minutes",
            {
                "default": None,
                "type": ["null", "number"],
                "exclusiveMinimum": 0,
                "title": "Bake time (minutes)",
                "description": "How long each step holds before it is judged (rollout.bake_minutes). "
                "Empty: the config's.",
            },
        ),
        "min_requests": (
            "rollout",
            "min_requests",
            {
                "default": None,
                "type": ["null", "integer"],
                "minimum": 1,
                "title": "Requests per step",
                "description": "Requests a step must carry before it is judged (rollout.min_requests). "
                "Empty: the config's.",
            },
        ),
        "min_labelled": (
            "rollout",
            "min_labelled",
            {
                "default": None,
                "type": ["null", "integer"],
                "minimum": 0,
                "title": "Labelled answers per step",
                "description": "Labelled answers a step must have before it is judged, with the "
                "gate's bootstrap on them (rollout.min_labelled; 0: none). Empty: the config's.",
            },
        ),
    },
    "continuous_training": {
        "model_params": (
            "model",
            "params",
            {
                "default": {},
                "type": "object",
                "title": "Model hyperparameters",
                "description": 'Laid over model.params for this run, e.g. {"max_depth": 8}. '
                "Empty: the config's.",
            },
        ),
        "window_partitions": (
            "split",
            "window_partitions",
            {
                "default": None,
                "type": ["null", "integer"],
                "minimum": 1,
                "title": "Training window (partitions)",
                "description": "How many of the newest validated partitions to train on "
                "(split.window_partitions). Empty: the config's.",
            },
        ),
        "min_improvement": (
            "gate",
            "min_improvement",
            {
                "default": None,
                "type": ["null", "number"],
                "title": "Gate margin",
                "description": "How much the candidate must beat the champion by on the gate's "
                "metric (gate.min_improvement). Empty: the config's.",
            },
        ),
    },
    "monitor_drift": {
        "window_partitions": (
            "drift",
            "window_partitions",
            {
                "default": None,
                "type": ["null", "integer"],
                "minimum": 1,
                "title": "Current window (partitions)",
                "description": "How many of the newest validated partitions to compare with the "
                "champion's training data (drift.window_partitions). Empty: the config's.",
            },
        ),
        "current": (
            "drift",
            "current",
            {
                "default": None,
                "type": ["null", "string"],
                "enum": [None, "ingested", "served", "both"],
                "title": "Current window",
                "description": "ingested: the newest validated partitions; served: what the champion "
                "was asked (the prediction log) and its live performance; both (drift.current). "
                "Empty: the config's.",
            },
        ),
    },
}


def _stage_params(stage: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    if stage not in RUN_PARAMS:
        raise KeyError(f"no run params for stage {stage!r}; the stages: {sorted(RUN_PARAMS)}")
    return RUN_PARAMS[stage]


def param_specs(stage: str) -> dict[str, dict[str, Any]]:
    """{param: Param keyword arguments} for a stage's trigger form."""
    return {name: dict(kwargs) for name, (_, _, kwargs) in _stage_params(stage).items()}


def run_overrides(stage: str, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The config keys a run's params set ({section: {key: value}}); empty ones set nothing."""
    overrides: dict[str, dict[str, Any]] = {}
    for name, (section, key, _) in _stage_params(stage).items():
        value = params.get(name)
        if value is not None and value != {}:
            overrides.setdefault(section, {})[key] = value
    return overrides


def config_for_run(config: AirloopConfig, stage: str, params: Mapping[str, Any]) -> AirloopConfig:
    """The config with the run's params laid over it; ConfigError names a bad one."""
    overrides = run_overrides(stage, params)
    where = f"{config.name} {stage} run params {overrides}"
    return with_overrides(config, overrides, where) if overrides else config
