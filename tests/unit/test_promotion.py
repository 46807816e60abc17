"""Promotion you can trust: compare-and-set, races, crashes between alias moves, rollback."""

from __future__ import annotations

import json
import threading

import mlflow
import pytest

from airloop.pipelines.continuous_training import evaluate, promote, register
from airloop.pipelines.rollback_champion import roll_back
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    ChampionChanged,
    current_champion,
    promote_champion,
    register_candidate,
)
from airloop.training.train import TrainRequest, train_candidate
from tests.conftest import config_variant

WEAK, MEDIUM, STRONG = (
    {"n_estimators": 2, "max_depth": 1},
    {"n_estimators": 5, "max_depth": 1},
    {"n_estimators": 15, "max_depth": 2},
)


def aliased(client, name: str, alias: str) -> str:
    return str(client.get_model_version_by_alias(name, alias).version)


def trained(config, paths, window, **params) -> dict:
    from dataclasses import asdict

    variant = config_variant(config, model={"params": {**config.model.params, **params}})
    request = TrainRequest(variant.model_dump(mode="json"), window.train_path, window.eval_path, {})
    return asdict(train_candidate(request, paths))


def gated(config, paths, window, candidate: dict, run_key: str) -> dict:
    """Evaluate and register a candidate the way the DAG does; return what promote needs."""
    record = evaluate(config, paths, window.summary(), candidate, run_key, ["manual"])
    assert record["decision"]["promote"], record["decision"]["reason"]
    model = register(config, paths, record, window.summary(), run_key)
    return {**model, "bento": f"test-bento:v{model['version']}", "skew": {"checked": "by test_packaging"}}


@pytest.fixture
def champion_v1(config, paths, training_window) -> str:
    first = trained(config, paths, training_window, **WEAK)
    packaged = gated(config, paths, training_window, first, "run-v1")
    assert promote(config, paths, packaged, training_window.summary(), first, "run-v1")["promoted"]
    return packaged["version"]


def test_promotion_refuses_to_overwrite_a_champion_it_was_not_compared_with(
    config, paths, training_window, champion_v1
) -> None:
    client, name = tracking_client(paths), config.model.registered_name
    medium = trained(config, paths, training_window, **MEDIUM)
    version = register_candidate(
        client, name, medium["run_id"], medium["model_uri"], {}, paths.tracking_uri()
    ).version
    with pytest.raises(ChampionChanged, match=f"champion of {name} is v{champion_v1} now, not vNone"):
        promote_champion(client, name, version, evaluated_against=None)
    assert current_champion(client, name).version == champion_v1
    # A retry of a promotion that already happened returns the champion as it is.
    assert promote_champion(client, name, champion_v1, evaluated_against="7").version == champion_v1


def test_two_runs_racing_leave_the_better_candidate_as_champion(
    config, paths, training_window, champion_v1
) -> None:
    medium = trained(config, paths, training_window, **MEDIUM)
    strong = trained(config, paths, training_window, **STRONG)
    # Both were evaluated against v1 before either promoted.
    packaged = {
        "medium": (gated(config, paths, training_window, medium, "run-medium"), medium),
        "strong": (gated(config, paths, training_window, strong, "run-strong"), strong),
    }
    outcomes: dict[str, dict] = {}

    def run(key: str) -> None:
        package, candidate = packaged[key]
        outcomes[key] = promote(config, paths, package, training_window.summary(), candidate, f"run-{key}")

    # The strong one first: the medium one then finds v(strong) as champion, is evaluated
    # again against it, and must lose.
    threads = [threading.Thread(target=run, args=(key,)) for key in ("strong", "medium")]
    threads[0].start()
    threads[0].join()
    threads[1].start()
    threads[1].join()

    client, name = tracking_client(paths), config.model.registered_name
    strong_version = packaged["strong"][0]["version"]
    assert aliased(client, name, CHAMPION) == strong_version
    assert aliased(client, name, PREVIOUS_CHAMPION) == champion_v1
    assert outcomes["strong"]["promoted"] and not outcomes["medium"]["promoted"]
    record = json.loads(paths.decision_record("run-medium").read_text())
    assert f"not v{champion_v1}" in record["reevaluated"]
    assert record["decision"]["champion_version"] == strong_version and "promoted" not in record


def test_concurrent_promotions_are_serialized(config, paths, training_window, champion_v1) -> None:
    medium = trained(config, paths, training_window, **MEDIUM)
    strong = trained(config, paths, training_window, **STRONG)
    jobs = [
        (gated(config, paths, training_window, medium, "run-a"), medium, "run-a"),
        (gated(config, paths, training_window, strong, "run-b"), strong, "run-b"),
    ]
    threads = [
        threading.Thread(target=promote, args=(config, paths, job, training_window.summary(), cand, key))
        for job, cand, key in jobs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client, name = tracking_client(paths), config.model.registered_name
    # Whichever went first, the strong candidate ends as champion.
    assert aliased(client, name, CHAMPION) == jobs[1][0]["version"]


def test_a_crash_between_the_alias_moves_leaves_a_loadable_champion(
    config, paths, training_window, champion_v1, monkeypatch
) -> None:
    client, name = tracking_client(paths), config.model.registered_name
    strong = trained(config, paths, training_window, **STRONG)
    version = register_candidate(
        client, name, strong["run_id"], strong["model_uri"], {}, paths.tracking_uri()
    ).version
    real = client.set_registered_model_alias

    def crash_on_champion(model, alias, ver):
        if alias == CHAMPION:
            raise ConnectionError("worker died between the alias moves")
        return real(model, alias, ver)

    monkeypatch.setattr(client, "set_registered_model_alias", crash_on_champion)
    with pytest.raises(ConnectionError):
        promote_champion(client, name, version, evaluated_against=champion_v1)
    monkeypatch.undo()

    champion = current_champion(client, name)
    assert champion is not None and champion.version == champion_v1
    mlflow.set_tracking_uri(paths.tracking_uri())
    assert mlflow.sklearn.load_model(champion.uri) is not None
    # The retry completes the promotion.
    assert promote_champion(client, name, version, evaluated_against=champion_v1).version == version


def test_rollback_returns_to_the_previous_champion_and_rebuilds_its_bento(
    config, paths, training_window, champion_v1, monkeypatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(paths.bentoml_home))
    client, name = tracking_client(paths), config.model.registered_name
    with pytest.raises(RuntimeError, match="no previous_champion to roll back to"):
        roll_back(config, paths)
    strong = trained(config, paths, training_window, **STRONG)
    packaged = gated(config, paths, training_window, strong, "run-strong")
    promote(config, paths, packaged, training_window.summary(), strong, "run-strong")

    outcome = roll_back(config, paths)
    assert outcome["version"] == champion_v1 and outcome["rolled_back"] == packaged["version"]
    assert aliased(client, name, CHAMPION) == champion_v1
    assert aliased(client, name, PREVIOUS_CHAMPION) == packaged["version"]
    assert client.get_model_version(name, packaged["version"]).tags["airloop.rolled_back"] == "true"
    assert list((paths.bentoml_home / "bentos").glob(f"*/v{champion_v1}/bento.yaml"))


def test_every_registered_version_has_a_model_card_and_its_decision_logged(
    config, paths, training_window, champion_v1
) -> None:
    client, name = tracking_client(paths), config.model.registered_name
    card = (paths.report_dir("model_cards") / f"{name}-v{champion_v1}.md").read_text()
    assert card.startswith(f"# Model card: {name} v{champion_v1}")
    assert training_window.train_hash in card and training_window.eval_hash in card
    assert "Airflow run: `run-v1`" in card and "| roc_auc |" in card and "first model" in card
    assert "`max_depth=1`, `n_estimators=2`" in card  # the trained version's own hyperparameters
    html = (paths.report_dir("model_cards") / f"{name}-v{champion_v1}.html").read_text()
    assert "<table>" in html and f"{name} v{champion_v1}" in html

    version = client.get_model_version(name, champion_v1)
    assert len(version.tags["airloop.git_commit"]) == 40
    assert {"airloop.airflow_run_id", "airloop.data_hash", "airloop.config_hash"} <= set(version.tags)
    logged = {
        a.path for folder in ("decision", "model_card") for a in client.list_artifacts(version.run_id, folder)
    }
    assert logged == {
        "decision/run-v1.json",
        "decision/run-v1.md",
        f"model_card/{name}-v{champion_v1}.md",
        f"model_card/{name}-v{champion_v1}.html",
    }
    decision = paths.decision_record("run-v1").with_suffix(".md").read_text()
    assert decision.startswith("# Promotion decision: PROMOTE") and "| baseline | yes |" in decision
