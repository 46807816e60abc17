"""DAG integrity: the DAG file builds every model's DAGs, cheaply, by the house rules, and
each model's DAGs stay within that model (ids, tags, Assets, pools)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airloop.deployment import load_deployment
from airloop.orchestration.naming import STAGES, dag_id, model_tag
from airloop.orchestration.pools import model_pools
from airloop.paths import PROJECT_ROOT
from tests.conftest import FLIGHTS_CONFIG, HEAVY_MODULES

DAGS_FOLDER = PROJECT_ROOT / "dags"
DAG_FILE = DAGS_FOLDER / "airloop_models.py"
MODELS = load_deployment().names()
EXPECTED_DAGS = {dag_id(model, stage) for model in MODELS for stage in STAGES}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    # Safe mode, as the dag-processor parses: a file must mention "airflow" and "dag".
    return DagBag(dag_folder=str(DAGS_FOLDER), safe_mode=True)


def _bag_in_subprocess(env: dict[str, str], dag: str) -> dict:
    """Parse the DAGs folder in a fresh interpreter with `env`: import errors, DAG ids, and
    the root tasks of `dag`."""
    probe = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS_FOLDER)!r}, safe_mode=True)\n"
        f"dag = bag.dags.get({dag!r})\n"
        "print('RESULT', json.dumps({'errors': bag.import_errors, 'dags': sorted(bag.dag_ids),\n"
        "    'roots': sorted(t.task_id for t in dag.roots) if dag else None}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    [line] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_the_project_deploys_the_flights_and_weather_models() -> None:
    assert MODELS == ["flights", "weather"]


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}


def test_every_model_has_one_dag_per_stage_and_nothing_else(dagbag) -> None:
    assert set(dagbag.dag_ids) == EXPECTED_DAGS
    assert all(d.fileloc == str(DAG_FILE) for d in dagbag.dags.values())


@pytest.mark.parametrize("dag", sorted(EXPECTED_DAGS))
def test_house_rules(dagbag, dag) -> None:
    found = dagbag.dags[dag]
    assert found.catchup is False
    assert found.doc_md and len(found.doc_md) > 100
    assert found.max_active_runs == 1
    for task in found.tasks:
        assert task.retries >= 1, f"{dag}.{task.task_id} has no retries"
        assert task.owner == "airloop"


@pytest.mark.parametrize("model", MODELS)
def test_a_models_dags_carry_its_tag_and_use_only_its_pools(dagbag, model) -> None:
    pools = set(model_pools(model)) | {"default_pool"}
    for stage in STAGES:
        found = dagbag.dags[dag_id(model, stage)]
        assert {"airloop", model_tag(model)} <= set(found.tags) and len(found.tags) == 3
        assert {task.pool for task in found.tasks} <= pools, stage


def _uris(assets) -> set[str]:
    return {a.uri for a in assets}


def _condition_uris(condition) -> set[str]:
    """Every asset URI in a schedule's asset condition (an Asset, or any/all of conditions)."""
    if condition is None:
        return set()
    if hasattr(condition, "uri"):
        return {condition.uri}
    return {uri for part in condition.objects for uri in _condition_uris(part)}


@pytest.mark.parametrize("model", MODELS)
def test_a_models_dags_are_scheduled_on_and_emit_only_its_own_assets(dagbag, model) -> None:
    """So one model's asset events can never trigger another model's runs."""
    for stage in STAGES:
        found = dagbag.dags[dag_id(model, stage)]
        scheduled_on = _condition_uris(getattr(found.timetable, "asset_condition", None))
        emitted = {uri for task in found.tasks for uri in _uris(getattr(task, "outlets", []))}
        read = {uri for task in found.tasks for uri in _uris(getattr(task, "inlets", []))}
        for uri in scheduled_on | emitted | read:
            assert uri.startswith(f"airloop://{model}/"), f"{dag_id(model, stage)} uses {uri}"
    training = dagbag.dags[dag_id(model, "continuous_training")]
    assert _condition_uris(training.timetable.asset_condition) == {
        f"airloop://{model}/validated_data",
        f"airloop://{model}/drift_detected",
    }


def test_the_dag_file_parses_fast_without_heavy_imports() -> None:
    """In a fresh interpreter with Airflow already loaded (as the dag-processor has it)."""
    probe = (
        "import sys, time, runpy, airflow.sdk\n"
        "start = time.perf_counter()\n"
        f"runpy.run_path({str(DAG_FILE)!r})\n"
        "print('PARSE_SECONDS', time.perf_counter() - start)\n"
        f"print('HEAVY', *(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    found = dict(
        line.partition(" ")[::2] for line in done.stdout.splitlines() if line.startswith(("PARSE_", "HEAVY"))
    )
    seconds, heavy = float(found["PARSE_SECONDS"]), found["HEAVY"].strip()
    assert seconds < 2.0
    assert heavy == "", f"{DAG_FILE.name} imports {heavy} at parse time"


def test_a_broken_config_is_an_import_error_naming_file_and_key_and_the_others_still_load(
    tmp_path: Path,
) -> None:
    raw = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    raw["name"], raw["model"]["registered_name"] = "churn", "churn-model"
    raw["gate"]["metric"] = "rmse"  # a regression metric on a classifier
    broken = tmp_path / "churn.yaml"
    broken.write_text(yaml.safe_dump(raw))
    configs = os.pathsep.join([str(FLIGHTS_CONFIG), str(broken)])

    bag = _bag_in_subprocess({"AIRLOOP_CONFIGS": configs}, dag_id("flights", "ingest_data"))

    [message] = bag["errors"].values()
    assert "churn.yaml" in message and "gate.metric" in message and "'rmse'" in message
    assert bag["dags"] == sorted(dag_id("flights", stage) for stage in STAGES)


def test_two_configs_claiming_one_model_name_leave_the_second_broken(tmp_path: Path) -> None:
    copy = tmp_path / "zz_flights_again.yaml"
    copy.write_text(FLIGHTS_CONFIG.read_text())
    bag = _bag_in_subprocess(
        {"AIRLOOP_CONFIGS": os.pathsep.join([str(FLIGHTS_CONFIG), str(copy)])},
        dag_id("flights", "ingest_data"),
    )
    [message] = bag["errors"].values()
    assert "zz_flights_again.yaml" in message and "name: 'flights' is already the name of" in message
    assert len(bag["dags"]) == len(STAGES)


@pytest.mark.parametrize(
    ("source", "first_task"),
    [
        ({"kind": "files", "pattern": "*.csv"}, "wait_for_landed_file"),
        (
            {"kind": "files", "pattern": "*.csv", "location": "file:///tmp/airloop-bucket"},
            "fetch_from_object_storage",
        ),
    ],
)
def test_ingest_waits_the_way_its_source_needs(tmp_path, source, first_task) -> None:
    raw = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    raw["dataset"]["source"] = source
    config = tmp_path / "variant.yaml"
    config.write_text(yaml.safe_dump(raw))
    bag = _bag_in_subprocess({"AIRLOOP_CONFIGS": str(config)}, dag_id("flights", "ingest_data"))
    assert bag["errors"] == {} and bag["roots"] == [first_task]


@pytest.mark.parametrize("stage", ["continuous_training", "monitor_drift"])
def test_the_trigger_form_has_typed_described_params_that_reach_the_config(dagbag, stage) -> None:
    from airloop.config import load_config
    from airloop.orchestration.run_params import config_for_run

    params = dagbag.dags[dag_id("flights", stage)].params
    assert params, f"{stage} has no trigger form"
    for name in params:
        param = params.get_param(name)
        assert param.schema.get("type") and param.schema.get("title") and len(param.description or "") > 20, (
            name
        )
    config = load_config()
    # The form's defaults leave the config as it is.
    assert config_for_run(config, stage, params.dump()) == config


def test_require_approval_puts_a_human_approval_between_packaging_and_promotion(dagbag, tmp_path) -> None:
    from datetime import timedelta

    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airloop.config import load_config
    from airloop.orchestration.stages import continuous_training
    from airloop.orchestration.wiring import ModelWiring
    from airloop.paths import StatePaths
    from tests.conftest import config_variant

    for model in MODELS:  # the project's configs ask nobody
        assert "approve_promotion" not in dagbag.dags[dag_id(model, "continuous_training")].task_ids

    gate = {"require_approval": True, "approval_timeout_minutes": 90, "on_approval_timeout": "approve"}
    config = config_variant(load_config(), gate=gate)
    dag = continuous_training.build(ModelWiring.of(config, StatePaths(tmp_path / "state")))
    approval = dag.get_task("approve_promotion")
    assert isinstance(approval, ApprovalOperator)
    assert approval.upstream_task_ids == {"package_model"}
    assert approval.downstream_task_ids == {"promote_champion"}
    assert "approve_promotion" in dag.get_task("promote_champion").upstream_task_ids
    assert approval.response_timeout == timedelta(minutes=90) and approval.defaults == ["Approve"]
    assert set(approval.serialized_params) == {"comment"}  # not the DAG's trigger form
    assert approval.retries >= 1 and approval.owner == "airloop"
    rejecting = config_variant(config, gate={"on_approval_timeout": "reject"})
    dag = continuous_training.build(ModelWiring.of(rejecting, StatePaths(tmp_path / "state")))
    assert dag.get_task("approve_promotion").defaults == ["Reject"]


def test_roll_out_promotes_only_after_the_path_it_took_and_never_past_a_rollback(dagbag, tmp_path) -> None:
    """promote_rolled_out hangs on the three paths' last tasks alone: after a rollback (its
    step skipped) every one of them is skipped, so it is too."""
    from airloop.config import load_config
    from airloop.orchestration.rollout_step import RolloutStep
    from airloop.orchestration.stages import continuous_training, roll_out
    from airloop.orchestration.wiring import ModelWiring
    from airloop.paths import StatePaths
    from tests.conftest import config_variant

    for model in MODELS:
        dag = dagbag.dags[dag_id(model, "roll_out")]
        steps = [f"canary_{p}" for p in load_config().rollout.steps[:-1]] if model == "flights" else None
        if steps:
            assert [t for t in dag.task_ids if t.startswith("canary_")] == steps
    config = config_variant(load_config(), rollout={"strategy": "canary", "steps": [10, 50, 100]})
    wiring = ModelWiring.of(config, StatePaths(tmp_path / "state"))
    dag = roll_out.build(wiring)
    promote = dag.get_task("promote_rolled_out")
    assert promote.upstream_task_ids == {"blue_green", "shadow", "canary_50"}
    assert promote.trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("canary_50").upstream_task_ids == {"canary_10"}
    assert isinstance(dag.get_task("canary_10"), RolloutStep)
    assert dag.get_task("choose_path").downstream_task_ids == {"blue_green", "shadow", "canary_10"}
    # A canary or shadow strategy hands the candidate on instead of promoting it.
    training = continuous_training.build(wiring)
    assert "promote_champion" not in training.task_ids
    assert training.get_task("request_rollout").upstream_task_ids == {"package_model"}


@pytest.mark.parametrize(
    ("current", "watched"),
    [("ingested", {"validated_data"}), ("served", {"validated_data", "labelled_predictions"})],
)
def test_monitor_drift_runs_on_newly_joined_labels_only_when_it_checks_served_traffic(
    tmp_path, current, watched
) -> None:
    from airloop.config import load_config
    from airloop.orchestration.stages import monitor_drift
    from airloop.orchestration.wiring import ModelWiring
    from airloop.paths import StatePaths
    from tests.conftest import config_variant

    config = config_variant(load_config(), drift={"current": current})
    dag = monitor_drift.build(ModelWiring.of(config, StatePaths(tmp_path / "state")))
    uris = _condition_uris(dag.timetable.asset_condition)
    assert uris == {f"airloop://flights/{name}" for name in watched}
    assert dag.timetable.timetable.expression == "0 0 * * *", "and daily (schedules.monitor_drift) as well"
