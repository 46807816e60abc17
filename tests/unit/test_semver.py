"""Semantic model versions: the pure rule, and the tags registration leaves in a real registry."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from airloop.config import AirloopConfig, parse_config
from airloop.pipelines.continuous_training import register
from airloop.registry.semver import (
    FIRST,
    SCHEMA_TAG,
    SEMVER_TAG,
    TRAINING_TAG,
    next_semver,
    previous_version_tags,
    schema_fingerprint,
    training_fingerprint,
)
from airloop.registry.tracking import tracking_client
from tests.conftest import config_variant
from tests.unit.test_promotion import MEDIUM, WEAK, gated, trained

PARAMS = {"family": "xgboost", "seed": "42", "device": "cpu", "n_estimators": "2", "max_depth": "1"}


def tags(semver: str | None = None, schema: str = "s1", training: str = "t1") -> dict[str, str]:
    found = {SCHEMA_TAG: schema, TRAINING_TAG: training}
    return found if semver is None else {**found, SEMVER_TAG: semver}


def edited(config: AirloopConfig, edit) -> AirloopConfig:
    """`config` changed in place by `edit(data)` on its dump, validated again."""
    data = config.model_dump(mode="json")
    edit(data)
    return parse_config(data, "test variant")


def test_the_first_version_is_1_0_0() -> None:
    assert next_semver(None, tags()) == FIRST == "1.0.0"


def test_another_schema_or_task_is_a_major_bump() -> None:
    assert next_semver(tags("1.3.2"), tags(schema="s2")) == "2.0.0"
    # It outranks a retrain: both changed, the bump is MAJOR.
    assert next_semver(tags("1.3.2"), tags(schema="s2", training="t2")) == "2.0.0"


def test_other_data_or_params_is_a_minor_bump() -> None:
    assert next_semver(tags("1.3.2"), tags(training="t2")) == "1.4.0"


def test_the_same_inputs_again_are_a_patch() -> None:
    assert next_semver(tags("1.3.2"), tags()) == "1.3.3"


def test_a_previous_version_without_fingerprints_counts_as_changed() -> None:
    assert next_semver({SEMVER_TAG: "1.0.0"}, tags()) == "2.0.0"
    assert next_semver({SEMVER_TAG: "1.0.0", SCHEMA_TAG: "s1"}, tags()) == "1.1.0"
    with pytest.raises(ValueError, match="not MAJOR.MINOR.PATCH"):
        next_semver({**tags(), SEMVER_TAG: "v3"}, tags())


def test_the_schema_is_the_features_types_and_the_task(config: AirloopConfig) -> None:
    same = schema_fingerprint(config)
    # Not the model's settings, nor the order features are listed in.
    assert schema_fingerprint(config_variant(config, model={"params": {"max_depth": 2}})) == same
    reordered = config_variant(config, dataset={"features": list(reversed(config.dataset.features))})
    assert schema_fingerprint(reordered) == same

    fewer = config_variant(config, dataset={"features": list(config.dataset.features[:-1])})

    def distance_as_float(data: dict) -> None:
        data["dataset"]["columns"]["distance"] = {"type": "float"}

    def regression(data: dict) -> None:
        data["task"], data["gate"]["metric"] = "regression", "rmse"
        data["dataset"]["target"] = {"column": "arr_delay"}

    def later_is_late(data: dict) -> None:
        data["dataset"]["target"]["positive_above"] += 15

    changed = [fewer, *(edited(config, e) for e in (distance_as_float, regression, later_is_late))]
    fingerprints = {same, *(schema_fingerprint(c) for c in changed)}
    assert len(fingerprints) == 5 and all(len(f) == 64 for f in fingerprints)


def test_the_training_fingerprint_is_config_data_and_params_not_the_device() -> None:
    same = training_fingerprint("c1", "d1", PARAMS)
    assert training_fingerprint("c1", "d1", {**PARAMS, "device": "cuda"}) == same
    assert training_fingerprint("c1", "d1", {**PARAMS, "max_depth": "2"}) != same
    assert training_fingerprint("c1", "d2", PARAMS) != same
    assert training_fingerprint("c2", "d1", PARAMS) != same


def _version(number: int, run_id: str, **found: str) -> SimpleNamespace:
    return SimpleNamespace(version=str(number), run_id=run_id, tags=found)


class _Registry:
    def __init__(self, *versions: SimpleNamespace) -> None:
        self.versions = list(versions)

    def search_model_versions(self, filter_string: str) -> list[SimpleNamespace]:
        assert filter_string == "name = 'm'"
        return self.versions


def test_a_retry_follows_the_version_before_its_own_not_a_later_one() -> None:
    registry = _Registry(
        _version(1, "old"),  # registered before semantic versions
        _version(2, "a", **tags("1.0.0")),
        _version(3, "mine", **tags("1.0.1")),
        _version(4, "b", **tags("1.1.0", training="t2")),
    )
    assert previous_version_tags(registry, "m", "mine") == tags("1.0.0")  # type: ignore[arg-type]
    # A run not registered yet follows the newest version with a semantic version.
    assert previous_version_tags(registry, "m", "new") == tags("1.1.0", training="t2")  # type: ignore[arg-type]
    assert previous_version_tags(_Registry(_version(1, "old")), "m", "new") is None  # type: ignore[arg-type]


def test_registered_versions_carry_their_semantic_version(config, paths, training_window) -> None:
    client, name = tracking_client(paths), config.model.registered_name

    def semver(version: str) -> str:
        return client.get_model_version(name, version).tags[SEMVER_TAG]

    weak = trained(config, paths, training_window, **WEAK)
    first = gated(config, paths, training_window, weak, "run-first")
    assert semver(first["version"]) == "1.0.0"

    again = trained(config, paths, training_window, **WEAK)  # a rebuild: the same inputs
    rebuilt = gated(config, paths, training_window, again, "run-rebuilt")
    assert semver(rebuilt["version"]) == "1.0.1"

    medium = trained(config, paths, training_window, **MEDIUM)  # other hyperparameters
    retrained = gated(config, paths, training_window, medium, "run-retrained")
    assert semver(retrained["version"]) == "1.1.0"

    # A retry of an earlier registration, after later ones: the same version, the same semver.
    record = json.loads(paths.decision_record("run-rebuilt").read_text())
    retry = register(config, paths, record, training_window.summary(), "run-rebuilt")
    assert retry["version"] == rebuilt["version"] and semver(retry["version"]) == "1.0.1"

    # One feature fewer: callers send other records, a major version.
    fewer = config_variant(
        config, dataset={"features": [f for f in config.dataset.features if f != "minute"]}
    )
    narrow = gated(fewer, paths, training_window, trained(fewer, paths, training_window, **WEAK), "run-fewer")
    tagged = client.get_model_version(name, narrow["version"]).tags
    assert tagged[SEMVER_TAG] == "2.0.0" and tagged[SCHEMA_TAG] == schema_fingerprint(fewer)
    assert len(client.search_model_versions(f"name = '{name}'")) == 4

    card = (paths.report_dir("model_cards") / f"{name}-v{narrow['version']}.md").read_text()
    assert card.startswith(f"# Model card: {name} v{narrow['version']}\n")
    assert "- Semantic version: `2.0.0` (MAJOR:" in card
