"""Service-health alerts end to end: the real Prometheus binary (`make prometheus`) on a
loopback port scrapes two models' exporters (prometheus_client's own HTTP server, with the
metrics a served bento exposes), evaluates airloop's rules, and `firing_alerts` reads what
fires. Windows are seconds, so the whole test takes about 15 s."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from airloop.monitoring.service_alerts import (
    ERROR_RATE,
    LATENCY,
    NO_TRAFFIC,
    PrometheusUnavailable,
    alert_rules,
    firing_alerts,
    merged_rules,
)
from airloop.ops.prometheus import PrometheusNotFound, prometheus_binary, running_prometheus
from airloop.ops.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "airloop-serving.json"


@pytest.fixture(autouse=True)
def _needs_prometheus() -> None:
    try:
        prometheus_binary()
    except PrometheusNotFound:
        pytest.skip("no Prometheus binary: run `make prometheus`")


class ModelExporter:
    """One model's server as Prometheus sees it: BentoML's and airloop's metrics on /metrics
    (prometheus_client's exporter, a registry of its own), and traffic while `serving`."""

    def __init__(self, registered_name: str, server_error_every: int = 0, client_error_every: int = 0):
        from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

        self.registry = registry = CollectorRegistry()
        served = ["model", "version"]
        self.bentoml_requests = Counter(
            "bentoml_service_request_total",
            "Total number of HTTP requests",
            ["endpoint", "service_name", "service_version", "http_response_code", "runner_name"],
            registry=registry,
        )
        self.requests = Counter(
            "airloop_requests_total", "requests", [*served, "route", "code"], registry=registry
        )
        self.latency = Histogram(
            "airloop_request_latency_seconds", "latency", [*served, "route"], registry=registry
        )
        self.predictions = Counter(
            "airloop_predictions_total", "predictions", [*served, "prediction"], registry=registry
        )
        self.log_errors = Counter(
            "airloop_prediction_log_errors_total", "log errors", served, registry=registry
        )
        self.registered_name = registered_name
        self.server_error_every = server_error_every
        self.client_error_every = client_error_every
        self.port = free_port()
        self.server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self.url = f"http://127.0.0.1:{self.port}"
        self.serving = threading.Event()
        self.serving.set()
        self.sent = 0

    def request(self) -> None:
        """One /predict request, answered 503, 400 or 200 as this exporter's pattern says."""
        self.sent += 1
        if self.server_error_every and self.sent % self.server_error_every == 0:
            code = "503"
        elif self.client_error_every and self.sent % self.client_error_every == 0:
            code = "400"
        else:
            code = "200"
        self.bentoml_requests.labels("/predict", "tabular_model", "abc123", code, "TabularModel").inc()
        # A probe, as the serving container's healthcheck sends: never a predict request.
        self.bentoml_requests.labels("/readyz", "tabular_model", "abc123", "200", "TabularModel").inc()
        self.requests.labels(self.registered_name, "3", "predict", code).inc()
        if code == "200":
            self.latency.labels(self.registered_name, "3", "predict").observe(0.002)
            self.predictions.labels(self.registered_name, "3", "1").inc()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporters() -> Iterator[dict[str, ModelExporter]]:
    """flights: a quarter of its requests are 503s; weather: healthy, a fifth are 400s."""
    models = {
        "flights": ModelExporter("flights-late-arrival", server_error_every=4),
        "weather": ModelExporter("weather-rain", client_error_every=5),
    }
    stopped = threading.Event()

    def traffic() -> None:
        while not stopped.wait(0.05):
            for model in models.values():
                if model.serving.is_set():
                    model.request()

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    yield models
    stopped.set()
    thread.join()
    for model in models.values():
        model.stop()


Alerts = list[dict[str, Any]]


def _wait_for(read: Callable[[], Alerts], done: Callable[[Alerts], bool], timeout: float = 20) -> Alerts:
    deadline = time.monotonic() + timeout
    while True:
        alerts = read()
        if done(alerts) or time.monotonic() > deadline:
            return alerts
        time.sleep(0.25)


def _names(alerts: list[dict[str, Any]]) -> set[str]:
    return {alert["name"] for alert in alerts}


def _query(url: str, promql: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}") as answer:
        return json.load(answer)


@contextmanager
def _fast_prometheus(
    tmp_path: Path, exporters: dict[str, ModelExporter], no_traffic_minutes: float
) -> Iterator[str]:
    """A real Prometheus over the exporters with every model's rules in seconds, not minutes:
    rates over 3 s (six scrapes), held 1 s, evaluated every second."""
    fast = {"window_seconds": 3, "for_seconds": 1, "evaluation_seconds": 1}
    rules = merged_rules(alert_rules(model, 10, no_traffic_minutes, **fast) for model in exporters)
    targets = {model: exporter.url for model, exporter in exporters.items()}
    with running_prometheus(
        targets, tmp_path / "prometheus", rules=rules, scrape_interval=0.5, evaluation_interval=1
    ) as url:
        yield url


def test_alerts_fire_for_the_right_model(tmp_path: Path, exporters: dict[str, ModelExporter]) -> None:
    # No traffic for 0.1 minutes (6 s) fires.
    with _fast_prometheus(tmp_path, exporters, no_traffic_minutes=0.1) as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)

        # (a) 5xx counted: flights' error rate (25%) fires.
        flights = _wait_for(lambda: firing_alerts(url, "flights"), lambda a: ERROR_RATE in _names(a))
        assert ERROR_RATE in _names(flights), flights
        (error_rate,) = [alert for alert in flights if alert["name"] == ERROR_RATE]
        assert error_rate["model"] == "flights" and error_rate["state"] == "firing"
        assert error_rate["value"] == pytest.approx(0.25, abs=0.05)
        summary = re.fullmatch(
            r"flights: ([\d.]+)% of requests failed with 5xx over 3s \(threshold 5%\)", error_rate["summary"]
        )
        assert summary and float(summary[1]) == pytest.approx(25, abs=5), error_rate["summary"]
        assert error_rate["activeAt"]
        # Traffic flows and latency is 2 ms: nothing else of flights fires.
        assert NO_TRAFFIC not in _names(flights) and LATENCY not in _names(flights), flights

        # (c) Only this model's: weather's 400s are its clients' errors, not an error rate.
        assert firing_alerts(url, "weather") == []
        assert firing_alerts(url, "flights-late-arrival") == []
        # The target's `model` wins over the one the server exposes, which is kept.
        (series,) = _query(url, 'airloop_requests_total{model="flights",code="200"}')["data"]["result"]
        assert series["metric"]["exported_model"] == "flights-late-arrival"
        assert series["metric"]["job"] == "flights"

        # (b) flights' requests stop: no traffic fires (after 3 s of zero rate, held 3 s more).
        exporters["flights"].serving.clear()
        stopped = time.monotonic()
        flights = _wait_for(lambda: firing_alerts(url, "flights"), lambda a: NO_TRAFFIC in _names(a))
        assert NO_TRAFFIC in _names(flights), flights
        assert time.monotonic() - stopped >= 4.5, "no traffic fired before its 6 s of silence"
        (no_traffic,) = [alert for alert in flights if alert["name"] == NO_TRAFFIC]
        assert no_traffic["summary"] == "flights: no prediction requests for 0.1 minutes"
        assert no_traffic["value"] == 0
        # The error rate resolves with the traffic gone (no requests: no share of failures).
        flights = _wait_for(lambda: firing_alerts(url, "flights"), lambda a: ERROR_RATE not in _names(a))
        assert ERROR_RATE not in _names(flights), flights
        # weather still serves: nothing of weather fires.
        assert firing_alerts(url, "weather") == []

    # Stopped with the block: asking it is a clear connection error, not a urllib traceback.
    with pytest.raises(PrometheusUnavailable, match=re.escape(url)):
        firing_alerts(url, "flights", timeout=2)


def test_the_dashboards_queries_are_promql_this_prometheus_runs(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(queries) >= 5
    with running_prometheus({}, tmp_path / "prometheus", scrape_interval=1) as url:
        for query in queries:
            promql = query.replace("$__rate_interval", "1m").replace("$model", ".*")
            answer = _query(url, promql)
            assert answer["status"] == "success", (query, answer)


def test_new_rules_are_taken_up_on_reload_and_bad_ones_refused(tmp_path: Path) -> None:
    from airloop.ops.prometheus import reload_prometheus, write_config

    folder = tmp_path / "prometheus"
    with running_prometheus({}, folder, scrape_interval=1) as url:
        assert _get(url, "/api/v1/rules")["data"]["groups"] == []
        # A new champion's latency: its rules rendered again, and Prometheus told to reread.
        write_config(folder, {}, merged_rules([alert_rules("flights", 12, 30)]), scrape_interval=1)
        reload_prometheus(url)
        (group,) = _get(url, "/api/v1/rules")["data"]["groups"]
        assert group["name"] == "airloop-serving-flights"
        latency = [rule for rule in group["rules"] if rule["name"] == LATENCY]
        assert latency and latency[0]["query"].endswith("> 24")
        # A broken rules file is refused, and the rules already loaded stay.
        (folder / "alert_rules.yml").write_text("groups: [{name: x, rules: [{alert: A, expr: 'sum(('}]}]\n")
        with pytest.raises(RuntimeError, match="rejected its configuration"):
            reload_prometheus(url)
        kept = _get(url, "/api/v1/rules")["data"]["groups"]
        assert [g["name"] for g in kept] == ["airloop-serving-flights"]


def _get(url: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}{path}") as answer:
        return json.load(answer)


def test_an_alert_whose_notification_failed_is_sent_again_on_the_next_run(
    tmp_path: Path, config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """watch_service's order: read the new alerts, notify, then mark them sent; a notification
    that raised marks nothing, and an alert that resolved and fires again is new."""
    from airloop.monitoring import service_alerts
    from airloop.paths import StatePaths
    from airloop.production.service_health import alerts_to_send, mark_sent

    paths = StatePaths(tmp_path / "state")
    alert = {"name": ERROR_RATE, "model": "flights", "state": "firing", "summary": "5xx", "value": 0.25}
    firing = [{**alert, "activeAt": "2026-12-01T10:00:00Z"}]
    monkeypatch.setattr(service_alerts, "firing_alerts", lambda url, model: list(firing))

    def watch(notify: Callable[[Alerts], None]) -> Alerts:
        alerts = alerts_to_send(config, paths, "http://prometheus.invalid")
        if alerts:
            notify(alerts)
            mark_sent(paths, alerts)
        return alerts

    def unreachable(alerts: Alerts) -> None:
        raise ConnectionError("webhook down")

    notified: list[Alerts] = []
    with pytest.raises(ConnectionError):
        watch(unreachable)
    assert watch(notified.append) == firing, "the failed notification is sent again"
    assert notified == [firing]
    assert watch(notified.append) == [] and len(notified) == 1, "and once only"
    firing.clear()  # resolved ...
    assert watch(notified.append) == []
    firing.append({**alert, "activeAt": "2026-12-01T11:00:00Z"})  # ... and firing again
    assert watch(notified.append) == firing and len(notified) == 2


def test_watch_service_sends_a_firing_alert_once_and_finds_prometheus_where_serve_recorded_it(
    tmp_path: Path, exporters: dict[str, ModelExporter], config
) -> None:
    from airloop.paths import StatePaths
    from airloop.production.service_health import alerts_to_send, mark_sent, prometheus_url, record_prometheus

    paths = StatePaths(tmp_path / "state")
    with _fast_prometheus(tmp_path, exporters, no_traffic_minutes=5) as url:
        record_prometheus(paths, url)
        assert prometheus_url(paths) == url
        sent = _wait_for(lambda: alerts_to_send(config, paths, url), lambda a: ERROR_RATE in _names(a))
        assert _names(sent) == {ERROR_RATE} and sent[0]["model"] == "flights"
        assert alerts_to_send(config, paths, url) == sent, "not sent until marked sent"
        mark_sent(paths, sent)
        assert alerts_to_send(config, paths, url) == [], "a firing alert is sent once"
    record_prometheus(paths, None)
    assert prometheus_url(paths) is None


def test_serve_with_an_external_prometheus_writes_each_models_rules_and_has_it_reload(
    tmp_path: Path, config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Compose's path: $AIRLOOP_PROMETHEUS_URL set, `airloop serve` starts no Prometheus of its
    own; it writes every model's rules (latency from its gate's number) to serving/alert_rules.yml
    and has that Prometheus reload them, again when a champion changes."""
    from airloop.config import load_config
    from airloop.packaging.champion_server import ModelFleet, _watched, alert_rules_file
    from airloop.paths import StatePaths
    from airloop.production.service_health import PROMETHEUS_URL_ENV, prometheus_file

    paths = StatePaths(tmp_path / "state")
    weather = load_config(ROOT / "configs" / "weather.yaml")
    # _watched reads a fleet's config and gate latency only: no router, no servers.
    fleets = [
        ModelFleet(model, paths.for_model(model.name), None, 0, gate_latency_ms=latency)  # type: ignore[arg-type]
        for model, latency in ((config, 12.0), (weather, 30.0))
    ]
    rules_file = alert_rules_file(paths)

    def latency_thresholds(url: str) -> dict[str, str]:
        groups = _get(url, "/api/v1/rules")["data"]["groups"]
        return {
            g["name"]: r["query"].rsplit(" > ", 1)[1]
            for g in groups
            for r in g["rules"]
            if r["name"] == LATENCY
        }

    # A Prometheus reading its rules where compose's does: <state>/serving/alert_rules.yml.
    with running_prometheus({}, rules_file.parent, rules={"groups": []}, scrape_interval=1) as url:
        assert latency_thresholds(url) == {}
        monkeypatch.setenv(PROMETHEUS_URL_ENV, url)
        with _watched(fleets, paths) as rewrite:
            assert rewrite is not None
            assert latency_thresholds(url) == {
                "airloop-serving-flights": "24",
                "airloop-serving-weather": "60",
            }
            assert not prometheus_file(paths).exists() and not (rules_file.parent / "prometheus").exists()
            # A new champion of weather, measured at 40 ms by its gate.
            fleets[1].gate_latency_ms = 40.0
            rewrite(fleets)
            assert latency_thresholds(url)["airloop-serving-weather"] == "80"

    # Prometheus is gone: the rules are still written, the failed reload is a warning.
    fleets[0].gate_latency_ms = 15.0
    with caplog.at_level("WARNING"), _watched(fleets, paths) as rewrite:
        assert rewrite is not None
    assert "not loaded yet" in caplog.text and url in caplog.text
    flights = yaml.safe_load(rules_file.read_text())["groups"][0]
    assert flights["name"] == "airloop-serving-flights"
    assert [r["expr"] for r in flights["rules"] if r["alert"] == LATENCY][0].endswith("> 30")
