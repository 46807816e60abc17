"""Approval before promotion (`gate.require_approval`): what the approver is shown, and what
their answer leaves behind.

continuous_training's `approve_promotion` task (Airflow's ApprovalOperator, in
`airloop.orchestration.approval`) shows `approval_request` on the Airflow UI's Required
Actions page and waits. Whatever ends the wait, Approve, Reject, or
`gate.approval_timeout_minutes` passing (then `gate.on_approval_timeout` is the answer), goes
to `record_approval`, which keeps it in three places: the run's decision record (`approval`),
the registered version's tags (`airloop.approval`, `airloop.approved_by`,
`airloop.approved_at`, `airloop.approval_comment`) and the model's promotion ledger.
`blocked_promotion` is what promotion checks: a version needing approval that was not
approved is never promoted, whoever reruns the task.

No Airflow import: an answer is the plain dict the HITL operator resumes with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from airloop.config import AirloopConfig
from airloop.evaluation.records import gate_tables, log_record, write_record
from airloop.orchestration.links import button_urls, link_references, mlflow_ui_base_url
from airloop.paths import StatePaths
from airloop.registry.ledger import APPROVAL_TIMED_OUT, APPROVED, REJECTED, record_move
from airloop.registry.tracking import tracking_client

# The ApprovalOperator's two options, and the approver's free-text field.
APPROVE_OPTION, REJECT_OPTION = "Approve", "Reject"
COMMENT_PARAM = "comment"
# What an answer was (the decision record's `approval.decision`, the `airloop.approval` tag).
ANSWER_APPROVED, ANSWER_REJECTED, ANSWER_TIMED_OUT = "approved", "rejected", "timed_out"
LEDGER_ACTIONS = {ANSWER_APPROVED: APPROVED, ANSWER_REJECTED: REJECTED, ANSWER_TIMED_OUT: APPROVAL_TIMED_OUT}
APPROVAL_TAG = "airloop.approval"
APPROVED_BY_TAG = "airloop.approved_by"
APPROVED_AT_TAG = "airloop.approved_at"
COMMENT_TAG = "airloop.approval_comment"
# Who answered when nobody did.
TIMEOUT_ACTOR = "airflow (approval timed out)"
# MLflow refuses longer tag values.
_MAX_TAG_CHARS = 5000


def timeout_option(config: AirloopConfig) -> str:
    """The option a timeout chooses (`gate.on_approval_timeout`): the operator's `defaults`."""
    return APPROVE_OPTION if config.gate.on_approval_timeout == "approve" else REJECT_OPTION


def approval_request(config: AirloopConfig, paths: StatePaths, run_key: str, packaged: Mapping) -> dict:
    """{"subject", "body"} asking to promote the packaged version: the body (Markdown, as the
    Airflow UI renders it) shows the gate's verdict and numbers and links the decision record,
    the model card and the MLflow version."""
    record = json.loads(paths.decision_record(run_key).read_text())
    decision, evidence = record["decision"], record.get("evidence") or {}
    name, version = config.model.registered_name, str(packaged["version"])
    champion = decision.get("champion_version")
    subject = f"Promote {name} v{version} to champion? (model {config.name})"
    verdict = "PROMOTE" if decision["promote"] else "KEEP THE CHAMPION"
    lines = [
        f"**Model** `{config.name}` (registered as `{name}`), **candidate** v{version}, "
        f"bento `{packaged.get('bento', '-')}`, Airflow run `{run_key}`.",
        "",
        f"**Gate: {verdict}**: {decision['reason']}",
        "",
    ]
    lines += gate_tables(decision, evidence, candidate=f"candidate v{version}")
    links = approval_evidence(config, paths, run_key, version)
    urls = button_urls(link_references(paths.home, **links), mlflow_ui_base_url())
    if urls:
        lines += ["", " · ".join(f"[{button}]({url})" for button, url in urls.items())]
    replaced = f"v{champion} stays as `previous_champion`" if champion else "it is the first champion"
    lines += [
        "",
        f"**Approve** makes v{version} the champion ({replaced}); **Reject** keeps the champion "
        f"as it is. No answer within {_duration(config.gate.approval_timeout_minutes)}: "
        f"**{timeout_option(config)}** (`gate.on_approval_timeout`). A comment is kept with the answer.",
    ]
    return {"subject": subject, "body": "\n".join(lines) + "\n"}


def approval_entry(config: AirloopConfig, version: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """What an answer says, as the decision record keeps it: {decision: approved | rejected |
    timed_out, promotes, option, version, by, at, comment, reason}.

    `answer` is what the HITL operator resumes with: chosen_options, params_input,
    responded_at, responded_by_user ({id, name}; None on a timeout) and timedout.
    """
    chosen = list(answer.get("chosen_options") or [])
    option = chosen[0] if chosen else None
    if option not in (APPROVE_OPTION, REJECT_OPTION):
        raise ValueError(f"an approval answer chooses {APPROVE_OPTION!r} or {REJECT_OPTION!r}, not {chosen}")
    user = answer.get("responded_by_user") or {}
    timed_out = bool(answer.get("timedout")) or not user
    by = None if timed_out else str(user.get("name") or user.get("id"))
    comment = (answer.get("params_input") or {}).get(COMMENT_PARAM)
    comment = (str(comment).strip() or None) if comment is not None else None
    at = answer.get("responded_at") or datetime.now(UTC)
    at = at.isoformat() if isinstance(at, datetime) else str(at)
    if timed_out:
        decision = ANSWER_TIMED_OUT
        minutes = _duration(config.gate.approval_timeout_minutes)
        reason = f"no answer within {minutes}: {option} applied (gate.on_approval_timeout)"
    else:
        decision = ANSWER_APPROVED if option == APPROVE_OPTION else ANSWER_REJECTED
        reason = f"{decision} by {by}" + (f": {comment}" if comment else "")
    return {
        "decision": decision,
        "promotes": option == APPROVE_OPTION,
        "option": option,
        "version": str(version),
        "by": by,
        "at": at,
        "comment": comment,
        "reason": reason,
    }


def record_approval(
    config: AirloopConfig, paths: StatePaths, run_key: str, version: str, answer: Mapping[str, Any]
) -> dict[str, Any]:
    """Keep an answer to the approval of `version` (see `approval_entry`) and return its entry:
    in the run's decision record under `approval` (JSON, Markdown and the candidate's MLflow
    run), as tags of the registered version, and in the model's promotion ledger.

    Idempotent for a retried task: the record and tags are overwritten with the same answer
    and the ledger keeps one entry per (answer, version, run). A tag whose value the answer
    lacks (no comment; nobody on a timeout) is removed, so the tags always say the last answer.
    """
    entry = approval_entry(config, version, answer)
    client, name, path = tracking_client(paths), config.model.registered_name, paths.decision_record(run_key)
    record = json.loads(path.read_text())
    record["approval"] = entry
    write_record(path, record)
    log_record(client, record["candidate_run_id"], path)

    tags = {
        APPROVAL_TAG: entry["decision"],
        APPROVED_BY_TAG: entry["by"],
        APPROVED_AT_TAG: entry["at"],
        COMMENT_TAG: entry["comment"],
    }
    current = client.get_model_version(name, entry["version"]).tags
    for key, value in tags.items():
        if value is not None:
            client.set_model_version_tag(name, entry["version"], key, str(value)[:_MAX_TAG_CHARS])
        elif key in current:
            client.delete_model_version_tag(name, entry["version"], key)

    record_move(
        paths,
        LEDGER_ACTIONS[entry["decision"]],
        entry["version"],
        from_version=record["decision"].get("champion_version"),
        actor=entry["by"] or TIMEOUT_ACTOR,
        reason=entry["reason"],
        evidence=approval_evidence(config, paths, run_key, entry["version"]),
        details={"promotes": entry["promotes"], "option": entry["option"], "comment": entry["comment"]},
        run_key=run_key,
    )
    return entry


def blocked_promotion(config: AirloopConfig, record: Mapping[str, Any]) -> str | None:
    """Why a decision record's candidate may not be promoted for want of approval; None when
    it may (approval not required, or an answer that promotes)."""
    if not config.gate.require_approval:
        return None
    approval = record.get("approval")
    if not approval:
        return "gate.require_approval is set and no approval was recorded"
    if not approval.get("promotes"):
        return f"not approved: {approval.get('reason') or approval.get('decision')}"
    return None


def approval_evidence(config: AirloopConfig, paths: StatePaths, run_key: str, version: str) -> dict[str, Any]:
    """The decision record, the model card (named as `write_model_card` names it) and the
    registered version: what the approver decides on."""
    card = paths.report_dir("model_cards") / f"{config.model.registered_name}-v{version}.html"
    return {
        "decision": paths.decision_record(run_key).with_suffix(".md"),
        "model_card": card if card.exists() else None,
        "model_version": f"{config.model.registered_name}/{version}",
    }


def _duration(minutes: float) -> str:
    if minutes < 60:
        return f"{minutes:g} minutes"
    if minutes < 48 * 60:
        return f"{minutes / 60:g} hours"
    return f"{minutes / 1440:g} days"
