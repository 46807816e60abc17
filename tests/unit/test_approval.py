"""Approval before promotion (`gate.require_approval`): every answer, a person's or the
timeout's, is kept in the decision record, the registered version's tags and the promotion
ledger, and one that does not approve never promotes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from airloop.config import ConfigError, parse_config
from airloop.pipelines.approval import (
    TIMEOUT_ACTOR,
    approval_entry,
    approval_request,
    blocked_promotion,
    record_approval,
)
from airloop.pipelines.continuous_training import promote
from airloop.registry.ledger import read_ledger
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import current_champion
from tests.conftest import config_variant
from tests.unit.test_config import broken
from tests.unit.test_promotion import WEAK, gated, trained

RUN = "manual__approval"
AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
TAGS = ("airloop.approval", "airloop.approved_by", "airloop.approved_at", "airloop.approval_comment")


def answer(option: str, user: str | None, comment: str | None, timedout: bool = False) -> dict:
    """What the HITL operator resumes with: a REST/UI response, or the timeout's defaults."""
    return {
        "chosen_options": [option],
        "params_input": {"comment": comment},
        "responded_at": AT,
        "responded_by_user": {"id": user, "name": user} if user else None,
        "timedout": timedout,
    }


@pytest.fixture
def approving(config):
    return config_variant(config, gate={"require_approval": True, "approval_timeout_minutes": 90})


@pytest.fixture
def packaged(approving, paths, training_window) -> tuple[dict, dict]:
    """A gated, registered and (nominally) packaged first candidate, waiting for approval."""
    candidate = trained(approving, paths, training_window, **WEAK)
    return gated(approving, paths, training_window, candidate, RUN), candidate


def approval_tags(paths, config, version: str) -> dict[str, str]:
    tags = tracking_client(paths).get_model_version(config.model.registered_name, version).tags
    return {key: value for key, value in tags.items() if key in TAGS}


def record(paths) -> dict:
    return dict(json.loads(paths.decision_record(RUN).read_text()))


def test_an_approval_is_recorded_and_lets_the_version_be_promoted(
    approving, paths, training_window, packaged
):
    package, candidate = packaged
    version = package["version"]
    assert blocked_promotion(approving, record(paths)) == (
        "gate.require_approval is set and no approval was recorded"
    )

    entry = record_approval(approving, paths, RUN, version, answer("Approve", "alice", " ship it "))

    assert entry == {
        "decision": "approved",
        "promotes": True,
        "option": "Approve",
        "version": version,
        "by": "alice",
        "at": AT.isoformat(),
        "comment": "ship it",
        "reason": "approved by alice: ship it",
    }
    assert record(paths)["approval"] == entry
    assert f"Approval of v{version}: approved (approved by alice: ship it)" in (
        paths.decision_record(RUN).with_suffix(".md").read_text()
    )
    assert approval_tags(paths, approving, version) == {
        "airloop.approval": "approved",
        "airloop.approved_by": "alice",
        "airloop.approved_at": AT.isoformat(),
        "airloop.approval_comment": "ship it",
    }
    (move,) = read_ledger(paths)
    assert (move["action"], move["version"], move["actor"], move["run_key"]) == (
        "approved",
        version,
        "alice",
        RUN,
    )
    assert move["from_version"] is None and move["details"]["comment"] == "ship it"
    assert set(move["evidence"]) == {"decision", "model_card", "model_version"}

    # A retried task records the same answer once.
    record_approval(approving, paths, RUN, version, answer("Approve", "alice", " ship it "))
    assert len(read_ledger(paths)) == 1

    outcome = promote(approving, paths, package, training_window.summary(), candidate, RUN, "alice")
    assert outcome["promoted"] and outcome["version"] == version
    assert record(paths)["approval"] == entry  # promotion keeps the answer in the record


def test_a_rejection_is_recorded_and_the_version_is_never_promoted(
    approving, paths, training_window, packaged
):
    package, candidate = packaged
    version = package["version"]

    entry = record_approval(approving, paths, RUN, version, answer("Reject", "bob", "segment EWR looks off"))

    assert (entry["decision"], entry["promotes"], entry["by"]) == ("rejected", False, "bob")
    assert approval_tags(paths, approving, version) == {
        "airloop.approval": "rejected",
        "airloop.approved_by": "bob",
        "airloop.approved_at": AT.isoformat(),
        "airloop.approval_comment": "segment EWR looks off",
    }
    assert [(m["action"], m["actor"]) for m in read_ledger(paths)] == [("rejected", "bob")]
    # Even a rerun of promote_champion after the rejection leaves the registry alone.
    outcome = promote(approving, paths, package, training_window.summary(), candidate, RUN, "mallory")
    assert outcome == {"promoted": False, "reason": "not approved: rejected by bob: segment EWR looks off"}
    assert current_champion(tracking_client(paths), approving.model.registered_name) is None
    assert "promoted" not in record(paths)


def test_a_timeout_is_recorded_as_timed_out_with_nobody_as_the_approver(
    approving, paths, training_window, packaged
):
    package, candidate = packaged
    version = package["version"]
    # A person's earlier answer to this version (a cleared, re-asked task) leaves no tag behind.
    record_approval(approving, paths, RUN, version, answer("Reject", "bob", "wait"))

    # What the scheduler resumes the task with when nobody answered: the defaults.
    entry = record_approval(approving, paths, RUN, version, answer("Reject", None, None, timedout=True))

    assert entry == {
        "decision": "timed_out",
        "promotes": False,
        "option": "Reject",
        "version": version,
        "by": None,
        "at": AT.isoformat(),
        "comment": None,
        "reason": "no answer within 1.5 hours: Reject applied (gate.on_approval_timeout)",
    }
    assert record(paths)["approval"] == entry
    assert approval_tags(paths, approving, version) == {
        "airloop.approval": "timed_out",
        "airloop.approved_at": AT.isoformat(),
    }
    last = read_ledger(paths)[-1]
    assert (last["action"], last["actor"], last["run_key"]) == ("approval_timed_out", TIMEOUT_ACTOR, RUN)
    outcome = promote(approving, paths, package, training_window.summary(), candidate, RUN)
    assert (
        not outcome["promoted"]
        and current_champion(tracking_client(paths), approving.model.registered_name) is None
    )

    # on_approval_timeout: approve, a timeout promotes (and still says nobody approved).
    lenient = config_variant(approving, gate={"on_approval_timeout": "approve"})
    entry = record_approval(lenient, paths, RUN, version, answer("Approve", None, None, timedout=True))
    assert (entry["decision"], entry["promotes"], entry["by"]) == ("timed_out", True, None)
    assert blocked_promotion(lenient, record(paths)) is None


def test_the_request_shows_the_version_the_gates_numbers_and_links(approving, paths, packaged, monkeypatch):
    monkeypatch.setenv("AIRLOOP_MLFLOW_UI_URL", "http://mlflow.example.test:5000")
    package, _ = packaged
    version, decision = package["version"], record(paths)["decision"]

    request = approval_request(approving, paths, RUN, package)

    assert request["subject"] == f"Promote flights-late-arrival v{version} to champion? (model flights)"
    body = request["body"]
    assert f"| candidate v{version} | {decision['candidate']:.4f} |" in body
    assert (
        f"| naive baseline | {decision['baseline']:.4f} |" in body and "| champion | - |" in body
    )
    assert decision["reason"] in body and "| baseline | yes |" in body
    reports = f"/airloop/reports/{paths.reports.relative_to(paths.home).as_posix()}"
    decision_url = f"{reports}/decisions/{RUN}.md"
    card_url = f"{reports}/model_cards/flights-late-arrival-v{version}.html"
    mlflow_url = f"http://mlflow.example.test:5000/#/models/flights-late-arrival/versions/{version}"
    for link in (
        f"[Gate decision]({decision_url})",
        f"[Model card]({card_url})",
        f"[Model version]({mlflow_url})",
    ):
        assert link in body
    assert "No answer within 1.5 hours: **Reject**" in body


def test_an_answer_that_is_neither_approve_nor_reject_is_refused(approving) -> None:
    with pytest.raises(ValueError, match="chooses 'Approve' or 'Reject'"):
        approval_entry(approving, "1", answer("Maybe", "alice", None))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"gate__require_approval": "sometimes"}, "gate.require_approval"),
        ({"gate__approval_timeout_minutes": 0}, "gate.approval_timeout_minutes"),
        ({"gate__approval_timeout_minutes": -5}, "gate.approval_timeout_minutes"),
        ({"gate__approval_timeout_minutes": "a day"}, "gate.approval_timeout_minutes"),
        ({"gate__on_approval_timeout": "wait"}, "gate.on_approval_timeout"),
        ({"gate__approve_by": "alice"}, "gate.approve_by"),
    ],
)
def test_bad_approval_settings_name_the_key(changes, named) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(broken(**changes), "approval.yaml")
    assert named in str(error.value) and "approval.yaml" in str(error.value)


def test_approval_is_off_by_default(config) -> None:
    gate = config.gate
    assert (gate.require_approval, gate.approval_timeout_minutes, gate.on_approval_timeout) == (
        False,
        1440,
        "reject",
    )
    assert blocked_promotion(config, {}) is None
