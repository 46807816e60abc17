"""roll_out: plan → (canary steps | shadow | straight) → promote, or roll back.

Each function is one task of the `roll_out` DAG (no Airflow here). A step moves the
registry's rollout aliases (`airloop.registry.rollout`), which `airloop serve` follows; every
move is appended to the promotion ledger, and the run's rollout record
(`rollout_record(paths, run_key)`, JSON and Markdown) keeps every step's evidence and verdict.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airloop.config import AirloopConfig
from airloop.paths import StatePaths, safe_key
from airloop.registry import ledger
from airloop.registry.locks import exclusive
from airloop.registry.rollout import end_canary, end_shadow, rollout_state, set_canary, set_shadow
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import promote_champion
from airloop.rollout.judge import ADVANCE, ROLL_BACK, Verdict

BLUE_GREEN, CANARY, SHADOW = "blue_green", "canary", "shadow"


def rollout_record(paths: StatePaths, run_key: str) -> Path:
    return paths.report_dir("rollouts") / f"{safe_key(run_key)}.json"


def plan_rollout(
    config: AirloopConfig, paths: StatePaths, version: str | None, run_key: str, warm_timeout: float = 300
) -> dict[str, Any]:
    """What this rollout moves: `version` (None: the registry's challenger) against the
    champion now, with the config's strategy. Raises ValueError, before anything moves, for
    a version that is not registered or already the champion, or while another rollout runs.
    Builds the version's bento (digest checked) and, where `airloop serve` runs, waits until
    it holds a warm server of it."""
    from mlflow.exceptions import MlflowException

    from airloop.packaging.bento import build_bento
    from airloop.packaging.champion_server import wait_until_warm

    client, name = tracking_client(paths), config.model.registered_name
    state = rollout_state(client, name)
    version = str(version or state.challenger or "")
    if not version:
        raise ValueError(f"nothing to roll out: {name} has no challenger; give a version")
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise ValueError(f"version {version} of {name} is not registered") from None
    if version == state.champion:
        raise ValueError(f"version {version} of {name} is the champion already")
    busy = {"canary": state.canary, "shadow": state.shadow}
    other = {kind: v for kind, v in busy.items() if v and v != version}
    if other:
        raise ValueError(f"another rollout of {name} is under way: {other}; it must finish or be rolled back")
    strategy = config.rollout.strategy if state.champion else BLUE_GREEN
    build_bento(config, f"models:/{name}/{version}", version, paths)
    plan = {
        "model": config.name,
        "version": version,
        "champion": state.champion,
        "strategy": strategy,
        "run_key": run_key,
        "warm": wait_until_warm(paths, config.name, version, warm_timeout),
        "planned_at": _now(),
    }
    _write(paths, run_key, {"plan": plan, "steps": [], "outcome": None})
    return plan


def start_canary_step(
    config: AirloopConfig, paths: StatePaths, plan: dict[str, Any], percent: int, actor: str
) -> dict[str, Any]:
    """Give the canary `percent` of the traffic; returns the step, with when it began."""
    client, name = tracking_client(paths), config.model.registered_name
    set_canary(client, name, plan["version"], percent)
    first = percent == config.rollout.steps[0]
    ledger.record_move(
        paths, ledger.CANARY_STARTED if first else ledger.CANARY_STEP, plan["version"],
        from_version=plan["champion"], actor=actor, reason=f"canary at {percent}% of the traffic",
        evidence={"rollout": rollout_record(paths, plan["run_key"]).with_suffix(".md")},
        run_key=f"{plan['run_key']}#{percent}",
    )  # fmt: skip
    return {"percent": percent, "started_at": _now()}


def judge_canary_step(
    config: AirloopConfig, paths: StatePaths, plan: dict[str, Any], step: dict[str, Any]
) -> dict[str, Any]:
    """The step's evidence so far and its verdict (`airloop.rollout.judge.judge_canary`)."""
    from airloop.production.labels_join import labelled_predictions
    from airloop.production.service_health import prometheus_url
    from airloop.rollout.evidence import NoPrometheus, live_metric, version_traffic
    from airloop.rollout.judge import StepEvidence, judge_canary

    url = prometheus_url(paths)
    if url is None:
        raise NoPrometheus(
            f"{config.name}: no serving Prometheus to measure the canary with (`airloop serve` runs one "
            "where `make prometheus` installed it; compose runs its own)"
        )
    started = datetime.fromisoformat(step["started_at"])
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    traffic = {
        v: version_traffic(url, config.name, v, minutes * 60) for v in (plan["version"], plan["champion"])
    }
    live = None
    if config.rollout.min_labelled:
        live = live_metric(config, labelled_predictions(paths), plan["version"], plan["champion"], started)
    evidence = StepEvidence(minutes, traffic[plan["version"]], traffic[plan["champion"]], live)
    verdict = judge_canary(config.rollout, evidence)
    return _judged(paths, plan, {**step, "evidence": _plain(evidence)}, verdict)


def start_shadow(
    config: AirloopConfig, paths: StatePaths, plan: dict[str, Any], actor: str
) -> dict[str, Any]:
    client, name = tracking_client(paths), config.model.registered_name
    sample = config.rollout.shadow_sample
    set_shadow(client, name, plan["version"], sample)
    ledger.record_move(
        paths, ledger.SHADOW_STARTED, plan["version"], from_version=plan["champion"], actor=actor,
        reason=f"shadow of {sample:.0%} of the traffic", run_key=plan["run_key"],
        evidence={"rollout": rollout_record(paths, plan["run_key"]).with_suffix(".md")},
    )  # fmt: skip
    return {"shadow_sample": sample, "started_at": _now()}


def judge_shadow_step(
    config: AirloopConfig, paths: StatePaths, plan: dict[str, Any], step: dict[str, Any]
) -> dict[str, Any]:
    """The shadow report since the shadow began, and its verdict (`judge_shadow`)."""
    from airloop.production.shadow_report import shadow_report
    from airloop.rollout.judge import judge_shadow

    started = datetime.fromisoformat(step["started_at"])
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    report = shadow_report(config, paths, plan["champion"], plan["version"], since=started)
    verdict = judge_shadow(config.rollout, minutes, report["pairs"], report["live_gate"])
    summary = {k: report[k] for k in ("pairs", "agreement", "latency_ms", "live_gate", "report_path")}
    return _judged(paths, plan, {**step, "minutes": minutes, "shadow": summary}, verdict)


def roll_back(
    config: AirloopConfig, paths: StatePaths, plan: dict[str, Any], reason: str, actor: str
) -> dict[str, Any]:
    """Undo the rollout: no canary, no shadow; the champion, which never moved, takes all
    the traffic again. Recorded in the ledger and the rollout record; returns the details a
    notification carries."""
    client, name = tracking_client(paths), config.model.registered_name
    end_canary(client, name)
    end_shadow(client, name)
    client.set_model_version_tag(name, plan["version"], "airloop.rolled_back", "true")
    action = ledger.SHADOW_STOPPED if plan["strategy"] == SHADOW else ledger.CANARY_ROLLED_BACK
    record = rollout_record(paths, plan["run_key"])
    ledger.record_move(
        paths, action, plan["version"], from_version=plan["champion"], actor=actor, reason=reason,
        evidence={"rollout": record.with_suffix(".md")}, run_key=plan["run_key"],
    )  # fmt: skip
    outcome = {
        "outcome": "rolled_back",
        "version": plan["version"],
        "champion": plan["champion"],
        "reason": reason,
    }
    _update(paths, plan["run_key"], outcome=outcome)
    return {**outcome, "record": str(record.with_suffix(".md"))}


def finish(config: AirloopConfig, paths: StatePaths, plan: dict[str, Any], actor: str) -> dict[str, Any]:
    """Promote the rolled-out version (compare-and-set against the champion it was rolled
    out beside), then end its canary or shadow: all traffic to it."""
    client, name = tracking_client(paths), config.model.registered_name
    path = rollout_record(paths, plan["run_key"])
    done = (json.loads(path.read_text()).get("outcome") or {}) if path.exists() else {}
    if done.get("outcome") == "rolled_back":
        raise RuntimeError(f"v{plan['version']} was rolled back in this rollout: {done.get('reason')}")
    with exclusive(paths.promotion_lock):
        champion = promote_champion(client, name, plan["version"], plan["champion"])
        end_canary(client, name)
        end_shadow(client, name)
    record = rollout_record(paths, plan["run_key"])
    reason = f"rolled out ({plan['strategy']})"
    ledger.record_move(
        paths, ledger.PROMOTED, champion.version, from_version=plan["champion"], actor=actor, reason=reason,
        evidence={"rollout": record.with_suffix(".md")}, run_key=plan["run_key"],
    )  # fmt: skip
    outcome = {
        "outcome": "promoted",
        "version": champion.version,
        "previous": plan["champion"],
        "reason": reason,
    }
    _update(paths, plan["run_key"], outcome=outcome)
    return {**outcome, "promoted": True}


def _judged(
    paths: StatePaths, plan: dict[str, Any], step: dict[str, Any], verdict: Verdict
) -> dict[str, Any]:
    judged = {**step, "judged_at": _now(), "verdict": verdict.to_dict()}
    if verdict.action in (ADVANCE, ROLL_BACK):  # a step waiting is not history yet
        _update(paths, plan["run_key"], step=judged)
    return judged


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _plain(value: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def _update(paths: StatePaths, run_key: str, step: dict | None = None, outcome: dict | None = None) -> None:
    path = rollout_record(paths, run_key)
    record = json.loads(path.read_text()) if path.exists() else {"plan": None, "steps": [], "outcome": None}
    if step is not None:
        record["steps"].append(step)
    if outcome is not None:
        record["outcome"] = outcome
    _write(paths, run_key, record)


def _write(paths: StatePaths, run_key: str, record: dict[str, Any]) -> None:
    path = rollout_record(paths, run_key)
    path.write_text(json.dumps(record, indent=2, default=str))
    path.with_suffix(".md").write_text(rollout_markdown(record))


def rollout_markdown(record: dict[str, Any]) -> str:
    plan, outcome = record.get("plan") or {}, record.get("outcome") or {}
    lines = [
        f"# Rollout of {plan.get('model')} v{plan.get('version')}: {outcome.get('outcome', 'under way')}",
        "",
        f"- Strategy: {plan.get('strategy')}; champion at the start: v{plan.get('champion')}",
        f"- Run: `{plan.get('run_key')}`, planned {plan.get('planned_at')}",
    ]
    if outcome:
        lines.append(f"- Outcome: {outcome['outcome']}: {outcome.get('reason')}")
    lines += ["", "| step | judged | verdict | why |", "|---|---|---|---|"]
    for step in record.get("steps", []):
        name = f"{step['percent']}%" if "percent" in step else f"shadow {step.get('shadow_sample', '')}"
        verdict = step["verdict"]
        lines.append(f"| {name} | {step['judged_at']} | {verdict['action']} | {verdict['reason']} |")
    return "\n".join(lines) + "\n"
