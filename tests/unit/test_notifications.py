"""Notifications: the body each event sends, posted for real to a local HTTP receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airloop.notifications import notification, post, webhook_url
from tests.webhook import Receiver


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
