"""What airloop tells people, and how it reaches them: a webhook (Slack's incoming webhooks
included) or email.

Six events: a data partition blocked (quarantined), drift detected, a champion promoted,
the served model unhealthy (its service alerts firing), a rollout rolled back, a task
failed. The DAGs send them through an Airflow notifier
(`airloop.orchestration.notifier.Notify`) to the Airflow connection `airloop_notify`;
without that connection nothing is sent. A webhook gets JSON: `text` (one line a person
reads; the field Slack shows) and the event's facts (`event`, `model`, `dag_id`, `run_id`,
`task_id`, `details`) for a machine. An `smtp` connection gets an email: `text` as its
subject, the facts as its body.
"""

from __future__ import annotations

import json
import smtplib
import urllib.request
from email.message import EmailMessage
from typing import Any, Protocol

CONNECTION_ID = "airloop_notify"
EVENTS = {
    "blocked_partition": "a data partition was blocked and quarantined",
    "drift": "drift detected",
    "promotion": "a new champion model was promoted",
    "service_alert": "the served model is unhealthy",
    "rollback": "a rollout was rolled back",
    "failure": "a task failed",
}
# Summary fields worth a person's attention, per event, in this order.
_HEADLINES = {
    "blocked_partition": ("error",),
    "drift": ("signals", "reason", "html_path"),
    "promotion": ("version", "reason"),
    "service_alert": ("summaries",),
    "rollback": ("version", "reason"),
    "failure": ("error",),
}


def notification(
    event: str,
    dag_id: str,
    run_id: str,
    task_id: str,
    details: dict[str, Any] | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """The JSON body for one event; raises ValueError for an event that is not one of EVENTS."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}; one of {sorted(EVENTS)}")
    details = details or {}
    facts = [f"{key}: {details[key]}" for key in _HEADLINES[event] if details.get(key) not in (None, "", [])]
    about = f" for model {model}" if model else ""
    text = f"airloop: {EVENTS[event]}{about} ({dag_id} / {task_id}, run {run_id})"
    if facts:
        text += " - " + "; ".join(str(fact) for fact in facts)
    facts_for_machines = {
        "event": event, "model": model, "dag_id": dag_id, "run_id": run_id, "task_id": task_id,
    }  # fmt: skip
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


class Destination(Protocol):
    """The fields of an Airflow connection that say where a notification goes."""

    conn_type: str | None
    host: str | None
    port: int | None
    schema: str | None
    login: str | None
    password: str | None
    extra_dejson: dict[str, Any]


EMAIL_CONN_TYPES = ("smtp", "email")


def deliver(destination: Destination, body: dict[str, Any]) -> None:
    """Send the body by email (an smtp connection) or to a webhook (any other)."""
    if destination.conn_type in EMAIL_CONN_TYPES:
        send_email(destination, body)
    else:
        url = webhook_url(destination.conn_type, destination.host, destination.port, destination.schema)
        post(url, body)


def send_email(destination: Destination, body: dict[str, Any], timeout: float = 10) -> None:
    """One email per event: to `extra.to` (a list or comma-separated), from `extra.from`;
    `extra.ssl` for SMTPS, `extra.starttls` to upgrade, the login when the connection has one."""
    extra = destination.extra_dejson
    recipients = extra.get("to") or []
    if isinstance(recipients, str):
        recipients = [r.strip() for r in recipients.split(",") if r.strip()]
    if not destination.host or not recipients:
        raise ValueError(f"connection {CONNECTION_ID!r} (smtp) needs a host and extra.to (the recipients)")
    message = EmailMessage()
    message["Subject"] = body["text"]
    message["From"] = extra.get("from", "airloop@localhost")
    message["To"] = ", ".join(recipients)
    message.set_content(f"{body['text']}\n\n{json.dumps(body, indent=2, default=str)}\n")
    smtp = smtplib.SMTP_SSL if extra.get("ssl") else smtplib.SMTP
    with smtp(destination.host, destination.port or 0, timeout=timeout) as server:
        if extra.get("starttls"):
            server.starttls()
        if destination.login:
            server.login(destination.login, destination.password or "")
        server.send_message(message)
