"""Where each model of the deployment stands: its champion, its last continuous-training
decision, its last drift check and its last alias moves (the promotion ledger), read from
the registry and the records each stage keeps.

What `airloop models` prints and the Airflow UI's airloop page shows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airloop.config import AirloopConfig
from airloop.console import render_table
from airloop.orchestration.naming import STAGES, dag_id
from airloop.paths import StatePaths
from airloop.registry.ledger import read_ledger

# How many of a model's newest ledger entries its status carries.
LAST_MOVES = 3


def _newest(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return found[-1] if found else None


def _at(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")


def last_decision(paths: StatePaths) -> dict[str, Any] | None:
    """The newest continuous-training record: skipped by policy, gated, or promoted."""
    path = _newest(paths.reports / "decisions", "*.json")
    if path is None:
        return None
    record = json.loads(path.read_text())
    decision = record.get("decision") or {}
    if "skipped" in record:
        verdict, reason = "skipped", record["skipped"]
    elif record.get("promoted"):
        verdict, reason = f"promoted v{record['promoted']['version']}", decision.get("reason", "")
    else:
        verdict, reason = "not promoted", decision.get("reason", "")
    return {
        "verdict": verdict,
        "reason": reason,
        "triggers": record.get("triggers", []),
        "run_key": record.get("run_key"),
        "at": _at(path),
        "record": str(path.with_suffix(".md") if path.with_suffix(".md").exists() else path),
    }


def last_drift(paths: StatePaths) -> dict[str, Any] | None:
    """The newest drift check's verdict and report."""
    path = _newest(paths.reports / "drift", "*.summary.json")
    if path is None:
        return None
    summary = json.loads(path.read_text())
    if summary.get("status") == "skipped":
        verdict = "skipped"
    else:
        signals = "+".join(summary.get("signals") or ["data"])
        verdict = f"drift: {signals}" if summary.get("drift_detected") else "no drift"
    return {
        "verdict": verdict,
        "reason": summary.get("reason", ""),
        "partition": summary.get("current_partition"),
        "at": _at(path),
        "report": summary.get("html_path"),
    }


def last_moves(paths: StatePaths, count: int = LAST_MOVES) -> dict[str, Any]:
    """The model's newest `count` ledger entries, newest first, and how many there are."""
    entries = read_ledger(paths)
    return {"count": len(entries), "last": entries[::-1][:count], "path": str(paths.ledger)}


def champion_of(config: AirloopConfig, paths: StatePaths) -> dict[str, Any] | None:
    from airloop.registry.tracking import tracking_client
    from airloop.registry.versions import current_champion

    champion = current_champion(tracking_client(paths), config.model.registered_name)
    return None if champion is None else {"version": champion.version, "uri": champion.uri}


def model_status(config: AirloopConfig, paths: StatePaths) -> dict[str, Any]:
    """One model's row: what it is, its champion, its last decision, drift check and moves."""
    paths = paths.for_model(config.name)
    return {
        "model": config.name,
        "task": config.task,
        "registered_name": config.model.registered_name,
        "champion": champion_of(config, paths),
        "last_decision": last_decision(paths),
        "last_drift": last_drift(paths),
        "ledger": last_moves(paths),
        "dags": [dag_id(config.name, stage) for stage in STAGES],
    }


COLUMNS = ("model", "task", "champion", "last decision", "last drift check")


def status_row(status: dict[str, Any]) -> dict[str, str]:
    decision, drift, champion = status["last_decision"], status["last_drift"], status["champion"]
    return {
        "model": status["model"],
        "task": status["task"],
        "champion": f"{status['registered_name']} v{champion['version']}" if champion else "none yet",
        "last decision": f"{decision['verdict']} ({decision['at']})" if decision else "-",
        "last drift check": f"{drift['verdict']} ({drift['at']})" if drift else "-",
    }


def render_status(statuses: list[dict[str, Any]]) -> str:
    return render_table([status_row(s) for s in statuses], COLUMNS)
