"""Service-health alerts of a served model: the Prometheus alert rules, and the alerts firing.

What the rules watch is what each model's bento exposes on /metrics (scraped by the job
`airloop.ops.prometheus.scrape_config` writes, which gives every series of a model's
target the label `model`, the model's config name):

- BentoML's own HTTP metrics, `bentoml_service_request_total` and
  `bentoml_service_request_duration_seconds` {endpoint, service_name, service_version,
  http_response_code, runner_name}: every request but /metrics, probes included;
- airloop's, from the service: `airloop_requests_total{model,version,route,code}`,
  `airloop_request_latency_seconds{model,version,route}` (a histogram),
  `airloop_predictions_total{model,version,prediction}`,
  `airloop_prediction_log_errors_total{model,version}` and
  `airloop_prediction_log_dropped_total{model,version}`. Their `model` (the registered
  name) is kept as `exported_model`: the target's label wins.

Every alert carries the labels `model` and `severity` ("critical" or "warning") and an
annotation `summary` that names the model and the number that crossed its threshold.
`firing_alerts` reads them back from Prometheus's HTTP API; nothing here needs Airflow.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

# The routes that score records; BentoML also counts /readyz and /health probes.
PREDICT_ENDPOINTS = ("/predict", "/predict_one")

ERROR_RATE = "ServingErrorRateHigh"
LATENCY = "ServingLatencyHigh"
NO_TRAFFIC = "ServingNoTraffic"
TARGET_DOWN = "ServingTargetDown"
LOG_ERRORS = "PredictionLogWriteErrors"
LOG_DROPPED = "PredictionLogRecordsDropped"


class PrometheusUnavailable(ConnectionError):
    """Prometheus did not answer (or not with its API's JSON) at `url`."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"Prometheus at {url} did not answer: {reason}")
        self.url = url


def alert_rules(
    model: str,
    version_latency_ms: float,
    no_traffic_minutes: float,
    *,
    max_error_rate: float = 0.05,
    latency_factor: float = 2.0,
    latency_floor_ms: float = 0.0,
    window_seconds: float = 300,
    for_seconds: float = 120,
    evaluation_seconds: float | None = None,
) -> dict[str, Any]:
    """The Prometheus rules file (as a dict; `yaml.safe_dump` it) of one model's alerts.

    - ServingErrorRateHigh (critical): more than `max_error_rate` of the requests to the
      predict routes answered 5xx over `window_seconds`.
    - ServingLatencyHigh (warning): p95 of airloop_request_latency_seconds over
      `window_seconds` above `latency_factor` x `version_latency_ms` (the p95 the gate
      measured for the champion), or `latency_floor_ms` if that is higher.
    - ServingNoTraffic (warning): no predict request for `no_traffic_minutes` (also when the
      model's series are gone: a server that is down serves no traffic either).
    - ServingTargetDown (critical): Prometheus cannot scrape the model's server.
    - PredictionLogWriteErrors (critical) / PredictionLogRecordsDropped (warning): a write to
      the prediction log failed / records were dropped, within `window_seconds`.

    Each holds for `for_seconds` before it fires (no-traffic: for its minutes; the log alerts
    at once). `evaluation_seconds`: the group's evaluation interval (None: the
    server's global one). Small windows are for tests; Prometheus needs two scrapes inside a
    window to compute a rate.
    """
    if version_latency_ms <= 0 or no_traffic_minutes <= 0 or window_seconds <= 0:
        raise ValueError("version_latency_ms, no_traffic_minutes and window_seconds must be positive")
    if not 0 < max_error_rate < 1:
        raise ValueError(f"max_error_rate must be between 0 and 1, not {max_error_rate}")
    selector = f"model={_quoted(model)}"
    predict = f'{selector},endpoint=~"{"|".join(PREDICT_ENDPOINTS)}"'
    window = prometheus_duration(window_seconds)
    held = prometheus_duration(for_seconds)
    threshold_ms = max(latency_factor * version_latency_ms, latency_floor_ms)
    quiet_window = min(window_seconds, no_traffic_minutes * 60 / 2)

    def rule(name: str, expr: str, severity: str, summary: str, hold: str = held) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": hold,
            "labels": {"model": model, "severity": severity},
            "annotations": {"summary": summary},
        }

    rules = [
        # 5xx only: a 400 is the client's bad record (the service answered it correctly);
        # a 503 (batching shed load), 504 (timed out) or 500 is the service failing.
        rule(
            ERROR_RATE,
            f'sum(rate(bentoml_service_request_total{{{predict},http_response_code=~"5.."}}[{window}]))'
            f" / sum(rate(bentoml_service_request_total{{{predict}}}[{window}])) > {max_error_rate:g}",
            "critical",
            f"{model}: {{{{ $value | humanizePercentage }}}} of requests failed with 5xx over {window}"
            f" (threshold {max_error_rate:.0%})",
        ),
        rule(
            LATENCY,
            "histogram_quantile(0.95, sum by (le, version) "
            f"(rate(airloop_request_latency_seconds_bucket{{{selector}}}[{window}]))) * 1000"
            f" > {threshold_ms:g}",
            "warning",
            f'{model} v{{{{ $labels.version }}}}: p95 request latency {{{{ $value | printf "%.1f" }}}} ms'
            f" over {window} (threshold {threshold_ms:g} ms: {latency_factor:g} x the gate's"
            f" {version_latency_ms:g} ms)",
        ),
        # Zero rate over a window, held for the rest of the minutes. `or vector(0)`: a model
        # whose counters never appeared (or vanished) has no traffic either. Held for at least
        # half the minutes: a rate needs two scrapes, so it is empty just after a start.
        rule(
            NO_TRAFFIC,
            f"(sum(rate(airloop_requests_total{{{selector}}}[{prometheus_duration(quiet_window)}]))"
            " or vector(0)) == 0",
            "warning",
            f"{model}: no prediction requests for {no_traffic_minutes:g} minutes",
            hold=prometheus_duration(no_traffic_minutes * 60 - quiet_window),
        ),
        rule(
            TARGET_DOWN,
            f"up{{{selector}}} == 0",
            "critical",
            f"{model}: Prometheus cannot scrape the model's server ({{{{ $labels.instance }}}})",
        ),
        rule(
            LOG_ERRORS,
            f"sum(increase(airloop_prediction_log_errors_total{{{selector}}}[{window}])) > 0",
            "critical",
            f'{model}: {{{{ $value | printf "%.0f" }}}} prediction log writes failed over {window}',
            hold="0s",
        ),
        rule(
            LOG_DROPPED,
            f"sum(increase(airloop_prediction_log_dropped_total{{{selector}}}[{window}])) > 0",
            "warning",
            f'{model}: {{{{ $value | printf "%.0f" }}}} prediction log records dropped over {window}'
            " (its buffer was full)",
            hold="0s",
        ),
    ]
    group: dict[str, Any] = {"name": f"airloop-serving-{model}"}
    if evaluation_seconds is not None:
        group["interval"] = prometheus_duration(evaluation_seconds)
    return {"groups": [{**group, "rules": rules}]}


def merged_rules(rule_files: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One rules file holding the groups of several (one per model, from `alert_rules`)."""
    groups = [group for rules in rule_files for group in rules["groups"]]
    names = [group["name"] for group in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"rule groups must have distinct names: {names}")
    return {"groups": groups}


def firing_alerts(prometheus_url: str, model: str, timeout: float = 10) -> list[dict[str, Any]]:
    """The alerts of `model` firing now, from `GET /api/v1/alerts`: per alert {"name",
    "model", "state", "summary", "activeAt", "value"} (value: the number that crossed its
    threshold), ordered by name. Pending alerts (still within their `for:`) and other
    models' alerts are left out. Raises PrometheusUnavailable when Prometheus does not answer.
    """
    body = prometheus_api(f"{prometheus_url.rstrip('/')}/api/v1/alerts", timeout)
    alerts = [
        {
            "name": alert["labels"].get("alertname"),
            "model": alert["labels"].get("model"),
            "state": alert["state"],
            "summary": alert.get("annotations", {}).get("summary", ""),
            "activeAt": alert.get("activeAt"),
            "value": _number(alert.get("value")),
        }
        for alert in body["data"]["alerts"]
        if alert.get("state") == "firing" and alert["labels"].get("model") == model
    ]
    return sorted(alerts, key=lambda alert: (str(alert["name"]), str(alert["activeAt"])))


def prometheus_api(url: str, timeout: float = 10) -> dict[str, Any]:
    """GET one of Prometheus's API URLs; its JSON body. PrometheusUnavailable when it does
    not answer, or answers anything but success."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        # URLError (refused, unknown host), HTTPError (a 4xx/5xx), timeouts, not JSON.
        raise PrometheusUnavailable(url, getattr(error, "reason", error)) from error
    if body.get("status") != "success":
        raise PrometheusUnavailable(url, body.get("error") or body)
    return dict(body)


def _quoted(value: str) -> str:
    """A PromQL string literal (JSON's escapes are PromQL's)."""
    return json.dumps(value)


def prometheus_duration(seconds: float) -> str:
    """A Prometheus duration: whole minutes as "5m", else seconds or milliseconds."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite and not negative, not {seconds}")
    millis = round(seconds * 1000)
    if millis % 60_000 == 0 and millis:
        return f"{millis // 60_000}m"
    if millis % 1000 == 0:
        return f"{millis // 1000}s"
    return f"{millis}ms"


def _number(value: Any) -> float | None:
    """Prometheus sends sample values as text ("1e+00", "NaN")."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
