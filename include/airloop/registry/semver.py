"""Semantic versions of registered models: MAJOR.MINOR.PATCH beside MLflow's version number.

Relative to the previous registered version of the same model (the newest one with a
semantic version):

- MAJOR: the interface changed: the input schema (the features, by name, and their
  declared types) or the task (binary, multiclass, regression; the target and how its
  label is read). Callers may have to change.
- MINOR: the same interface, another model: different training data, config or
  hyperparameters.
- PATCH: the same inputs trained and registered again (same fingerprint of config,
  hyperparameters and training data): a rebuild.

The first version is 1.0.0. Each registered version keeps its semantic version and the two
fingerprints the next one is compared with as tags: `airloop.semver`,
`airloop.schema_sha256` and `airloop.training_sha256`. A fingerprint a previous version
lacks counts as changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airloop.config import AirloopConfig

if TYPE_CHECKING:
    from mlflow import MlflowClient

SEMVER_TAG = "airloop.semver"
# The input schema and the task: a change is a MAJOR bump.
SCHEMA_TAG = "airloop.schema_sha256"
# What trained the model (config, hyperparameters, training data): a change is a MINOR bump.
TRAINING_TAG = "airloop.training_sha256"
FIRST = "1.0.0"

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# Run params that say where a model trained, not what it was trained from.
_NOT_AN_INPUT = frozenset({"device"})


def _sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def schema_fingerprint(config: AirloopConfig) -> str:
    """SHA-256 of the model's interface as the config declares it: each feature's name and
    type (not their order: records are sent by name), the task, and the target's column,
    type and label rule (positive, positive_above, classes)."""
    dataset = config.dataset
    target = dataset.target
    return _sha256(
        {
            "features": {name: dataset.columns[name].type for name in dataset.features},
            "task": config.task,
            "target": {
                "column": target.column,
                "type": dataset.columns[target.column].type,
                "positive": target.positive,
                "positive_above": target.positive_above,
                "classes": list(target.classes) if target.classes is not None else None,
            },
        }
    )


def training_fingerprint(config_hash: str, data_hash: str, params: Mapping[str, Any]) -> str:
    """SHA-256 of what a model was trained from: the config's hash, the training data's
    hash and the run's params (the trial's hyperparameters, family, seed; where it ran is
    left out)."""
    inputs = {k: str(v) for k, v in params.items() if k not in _NOT_AN_INPUT}
    return _sha256({"config_hash": config_hash, "data_hash": data_hash, "params": inputs})


def next_semver(previous: Mapping[str, str] | None, current: Mapping[str, str]) -> str:
    """The semantic version of a new version whose tags hold `current`'s SCHEMA_TAG and
    TRAINING_TAG, given the tags of the previous version (None: there is none; FIRST).

    A previous SEMVER_TAG that is not MAJOR.MINOR.PATCH raises ValueError."""
    if previous is None:
        return FIRST
    found = _SEMVER.match(previous.get(SEMVER_TAG, ""))
    if found is None:
        raise ValueError(
            f"previous version's {SEMVER_TAG} is {previous.get(SEMVER_TAG)!r}, not MAJOR.MINOR.PATCH"
        )
    major, minor, patch = (int(part) for part in found.groups())
    if previous.get(SCHEMA_TAG) != current[SCHEMA_TAG]:
        return f"{major + 1}.0.0"
    if previous.get(TRAINING_TAG) != current[TRAINING_TAG]:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def previous_version_tags(client: MlflowClient, name: str, run_id: str) -> dict[str, str] | None:
    """The tags of the version a new version of `name` from MLflow run `run_id` follows:
    the highest-numbered one with a SEMVER_TAG, other than the run's own and, if the run
    was registered already (a retry), below it, so a retry gets the same answer. None if
    there is none (a new model, or only versions registered before semantic versions)."""
    versions = client.search_model_versions(f"name = '{name}'")
    own = [int(v.version) for v in versions if v.run_id == run_id]
    below = min(own) if own else None
    earlier = [
        v
        for v in versions
        if v.run_id != run_id and SEMVER_TAG in v.tags and (below is None or int(v.version) < below)
    ]
    if not earlier:
        return None
    return dict(max(earlier, key=lambda v: int(v.version)).tags)


def semver_tags(
    client: MlflowClient,
    config: AirloopConfig,
    run_id: str,
    config_hash: str,
    data_hash: str,
    params: Mapping[str, Any],
) -> dict[str, str]:
    """The three tags of the version MLflow run `run_id` is about to be registered as."""
    current = {
        SCHEMA_TAG: schema_fingerprint(config),
        TRAINING_TAG: training_fingerprint(config_hash, data_hash, params),
    }
    previous = previous_version_tags(client, config.model.registered_name, run_id)
    return {**current, SEMVER_TAG: next_semver(previous, current)}
