"""What airloop tells people, and how it reaches a webhook (Slack's incoming webhooks included).

Four events: a data partition blocked (quarantined), drift detected, a champion promoted,
a task failed. The DAGs send them through an Airflow notifier (`airloop_wiring.Notify`)
to the Airflow connection `airloop_notify`; without that connection nothing is sent. The
body is JSON: `text` (one line a person reads; the field Slack shows) and the event's
facts (`event`, `dag_id`, `run_id`, `task_id`, `details`) for a machine.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

CONNECTION_ID = "airloop_notify"
EVENTS = {
    "blocked_partition": "a data partition was blocked and quarantined",
    "drift": "drift detected",
    "promotion": "a new champion model was promoted",
    "failure": "a task failed",
}
# Summary fields worth a person's attention, per event, in this order.
_HEADLINES = {
    "blocked_partition": ("error",),
    "drift": ("signals", "reason", "html_path"),
    "promotion": ("version", "reason"),
    "failure": ("error",),
}


def notification(
    event: str, dag_id: str, run_id: str, task_id: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON body for one event; raises ValueError for an event that is not one of EVENTS."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}; one of {sorted(EVENTS)}")
    details = details or {}
    facts = [f"{key}: {details[key]}" for key in _HEADLINES[event] if details.get(key) not in (None, "", [])]
    text = f"airloop: {EVENTS[event]} ({dag_id} / {task_id}, run {run_id})"
    if facts:
        text += " - " + "; ".join(str(fact) for fact in facts)
    facts_for_machines = {"event": event, "dag_id": dag_id, "run_id": run_id, "task_id": task_id}
    return {"text": text, **facts_for_machines, "details": details}


def webhook_url(conn_type: str | None, host: str | None, port: int | None, schema: str | None) -> str:
    """The URL an Airflow connection names: a full URL in `host` (how a Slack webhook is
    kept), or host, port and path (`schema`) of an http/https connection."""
    if not host:
        raise ValueError(f"connection {CONNECTION_ID!r} has no host: set it to the webhook's URL")
    if "://" in host:
        return host
    scheme = "https" if conn_type == "https" else "http"
    address = f"{host}:{port}" if port else host
    return f"{scheme}://{address}/{(schema or '').lstrip('/')}"


def post(url: str, body: dict[str, Any], timeout: float = 10) -> int:
    """POST the body as JSON; returns the status, raises on a non-2xx answer or no answer."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - the operator's URL
        return int(answer.status)
