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


def test_watch_service_sends_a_firing_alert_once_and_finds_prometheus_where_serve_recorded_it(
    tmp_path: Path, exporters: dict[str, ModelExporter], config
) -> None:
    from airloop.paths import StatePaths
    from airloop.production.service_health import alerts_to_send, prometheus_url, record_prometheus

    paths = StatePaths(tmp_path / "state")
    with _fast_prometheus(tmp_path, exporters, no_traffic_minutes=5) as url:
        record_prometheus(paths, url)
        assert prometheus_url(paths) == url
        sent = _wait_for(lambda: alerts_to_send(config, paths, url), lambda a: ERROR_RATE in _names(a))
        assert _names(sent) == {ERROR_RATE} and sent[0]["model"] == "flights"
        assert alerts_to_send(config, paths, url) == [], "a firing alert is sent once"
    record_prometheus(paths, None)
    assert prometheus_url(paths) is None
