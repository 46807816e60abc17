"""The promotion ledger: every move of a model's registry aliases, one record per model.

A promotion, a canary step, a rollback, an approval or rejection, a shadow started or
stopped: each is one JSON line appended to `StatePaths.ledger` (`models/<name>/ledger.jsonl`)
saying who moved what and why, when, and where the evidence is. `airloop history` prints
it; the Airflow UI's airloop models page shows each model's last moves.

Evidence is {kind: reference}, as the UI's buttons take them (`airloop.orchestration.links`):
a file relative to the state home (`models/flights/reports/decisions/<run>.md`), an MLflow
run id (`mlflow_run`), a "name/version" (`model_version`), or a URL.

Appends are serialized by a lock of their own (callers may hold the promotion lock) and
idempotent for retried tasks. Standard library only: the Airflow UI's plugin reads this.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airloop.console import render_table
from airloop.paths import StatePaths
from airloop.registry.locks import exclusive

log = logging.getLogger(__name__)

PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
CANARY_STARTED = "canary_started"
CANARY_STEP = "canary_step"
CANARY_ROLLED_BACK = "canary_rolled_back"
SHADOW_STARTED = "shadow_started"
SHADOW_STOPPED = "shadow_stopped"
APPROVED = "approved"
REJECTED = "rejected"
APPROVAL_TIMED_OUT = "approval_timed_out"
ACTIONS = (
    PROMOTED, ROLLED_BACK, CANARY_STARTED, CANARY_STEP, CANARY_ROLLED_BACK,
    SHADOW_STARTED, SHADOW_STOPPED, APPROVED, REJECTED, APPROVAL_TIMED_OUT,
)  # fmt: skip

URL_PREFIXES = ("http://", "https://")
COLUMNS = ("time", "action", "version", "actor", "reason", "evidence")


def _lock(paths: StatePaths) -> Path:
    # Not the promotion lock: promote() and roll_back() record while they hold that one.
    return paths.model_home / "locks" / "ledger.lock"


def evidence_references(home: Path, evidence: Mapping[str, str | Path | None]) -> dict[str, str]:
    """{kind: reference} with files inside `home` made relative to it; URLs, run ids and
    "name/version" kept as given; empty values dropped."""
    references: dict[str, str] = {}
    for kind, value in evidence.items():
        if value is None or str(value) == "":
            continue
        reference = str(value)
        if not reference.startswith(URL_PREFIXES) and Path(reference).is_absolute():
            path, root = Path(reference).resolve(), home.resolve()
            if path.is_relative_to(root):
                reference = path.relative_to(root).as_posix()
        references[kind] = reference
    return references


def airflow_actor(dag_run: Any) -> str:
    """Who a DAG run acts for: the user who triggered it (UI, REST, CLI), else
    "airflow (<run type>)" for a scheduled or asset-triggered run."""
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return str(user)
    run_type = getattr(dag_run, "run_type", None)
    return f"airflow ({getattr(run_type, 'value', run_type) or 'unknown run type'})"


def read_ledger(paths: StatePaths) -> list[dict[str, Any]]:
    """The model's moves, oldest first; none yet: []. A line that is not a JSON object (a
    write torn by a crash) is skipped with a warning."""
    try:
        text = paths.ledger.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            log.warning(
                "ledger %s: line %d is not a ledger entry, skipped: %.80r", paths.ledger, number, line
            )
            continue
        entries.append(entry)
    return entries


def record_move(
    paths: StatePaths,
    action: str,
    version: str | None,
    *,
    from_version: str | None,
    actor: str,
    reason: str,
    evidence: Mapping[str, str | Path | None] | None = None,
    details: Mapping[str, Any] | None = None,
    run_key: str | None = None,
) -> dict[str, Any]:
    """Append one move to the model's ledger and return its entry.

    `version` is the version the alias moved to (or the one acted on), `from_version` the one
    it left; `evidence` as in `evidence_references`; `details` anything else worth keeping
    (JSON-able). Safe with several processes appending at once. Idempotent for a retried
    task: with a `run_key`, the same (action, version, run_key) already recorded is not
    appended again, the existing entry is returned.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown ledger action {action!r}; known: {', '.join(ACTIONS)}")
    version = None if version is None else str(version)
    with exclusive(_lock(paths)):
        entries = read_ledger(paths)
        key = (action, version, run_key)
        for entry in entries if run_key is not None else ():
            if (entry.get("action"), entry.get("version"), entry.get("run_key")) == key:
                return entry  # a retry of the task that recorded it
        entry = {
            "seq": max((int(e.get("seq") or 0) for e in entries), default=0) + 1,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": paths.model,
            "action": action,
            "version": version,
            "from_version": None if from_version is None else str(from_version),
            "actor": actor,
            "reason": reason,
            "evidence": evidence_references(paths.home, evidence or {}),
            "details": dict(details or {}),
            "run_key": run_key,
        }
        line = json.dumps(entry, default=str, ensure_ascii=False) + "\n"
        if _torn(paths.ledger):
            line = "\n" + line  # a writer that died mid-line: its torn line stays one of its own
        paths.ledger.parent.mkdir(parents=True, exist_ok=True)
        with paths.ledger.open("ab") as handle:
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
    return entry


def _torn(path: Path) -> bool:
    """Whether `path` is a non-empty file whose last line has no newline."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except FileNotFoundError:
        return False


def version_text(entry: Mapping[str, Any]) -> str:
    """The version moved: "v2 → v3", "v3", or "-"."""
    version, before = entry.get("version"), entry.get("from_version")
    if version is None:
        return f"from v{before}" if before is not None else "-"
    return f"v{before} → v{version}" if before is not None and before != version else f"v{version}"


def history_text(entries: Iterable[Mapping[str, Any]]) -> str:
    """The ledger as a table, oldest first: time, action, version (from → to), actor, reason
    and the evidence references."""
    rows = [
        {
            "time": str(entry.get("at") or "").replace("T", " "),
            "action": entry.get("action", ""),
            "version": version_text(entry),
            "actor": entry.get("actor", ""),
            "reason": entry.get("reason", ""),
            "evidence": ", ".join(f"{k}: {v}" for k, v in (entry.get("evidence") or {}).items()) or "-",
        }
        for entry in entries
    ]
    if not rows:
        return "no moves recorded yet"
    return "\n".join(line.rstrip() for line in render_table(rows, COLUMNS).splitlines())
