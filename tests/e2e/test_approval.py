"""A person approves promotions (`gate.require_approval`), through Airflow's real scheduler
and REST API: continuous_training parks at `approve_promotion` (awaiting input) until an
answer arrives over `PATCH .../hitlDetails`, or the scheduler applies the timeout's default.

One stack, three runs, in order: approved (the champion moves), rejected and timed out
(the champion stays). Each answer must be in the decision record, the registered version's
tags and the promotion ledger.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from airloop.config import load_config
from airloop.demo.flights import land_month
from airloop.demo.replay import wait_for_dags
from airloop.ops.airflow_api import AirflowClient
from airloop.ops.stack import USERNAME, Stack
from airloop.orchestration.naming import STAGES, dag_id
from airloop.paths import StatePaths
from airloop.pipelines.ingest_data import ingest_landed
from airloop.registry.ledger import read_ledger
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import current_champion
from tests.conftest import FLIGHTS_CONFIG
from tests.unit.test_promotion import WEAK

pytestmark = pytest.mark.e2e
DAG = dag_id("flights", "continuous_training")
TASK = "approve_promotion"
# Short enough that the timed-out run waits half a minute; the answered runs answer within
# a few seconds of the task parking.
TIMEOUT_MINUTES = 0.5
RUN_TIMEOUT = 420
# Answers come a few seconds after the task parks, as a person's would. Airflow 3.3.2's
# scheduler fails the try of an answer that lands before it has processed the parked
# worker's exit (the resumed TI is already queued: "task state changed externally"), and the
# retry asks again.
ANSWER_AFTER_S = 3


@pytest.fixture(scope="module")
def approval_stack(tmp_path_factory):
    """A stack running one model, flights with `gate.require_approval`, two validated months
    and no champion; only continuous_training unpaused."""
    root = tmp_path_factory.mktemp("approval")
    raw = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    raw["gate"].update(
        require_approval=True, approval_timeout_minutes=TIMEOUT_MINUTES, on_approval_timeout="reject"
    )
    config_path = root / "flights-approval.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    root_paths = StatePaths(root / "state")
    paths = root_paths.for_model("flights")
    config = load_config(config_path)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRLOOP_HOME", str(root_paths.home))
        env.setenv("AIRLOOP_CONFIGS", str(config_path))
        env.delenv("AIRLOOP_OVERLAYS", raising=False)
        env.setenv("BENTOML_HOME", str(root_paths.bentoml_home))
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.delenv("AIRFLOW_CONN_AIRLOOP_NOTIFY", raising=False)
        # The scheduler sweeps timed-out human-in-the-loop tasks this often (default 15 s).
        env.setenv("AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL", "2")
        # Ingested before Airflow starts, so no ingest run or asset event ever sees them.
        for month in (1, 2):
            land_month(month, paths.landing)
        assert all(outcome["accepted"] for outcome in ingest_landed(config, paths))
        stack = Stack(root_paths, str(config_path))
        try:
            stack.start()
            client = stack.client()
            wait_for_dags(client, [dag_id("flights", stage) for stage in STAGES])
            _quiet(client)
            yield config, paths, client
        finally:
            stack.stop()


def _quiet(client: AirflowClient) -> None:
    """Pause every DAG but continuous_training and fail their runs: only the runs under test work."""
    for stage in STAGES:
        other = dag_id("flights", stage)
        if other == DAG:
            continue
        client.request("PATCH", f"dags/{other}", json={"is_paused": True})
        active = client.request("GET", f"dags/{other}/dagRuns", params={"state": ["queued", "running"]})
        for run in active["dag_runs"]:
            client.request("PATCH", f"dags/{other}/dagRuns/{run['dag_run_id']}", json={"state": "failed"})


def _states(client: AirflowClient, run_id: str) -> dict[str, str | None]:
    return {ti["task_id"]: ti["state"] for ti in client.task_instances(DAG, run_id)}


def _wait(client: AirflowClient, run_id: str, done, what: str, timeout: float = RUN_TIMEOUT):
    """Poll the run's task states until `done(states)` is true; fail fast if the run ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = _states(client, run_id)
        if done(states):
            return states
        run = client.request("GET", f"dags/{DAG}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            raise AssertionError(f"run {run_id} ended {run['state']} before {what}: {states}")
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {_states(client, run_id)}")


def _finish(client: AirflowClient, run_id: str, timeout: float = 120) -> dict[str, str | None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.request("GET", f"dags/{DAG}/dagRuns/{run_id}")["state"] in ("success", "failed"):
            return _states(client, run_id)
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish within {timeout:.0f} s: {_states(client, run_id)}")


def _ask(client: AirflowClient, run_id: str, conf: dict | None = None) -> dict:
    """Trigger a run over REST and wait until it waits for a person; its HITL detail."""
    client.trigger(DAG, conf=conf or {}, run_id=run_id)
    _wait(client, run_id, lambda states: states.get(TASK) == "awaiting_input", f"{TASK} to await input")
    return dict(client.request("GET", f"dags/{DAG}/dagRuns/{run_id}/taskInstances/{TASK}/-1/hitlDetails"))


def _answer(client: AirflowClient, run_id: str, option: str, comment: str) -> dict:
    time.sleep(ANSWER_AFTER_S)
    body = {"chosen_options": [option], "params_input": {"comment": comment}}
    path = f"dags/{DAG}/dagRuns/{run_id}/taskInstances/{TASK}/-1/hitlDetails"
    return dict(client.request("PATCH", path, json=body))


def _champion(config, paths) -> str | None:
    champion = current_champion(tracking_client(paths), config.model.registered_name)
    return None if champion is None else str(champion.version)


def _approval_tags(config, paths, version: str) -> dict[str, str]:
    tags = tracking_client(paths).get_model_version(config.model.registered_name, version).tags
    return {key: value for key, value in tags.items() if "approv" in key}


def _record(paths, run_id: str) -> dict:
    return dict(json.loads(paths.decision_record(run_id).read_text()))


def test_an_approval_over_rest_promotes_and_is_recorded(approval_stack) -> None:
    config, paths, client = approval_stack
    run_id = f"approve__{time.time_ns()}"
    before = _champion(config, paths)
    # A weak first model, so the next runs' candidates beat it and reach approval too.
    detail = _ask(client, run_id, {"model_params": WEAK})
    packaged = client.request(
        "GET",
        f"dags/{DAG}/dagRuns/{run_id}/taskInstances/package_model/xcomEntries/return_value",
        params={"deserialize": True},
    )["value"]
    version = str(packaged["version"])
    assert detail["subject"] == f"Promote flights-late-arrival v{version} to champion? (model flights)"
    assert "| candidate v" in detail["body"] and "[Gate decision](/airloop/reports/" in detail["body"]
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] == ["Reject"]
    assert _champion(config, paths) == before  # nothing moves while it waits

    answered = _answer(client, run_id, "Approve", "looks good")
    assert answered["responded_by"]["name"] == USERNAME
    states = _finish(client, run_id)

    assert states[TASK] == "success" and states["promote_champion"] == "success", states
    assert _champion(config, paths) == version != before
    approval = _record(paths, run_id)["approval"]
    assert (approval["decision"], approval["by"], approval["comment"]) == ("approved", USERNAME, "looks good")
    assert _record(paths, run_id)["promoted"]["version"] == version
    tags = _approval_tags(config, paths, version)
    assert tags["airloop.approval"] == "approved" and tags["airloop.approved_by"] == USERNAME
    assert tags["airloop.approval_comment"] == "looks good" and tags["airloop.approved_at"]
    moves = [(m["action"], m["version"], m["actor"]) for m in read_ledger(paths) if m["run_key"] == run_id]
    assert ("approved", version, USERNAME) in moves and moves[-1][0] == "promoted"


def test_a_rejection_over_rest_skips_the_promotion_and_is_recorded(approval_stack) -> None:
    config, paths, client = approval_stack
    run_id = f"reject__{time.time_ns()}"
    before = _champion(config, paths)
    _ask(client, run_id)
    _answer(client, run_id, "Reject", "not this week")
    states = _finish(client, run_id)

    assert states[TASK] == "success" and states["promote_champion"] == "skipped", states
    assert _champion(config, paths) == before
    record = _record(paths, run_id)
    version = record["approval"]["version"]
    assert "promoted" not in record and version != before
    assert (record["approval"]["decision"], record["approval"]["by"]) == ("rejected", USERNAME)
    assert record["approval"]["comment"] == "not this week"
    tags = _approval_tags(config, paths, version)
    assert tags["airloop.approval"] == "rejected" and tags["airloop.approval_comment"] == "not this week"
    moves = [(m["action"], m["actor"]) for m in read_ledger(paths) if m["run_key"] == run_id]
    assert moves == [("rejected", USERNAME)]


def test_no_answer_within_the_timeout_rejects_and_is_recorded_as_timed_out(approval_stack) -> None:
    config, paths, client = approval_stack
    run_id = f"timeout__{time.time_ns()}"
    before = _champion(config, paths)
    _ask(client, run_id)
    waited = time.monotonic()
    states = _finish(client, run_id, timeout=TIMEOUT_MINUTES * 60 + 90)

    assert time.monotonic() - waited >= TIMEOUT_MINUTES * 60 - 5
    assert states[TASK] == "success" and states["promote_champion"] == "skipped", states
    assert _champion(config, paths) == before
    record = _record(paths, run_id)
    approval = record["approval"]
    assert (approval["decision"], approval["option"], approval["by"]) == ("timed_out", "Reject", None)
    assert "promoted" not in record
    tags = _approval_tags(config, paths, approval["version"])
    assert tags["airloop.approval"] == "timed_out" and "airloop.approved_by" not in tags
    moves = [m["action"] for m in read_ledger(paths) if m["run_key"] == run_id]
    assert moves == ["approval_timed_out"]
