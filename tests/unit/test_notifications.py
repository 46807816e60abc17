"""Notifications: the body each event sends, delivered for real to a local webhook and a
local mail server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from airloop.orchestration.notifications import deliver, notification, post, webhook_url
from tests.receivers import MailReceiver, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def test_a_drift_notification_reaches_the_webhook(receiver: Receiver) -> None:
    summary = {"signals": ["data_drift"], "reason": "3 of 11 columns drifted", "html_path": "/r/2013-02.html"}
    body = notification("drift", "monitor_drift", "scheduled__2026", "signal_drift", summary)
    assert post(receiver.url, body) == 200
    (received,) = receiver.bodies
    assert received["event"] == "drift" and received["details"] == summary
    assert received["text"] == (
        "airloop: drift detected (monitor_drift / signal_drift, run scheduled__2026) - "
        "signals: ['data_drift']; reason: 3 of 11 columns drifted; html_path: /r/2013-02.html"
    )


def test_each_event_has_its_own_words() -> None:
    texts = {
        event: notification(event, "d", "r", "t", {"error": "boom", "version": "3"})["text"]
        for event in ("blocked_partition", "drift", "promotion", "failure")
    }
    assert "partition was blocked and quarantined" in texts["blocked_partition"]
    assert "error: boom" in texts["failure"]
    assert "new champion model was promoted" in texts["promotion"] and "version: 3" in texts["promotion"]
    with pytest.raises(ValueError, match="unknown notification event 'retrained'"):
        notification("retrained", "d", "r", "t")


def test_a_refusing_webhook_raises(receiver: Receiver) -> None:
    receiver.status = 500
    with pytest.raises(Exception, match="500"):
        post(receiver.url, notification("failure", "d", "r", "t"))


def test_the_url_of_a_connection() -> None:
    slack = "https://hooks.slack.com/services/T0/B0/x"
    assert webhook_url("http", slack, None, None) == slack
    assert webhook_url("http", "127.0.0.1", 8080, "hook") == "http://127.0.0.1:8080/hook"
    assert webhook_url("https", "example.org", None, "/a/b") == "https://example.org/a/b"
    with pytest.raises(ValueError, match="no host"):
        webhook_url("http", None, None, None)


@dataclass
class Connection:
    """The fields of an Airflow connection that `deliver` reads."""

    conn_type: str
    host: str | None
    port: int | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = None
    extra_dejson: dict[str, Any] = field(default_factory=dict)


def test_an_http_connection_delivers_to_its_webhook(receiver: Receiver) -> None:
    port = receiver.server_address[1]
    deliver(Connection("http", "127.0.0.1", port, "hook"), notification("promotion", "d", "r", "t"))
    assert receiver.events() == ["promotion"]


def test_an_smtp_connection_delivers_an_email() -> None:
    mail = MailReceiver().start()
    try:
        to = {"to": "ml@example.org, oncall@example.org", "from": "airloop@example.org"}
        body = notification(
            "blocked_partition", "ingest_data", "r1", "validate", {"error": "distance missing"}
        )
        deliver(Connection("smtp", "127.0.0.1", mail.port, extra_dejson=to), body)
    finally:
        mail.stop()
    (message,) = mail.messages
    assert message["Subject"] == body["text"] and "error: distance missing" in message["Subject"]
    assert message["From"] == "airloop@example.org"
    assert message["X-Envelope-To"] == "ml@example.org, oncall@example.org"
    assert '"event": "blocked_partition"' in message.get_content()


def test_an_smtp_connection_without_recipients_is_named() -> None:
    with pytest.raises(ValueError, match="needs a host and extra.to"):
        deliver(Connection("smtp", "127.0.0.1", 25), notification("failure", "d", "r", "t"))
