"""The served models' health: each model's alert rules, where the Prometheus evaluating them
is, and which of its firing alerts nobody has been told about yet.

`airloop serve` runs a Prometheus beside the models it serves (compose runs its own) and
writes its URL to `<state>/serving/prometheus.json`; $AIRLOOP_PROMETHEUS_URL wins. Each
model's `watch_service` DAG reads that model's firing alerts and sends the new ones (an
alert is new until sent, per firing: it fires again after it resolved) to airloop_notify.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from airloop.config import AirloopConfig
from airloop.paths import StatePaths

PROMETHEUS_URL_ENV = "AIRLOOP_PROMETHEUS_URL"


def model_rules(config: AirloopConfig, gate_latency_ms: float | None) -> dict[str, Any]:
    """The model's alert rules (`airloop.monitoring.service_alerts.alert_rules`) from its
    config and the latency the gate measured for the champion (None: the floor alone)."""
    from airloop.monitoring.service_alerts import alert_rules

    alerts = config.serving.alerts
    # Nothing measured (no champion yet, or a model from before the tag): the floor alone.
    measured = gate_latency_ms or max(alerts.min_latency_ms, 1.0) / alerts.max_latency_factor
    return alert_rules(
        config.name,
        measured,
        alerts.no_traffic_minutes,
        max_error_rate=alerts.max_error_rate,
        latency_factor=alerts.max_latency_factor,
        latency_floor_ms=alerts.min_latency_ms,
    )


def prometheus_file(paths: StatePaths) -> Path:
    return paths.home / "serving" / "prometheus.json"


def record_prometheus(paths: StatePaths, url: str | None) -> None:
    """Say where the serving Prometheus is (None: it stopped)."""
    path = prometheus_file(paths)
    if url is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}")
    scratch.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    scratch.replace(path)


def prometheus_url(paths: StatePaths) -> str | None:
    """The Prometheus watching the served models: $AIRLOOP_PROMETHEUS_URL, else the one
    `airloop serve` recorded; None when there is none."""
    if os.environ.get(PROMETHEUS_URL_ENV):
        return os.environ[PROMETHEUS_URL_ENV]
    path = prometheus_file(paths)
    return json.loads(path.read_text())["url"] if path.exists() else None


def alerts_to_send(config: AirloopConfig, paths: StatePaths, url: str) -> list[dict[str, Any]]:
    """The model's firing alerts not yet sent (each firing once, by name and start). It
    marks none sent (`mark_sent` does, once they were): an alert whose notification failed
    is returned again next time. It forgets the firings that resolved, so an alert that
    fires again is new. Raises PrometheusUnavailable when Prometheus does not answer."""
    from airloop.monitoring.service_alerts import firing_alerts

    firing = firing_alerts(url, config.name)
    sent = _sent(paths)
    still = sent & {_key(alert) for alert in firing}
    if still != sent:
        _write_sent(paths, still)
    return [alert for alert in firing if _key(alert) not in sent]


def mark_sent(paths: StatePaths, alerts: list[dict[str, Any]]) -> None:
    """Record `alerts` (as `alerts_to_send` returned them) as sent: call it after their
    notification went out, never before."""
    sent = _sent(paths)
    done = sent | {_key(alert) for alert in alerts}
    if done != sent:
        _write_sent(paths, done)


def _ledger(paths: StatePaths) -> Path:
    return paths.report_dir("service_alerts") / "sent.json"


def _sent(paths: StatePaths) -> set[str]:
    ledger = _ledger(paths)
    return set(json.loads(ledger.read_text())) if ledger.exists() else set()


def _write_sent(paths: StatePaths, keys: set[str]) -> None:
    ledger = _ledger(paths)
    scratch = ledger.with_name(f".{ledger.name}")
    scratch.write_text(json.dumps(sorted(keys)))
    scratch.replace(ledger)


def _key(alert: dict[str, Any]) -> str:
    return f"{alert['name']}@{alert.get('activeAt')}"
