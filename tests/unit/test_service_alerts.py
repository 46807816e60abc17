"""Service-health alerts: the rules and the Prometheus configuration airloop renders, read
back from Prometheus's HTTP API, and the rules' meaning checked by Prometheus's own rule
engine (`promtool test rules`, on synthetic series) when `make prometheus` has unpacked it."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from airloop.monitoring.service_alerts import (
    ERROR_RATE,
    LATENCY,
    LOG_DROPPED,
    LOG_ERRORS,
    NO_TRAFFIC,
    TARGET_DOWN,
    PrometheusUnavailable,
    alert_rules,
    firing_alerts,
    merged_rules,
    prometheus_duration,
)
from airloop.ops import prometheus as prometheus_module
from airloop.ops.prometheus import PrometheusNotFound, prometheus_binary, scrape_config, write_config
from airloop.ops.stack import free_port

ALL_ALERTS = [ERROR_RATE, LATENCY, NO_TRAFFIC, TARGET_DOWN, LOG_ERRORS, LOG_DROPPED]


def _rules_by_name(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (group,) = rules["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def _promtool() -> Path:
    try:
        promtool = prometheus_binary().with_name("promtool")
    except PrometheusNotFound:
        pytest.skip("no Prometheus binary: run `make prometheus`")
    if not promtool.is_file():
        pytest.skip(f"no promtool next to the Prometheus binary ({promtool}): run `make prometheus`")
    return promtool


# --------------------------------------------------------------------------- the rules


def test_every_alert_names_its_model_and_severity() -> None:
    rules = _rules_by_name(alert_rules("flights", 12.5, 30))
    assert list(rules) == ALL_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["model"] == "flights", name
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"].startswith("flights"), name
        # Every expression selects this model's series and nothing else.
        assert 'model="flights"' in rule["expr"], name
    assert rules[ERROR_RATE]["labels"]["severity"] == "critical"
    assert rules[LATENCY]["labels"]["severity"] == "warning"


def test_the_error_rate_counts_5xx_of_the_predict_routes_only() -> None:
    expr = _rules_by_name(alert_rules("flights", 10, 30))[ERROR_RATE]["expr"]
    numerator, denominator = expr.split(" / ")
    assert 'http_response_code=~"5.."' in numerator
    assert "http_response_code" not in denominator
    for part in (numerator, denominator):
        assert "bentoml_service_request_total" in part
        assert 'endpoint=~"/predict|/predict_one"' in part
    assert expr.endswith("> 0.05")
    assert "4" not in numerator.split("http_response_code")[1][:8], "4xx are the client's, not errors"


def test_the_latency_threshold_is_twice_the_gates_number_or_the_floor() -> None:
    rule = _rules_by_name(alert_rules("weather", 12.5, 30))[LATENCY]
    assert rule["expr"].endswith(" * 1000 > 25")
    assert "airloop_request_latency_seconds_bucket" in rule["expr"]
    assert "histogram_quantile(0.95" in rule["expr"]
    assert "25 ms" in rule["annotations"]["summary"] and "12.5 ms" in rule["annotations"]["summary"]
    floored = _rules_by_name(alert_rules("weather", 0.4, 30, latency_floor_ms=50))[LATENCY]
    assert floored["expr"].endswith(" > 50")
    tripled = _rules_by_name(alert_rules("weather", 10, 30, latency_factor=3))[LATENCY]
    assert tripled["expr"].endswith(" > 30")


def test_windows_and_holds_are_configurable_down_to_seconds() -> None:
    rules = merged_rules(
        [alert_rules("flights", 10, 0.1, window_seconds=3, for_seconds=1, evaluation_seconds=1)]
    )
    (group,) = rules["groups"]
    assert group["interval"] == "1s"
    by_name = {rule["alert"]: rule for rule in group["rules"]}
    assert "[3s]" in by_name[ERROR_RATE]["expr"] and by_name[ERROR_RATE]["for"] == "1s"
    # No traffic for 6 s: a 3 s window of zero rate, held the other 3 s.
    assert "[3s]" in by_name[NO_TRAFFIC]["expr"] and by_name[NO_TRAFFIC]["for"] == "3s"
    assert "or vector(0)" in by_name[NO_TRAFFIC]["expr"]
    # The defaults are minutes.
    defaults = _rules_by_name(alert_rules("flights", 10, 60))
    assert "[5m]" in defaults[ERROR_RATE]["expr"] and defaults[ERROR_RATE]["for"] == "2m"
    assert "[5m]" in defaults[NO_TRAFFIC]["expr"] and defaults[NO_TRAFFIC]["for"] == "55m"
    assert "interval" not in alert_rules("flights", 10, 60)["groups"][0]


@pytest.mark.parametrize(
    ("seconds", "text"), [(300, "5m"), (120, "2m"), (90, "90s"), (3, "3s"), (0.5, "500ms"), (0, "0s")]
)
def test_durations_are_prometheus_durations(seconds: float, text: str) -> None:
    assert prometheus_duration(seconds) == text


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        alert_rules("flights", 0, 30)
    with pytest.raises(ValueError, match="between 0 and 1"):
        alert_rules("flights", 10, 30, max_error_rate=5)
    with pytest.raises(ValueError, match="not negative"):
        prometheus_duration(-1)
    with pytest.raises(ValueError, match="distinct"):
        merged_rules([alert_rules("flights", 10, 30), alert_rules("flights", 20, 30)])


def test_a_model_name_is_quoted_in_promql() -> None:
    rules = _rules_by_name(alert_rules('odd"name', 10, 30))
    assert 'model="odd\\"name"' in rules[TARGET_DOWN]["expr"]


# --------------------------------------------------------------------------- the configuration


def test_one_scrape_job_per_model_with_its_label() -> None:
    config = scrape_config(
        {"weather": "http://127.0.0.1:3001", "flights": "https://serving.example:443/models/flights/"},
        ["alert_rules.yml"],
    )
    assert config["global"] == {"scrape_interval": "5s", "scrape_timeout": "5s", "evaluation_interval": "5s"}
    assert config["rule_files"] == ["alert_rules.yml"]
    flights, weather = config["scrape_configs"]
    assert flights == {
        "job_name": "flights",
        "scheme": "https",
        "metrics_path": "/models/flights/metrics",
        "static_configs": [{"targets": ["serving.example:443"], "labels": {"model": "flights"}}],
    }
    assert weather["static_configs"] == [{"targets": ["127.0.0.1:3001"], "labels": {"model": "weather"}}]
    assert weather["metrics_path"] == "/metrics" and weather["scheme"] == "http"
    fast = scrape_config({"flights": "http://127.0.0.1:1"}, scrape_interval=0.5, evaluation_interval=1)
    assert fast["global"]["scrape_interval"] == "500ms" and fast["global"]["evaluation_interval"] == "1s"
    assert "rule_files" not in fast
    with pytest.raises(ValueError, match="flights"):
        scrape_config({"flights": "127.0.0.1:3000"})


def test_the_written_files_pass_promtool(tmp_path: Path) -> None:
    promtool = _promtool()
    rules = merged_rules(alert_rules(name, 10, 30) for name in ("flights", "weather"))
    targets = {"flights": "http://127.0.0.1:3000", "weather": "http://127.0.0.1:3001"}
    config = write_config(tmp_path, targets, rules)
    assert yaml.safe_load(config.read_text())["rule_files"] == ["alert_rules.yml"]
    checked = subprocess.run([str(promtool), "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "12 rules found" in checked.stdout + checked.stderr


def test_the_binary_is_found_where_make_puts_it_or_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(prometheus_module.PROMETHEUS_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    from airloop.ops import debian_tools

    monkeypatch.setattr(debian_tools, "PROJECT_ROOT", tmp_path)
    with pytest.raises(PrometheusNotFound, match="make prometheus"):
        prometheus_binary()
    unpacked = tmp_path / ".tools" / "prometheus" / "usr" / "bin" / "prometheus"
    unpacked.parent.mkdir(parents=True)
    unpacked.write_text("#!/bin/sh\n")
    unpacked.chmod(0o755)
    assert prometheus_binary() == unpacked
    named = tmp_path / "my-prometheus"
    named.write_text("#!/bin/sh\n")
    named.chmod(0o755)
    monkeypatch.setenv(prometheus_module.PROMETHEUS_ENV, str(named))
    assert prometheus_binary() == named
    monkeypatch.setenv(prometheus_module.PROMETHEUS_ENV, str(tmp_path / "missing"))
    with pytest.raises(PrometheusNotFound, match="AIRLOOP_PROMETHEUS"):
        prometheus_binary()


# --------------------------------------------------------------------------- firing_alerts


class _FakePrometheus:
    """Answers GET /api/v1/alerts with a canned body, as Prometheus's API would."""

    def __init__(self, body: bytes) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.body = body
        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _alert(name: str, model: str, state: str, value: str = "1e+00") -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "model": model, "severity": "critical"},
        "annotations": {"summary": f"{model}: {name}"},
        "state": state,
        "activeAt": "2026-12-01T10:00:00Z",
        "value": value,
    }


@pytest.fixture
def fake_prometheus() -> Iterator[_FakePrometheus]:
    alerts = [
        _alert(NO_TRAFFIC, "flights", "firing", "0e+00"),
        _alert(ERROR_RATE, "flights", "firing", "2.5e-01"),
        _alert(LATENCY, "flights", "pending"),
        _alert(ERROR_RATE, "weather", "firing"),
        _alert("SomethingElse", "flights-late-arrival", "firing"),
    ]
    server = _FakePrometheus(json.dumps({"status": "success", "data": {"alerts": alerts}}).encode())
    yield server
    server.stop()


def test_firing_alerts_are_this_models_firing_ones(fake_prometheus: _FakePrometheus) -> None:
    alerts = firing_alerts(fake_prometheus.url + "/", "flights")
    assert fake_prometheus.paths == ["/api/v1/alerts"]
    assert alerts == [
        {
            "name": ERROR_RATE,
            "model": "flights",
            "state": "firing",
            "summary": f"flights: {ERROR_RATE}",
            "activeAt": "2026-12-01T10:00:00Z",
            "value": 0.25,
        },
        {
            "name": NO_TRAFFIC,
            "model": "flights",
            "state": "firing",
            "summary": f"flights: {NO_TRAFFIC}",
            "activeAt": "2026-12-01T10:00:00Z",
            "value": 0.0,
        },
    ]
    assert [a["name"] for a in firing_alerts(fake_prometheus.url, "weather")] == [ERROR_RATE]
    assert firing_alerts(fake_prometheus.url, "nobody") == []


def test_an_unreachable_prometheus_is_a_clear_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusUnavailable, match=f"Prometheus at {url}/api/v1/alerts") as raised:
        firing_alerts(url, "flights", timeout=2)
    assert isinstance(raised.value, ConnectionError)
    assert raised.value.url == f"{url}/api/v1/alerts"


@pytest.mark.parametrize(
    "body", [b"<html>not the API</html>", b'{"status": "error", "error": "bad query"}'], ids=["html", "error"]
)
def test_an_answer_that_is_not_the_api_is_a_connection_error(body: bytes) -> None:
    server = _FakePrometheus(body)
    try:
        with pytest.raises(PrometheusUnavailable, match="did not answer"):
            firing_alerts(server.url, "flights")
    finally:
        server.stop()


# --------------------------------------------------------------------------- Prometheus's rule engine

# Synthetic series, one sample a minute: the rules as Prometheus evaluates them.
_EVERY_MINUTE = "1m"
_PREDICT_200 = 'bentoml_service_request_total{model="%s",endpoint="/predict",http_response_code="200"}'


def _promtool_test(tmp_path: Path, rules: dict[str, Any], series: list[dict[str, str]], alerts: list) -> str:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": _EVERY_MINUTE,
        "tests": [{"interval": _EVERY_MINUTE, "input_series": series, "alert_rule_test": alerts}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    done = subprocess.run(
        [str(_promtool()), "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _expect(name: str, at: str, model: str, severity: str, summary: str, **labels: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {
                "exp_labels": {"model": model, "severity": severity, **labels},
                "exp_annotations": {"summary": summary},
            }
        ],
    }


def test_5xx_above_5_percent_fire_and_400s_and_probes_do_not(tmp_path: Path) -> None:
    rules = merged_rules(alert_rules(name, 10, 30) for name in ("flights", "weather"))
    series = [
        # flights: 100 answered + 50 bad records (400) + 10 shed (503) a minute: 10/160 = 6.25%;
        # and a probe a second, which would dilute the 5xx share under 1% if it were counted.
        {"series": _PREDICT_200 % "flights", "values": "0+100x20"},
        {"series": _PREDICT_200.replace("200", "400") % "flights", "values": "0+50x20"},
        {"series": _PREDICT_200.replace("200", "503") % "flights", "values": "0+10x20"},
        {"series": _PREDICT_200.replace("/predict", "/readyz") % "flights", "values": "0+60x20"},
        # weather: 40% of its requests are 400s, none 5xx.
        {"series": _PREDICT_200 % "weather", "values": "0+60x20"},
        {"series": _PREDICT_200.replace("200", "400") % "weather", "values": "0+40x20"},
        {"series": _PREDICT_200.replace("200", "500") % "weather", "values": "0x20"},
    ]
    summary = "flights: 6.25% of requests failed with 5xx over 5m (threshold 5%)"
    _promtool_test(
        tmp_path,
        rules,
        series,
        [
            # Pending (held for 2m) at first: not firing yet.
            {"eval_time": "2m", "alertname": ERROR_RATE, "exp_alerts": []},
            _expect(ERROR_RATE, "10m", "flights", "critical", summary),
        ],
    )


def test_p95_latency_above_twice_the_gates_number_fires(tmp_path: Path) -> None:
    bucket = 'airloop_request_latency_seconds_bucket{model="%s",version="3",route="predict",le="%s"}'
    series = []
    for model in ("flights", "weather"):
        # Every request took 10-30 ms: p95 29 ms (interpolated in its bucket).
        series += [
            {"series": bucket % (model, "0.01"), "values": "0x20"},
            {"series": bucket % (model, "0.03"), "values": "0+100x20"},
            {"series": bucket % (model, "+Inf"), "values": "0+100x20"},
        ]
    # flights' gate measured 10 ms (alert above 20 ms); weather's 20 ms (above 40 ms).
    rules = merged_rules([alert_rules("flights", 10, 30), alert_rules("weather", 20, 30)])
    summary = "flights v3: p95 request latency 29.0 ms over 5m (threshold 20 ms: 2 x the gate's 10 ms)"
    _promtool_test(
        tmp_path, rules, series, [_expect(LATENCY, "10m", "flights", "warning", summary, version="3")]
    )


def test_no_traffic_fires_after_its_minutes_of_silence(tmp_path: Path) -> None:
    requests = 'airloop_requests_total{model="%s",version="3",route="predict"}'
    series = [
        # flights: 10 requests a minute for 10 minutes, then none; weather: steady traffic.
        {"series": requests % "flights", "values": "0+10x10 100x30"},
        {"series": requests % "weather", "values": "0+10x40"},
    ]
    rules = merged_rules(alert_rules(name, 10, 10) for name in ("flights", "weather"))
    summary = "flights: no prediction requests for 10 minutes"
    _promtool_test(
        tmp_path,
        rules,
        series,
        [
            {"eval_time": "8m", "alertname": NO_TRAFFIC, "exp_alerts": []},
            # Silent since 10m: the 5m window is empty from 15m, held 5m more.
            {"eval_time": "18m", "alertname": NO_TRAFFIC, "exp_alerts": []},
            _expect(NO_TRAFFIC, "21m", "flights", "warning", summary),
        ],
    )


def test_a_model_that_never_served_has_no_traffic_and_a_down_target(tmp_path: Path) -> None:
    up = 'up{model="weather",job="weather",instance="airloop-serving:3001"}'
    series = [{"series": up, "values": "0x20"}]
    rules = merged_rules([alert_rules("weather", 10, 4)])
    _promtool_test(
        tmp_path,
        rules,
        series,
        [
            _expect(NO_TRAFFIC, "5m", "weather", "warning", "weather: no prediction requests for 4 minutes"),
            _expect(
                TARGET_DOWN,
                "5m",
                "weather",
                "critical",
                "weather: Prometheus cannot scrape the model's server (airloop-serving:3001)",
                job="weather",
                instance="airloop-serving:3001",
            ),
        ],
    )


def test_prediction_log_errors_and_drops_fire_when_they_increase(tmp_path: Path) -> None:
    errors = 'airloop_prediction_log_errors_total{model="flights",version="3"}'
    dropped = 'airloop_prediction_log_dropped_total{model="flights",version="3"}'
    series = [
        {"series": errors, "values": "0x10 4x10"},
        {"series": dropped, "values": "0x20"},
    ]
    rules = merged_rules([alert_rules("flights", 10, 30)])
    _promtool_test(
        tmp_path,
        rules,
        series,
        [
            {"eval_time": "9m", "alertname": LOG_ERRORS, "exp_alerts": []},
            _expect(
                LOG_ERRORS, "13m", "flights", "critical", "flights: 4 prediction log writes failed over 5m"
            ),
            # Five minutes after the last failure, the alert resolves.
            {"eval_time": "19m", "alertname": LOG_ERRORS, "exp_alerts": []},
            # Dropped records stayed at zero.
            {"eval_time": "13m", "alertname": LOG_DROPPED, "exp_alerts": []},
        ],
    )


def test_a_model_without_a_measured_latency_gets_the_floor_as_its_threshold(config) -> None:
    from airloop.production.service_health import model_rules

    rules = [r for group in model_rules(config, None)["groups"] for r in group["rules"]]
    latency = next(r for r in rules if r["alert"] == LATENCY)
    floor = config.serving.alerts.min_latency_ms
    assert latency["expr"].endswith(f" > {floor:g}"), latency["expr"]
