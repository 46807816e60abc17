"""A real Prometheus on loopback that scrapes the models' servers and evaluates their alerts.

The binary is Debian's package unpacked without root by `make prometheus` (into
.tools/prometheus/ under the checkout), $AIRLOOP_PROMETHEUS, or a `prometheus` on PATH.
`running_prometheus` starts it for as long as a block runs, on a free loopback port, with
its own configuration and storage under a folder the caller gives, in its own process
group, stopped by its pid when the block ends (as `airloop.packaging.serving.served_bento`
does for a bento):

    targets = {"flights": "http://127.0.0.1:3000", "weather": "http://127.0.0.1:3001"}
    rules = merged_rules(alert_rules(name, latency_ms[name], 30) for name in targets)
    with running_prometheus(targets, paths.home / "prometheus", rules=rules) as url:
        firing_alerts(url, "flights")
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

from airloop.monitoring.service_alerts import PrometheusUnavailable, prometheus_api, prometheus_duration
from airloop.ops.debian_tools import ToolNotFound, tool_binary
from airloop.ops.stack import free_port

PROMETHEUS_ENV = "AIRLOOP_PROMETHEUS"
# Where `make prometheus` unpacks Debian's package.
TOOLS_BINARY = Path(".tools/prometheus/usr/bin/prometheus")
CONFIG_FILE = "prometheus.yml"
RULES_FILE = "alert_rules.yml"


class PrometheusNotFound(ToolNotFound):
    """No Prometheus binary: $AIRLOOP_PROMETHEUS, the project's .tools/ or PATH."""


def prometheus_binary() -> Path:
    """$AIRLOOP_PROMETHEUS, else `make prometheus`'s binary in the checkout, else
    `prometheus` on PATH; PrometheusNotFound (naming `make prometheus`) if none is there."""
    try:
        return tool_binary("prometheus", PROMETHEUS_ENV, TOOLS_BINARY)
    except ToolNotFound as missing:
        raise PrometheusNotFound(str(missing)) from None


def scrape_config(
    targets: Mapping[str, str | Sequence[str]],
    rule_files: list[str] | None = None,
    scrape_interval: float = 5,
    evaluation_interval: float | None = None,
) -> dict[str, Any]:
    """The prometheus.yml (as a dict) scraping `targets`, {model: base URL of its server, or
    the URLs of its servers}: one job per model, named after it, whose targets carry the
    label `model`.

    The target's `model` wins over a `model` label the server exposes (honor_labels false,
    Prometheus's default; the exposed value is kept as `exported_model`), so every series of
    a model's servers, BentoML's and airloop's, is selected by the same `model="<name>"`.
    `evaluation_interval` (default: the scrape interval) is how often rules are evaluated.
    """
    jobs = []
    for model, given in sorted(targets.items()):
        urls = [_base_url(model, base) for base in ([given] if isinstance(given, str) else given)]
        scheme, path = (urls[0].scheme, urls[0].path.rstrip("/")) if urls else ("http", "")
        jobs.append(
            {
                "job_name": model,
                "scheme": scheme,
                "metrics_path": f"{path}/metrics",
                "static_configs": [{"targets": [u.netloc for u in urls], "labels": {"model": model}}],
            }
        )
    interval = prometheus_duration(scrape_interval)
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": interval,
            # A scrape may not take longer than the interval between scrapes.
            "scrape_timeout": interval,
            "evaluation_interval": prometheus_duration(
                evaluation_interval if evaluation_interval is not None else scrape_interval
            ),
        },
        "scrape_configs": jobs,
    }
    if rule_files:
        config["rule_files"] = list(rule_files)
    return config


def _base_url(model: str, base: str) -> urllib.parse.SplitResult:
    url = urllib.parse.urlsplit(base)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"{model}: {base!r} is not an http(s) base URL")
    return url


def write_config(
    folder: Path,
    targets: Mapping[str, str | Sequence[str]],
    rules: dict[str, Any] | None = None,
    scrape_interval: float = 5,
    evaluation_interval: float | None = None,
) -> Path:
    """Write prometheus.yml (and the rules file, if `rules`) into `folder`; return its path.
    A running Prometheus reads them again on `reload_prometheus`."""
    folder.mkdir(parents=True, exist_ok=True)
    rule_files = None
    if rules is not None:
        write_rules(folder / RULES_FILE, rules)
        rule_files = [RULES_FILE]  # relative to the configuration file
    config = folder / CONFIG_FILE
    settings = scrape_config(targets, rule_files, scrape_interval, evaluation_interval)
    config.write_text(yaml.safe_dump(settings, sort_keys=False, width=1000))
    return config


def write_rules(path: Path, rules: dict[str, Any]) -> Path:
    """Write `rules` (`alert_rules`' dicts, merged) to `path` as a Prometheus rules file,
    atomically (a scratch file renamed over it): a Prometheus reloading at any moment reads
    the old rules or the new, never half of them. Returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}")
    scratch.write_text(yaml.safe_dump(rules, sort_keys=False, width=1000))
    scratch.replace(path)
    return path


@contextmanager
def running_prometheus(
    targets: Mapping[str, str | Sequence[str]],
    folder: Path,
    rules: dict[str, Any] | None = None,
    scrape_interval: float = 5,
    evaluation_interval: float | None = None,
    timeout: float = 60,
) -> Iterator[str]:
    """Yield the base URL of a Prometheus on a free loopback port scraping `targets`
    ({model: base URL}) and evaluating `rules` (`alert_rules`' dicts, merged). Its
    configuration, data (folder/data) and log (folder/prometheus.log) live in `folder`. Yields
    once it has scraped every target once (a target that is down counts: `up` is 0). Raises
    with the log's tail if it is not ready within `timeout` seconds; stopped when the block
    ends, always."""
    # Stopped as a bento server is (SIGTERM to its group, SIGKILL after 15 s); imported here:
    # the packaging module pulls pyarrow, which nothing else here needs.
    from airloop.packaging.serving import stop_server

    config = write_config(folder, targets, rules, scrape_interval, evaluation_interval)
    log = folder / "prometheus.log"
    with log.open("wb") as output:
        server, base = start_prometheus(config, folder / "data", "127.0.0.1", free_port(), output)
        try:
            deadline = time.monotonic() + timeout
            wait_prometheus_ready(base, server, timeout, log)
            count = sum(1 if isinstance(t, str) else len(t) for t in targets.values())
            wait_targets_scraped(base, count, deadline - time.monotonic())
            yield base
        finally:
            stop_server(server)


def start_prometheus(
    config: Path, storage: Path, host: str, port: int, output: IO[bytes] | None
) -> tuple[subprocess.Popen[bytes], str]:
    """Prometheus with `config`, its TSDB in `storage`, listening on host:port, in its own
    process group; output to `output` (None: this process's). Returns it and its base URL.
    The lifecycle API is on: POST /-/reload rereads the configuration and rules."""
    storage.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [
            str(prometheus_binary()),
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address={host}:{port}",
            "--web.enable-lifecycle",
        ],
        cwd=config.parent,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
    )
    return server, f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"


def wait_prometheus_ready(
    base: str, server: subprocess.Popen[bytes], timeout: float, log: Path | None = None
) -> None:
    """Return once GET /-/ready answers 200; raise if the process exits or time runs out."""
    from airloop.packaging.serving import wait_process_ready

    wait_process_ready(f"{base}/-/ready", server, timeout, "prometheus", log)


def wait_targets_scraped(base: str, count: int, timeout: float) -> None:
    """Return once Prometheus has `count` targets and has scraped each once, up or down
    (its service discovery hands it new targets up to 5 s after a start or reload)."""
    deadline = time.monotonic() + timeout
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/v1/targets?state=active", timeout=5) as response:
            targets = json.load(response)["data"]["activeTargets"]
        # An unscraped target's lastScrape is Go's zero time, 0001-01-01T00:00:00Z.
        if len(targets) >= count and all(not t["lastScrape"].startswith("0001-") for t in targets):
            return
        time.sleep(0.2)
    raise RuntimeError(f"prometheus at {base} scraped {len(targets)} of {count} targets in {timeout:.0f} s")


def reload_prometheus(base: str, timeout: float = 10) -> None:
    """Make a running Prometheus reread its configuration and rules files (after
    `write_config`, e.g. a new champion's latency); raises if it rejects them."""
    request = urllib.request.Request(f"{base}/-/reload", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as error:
        reason = error.read().decode(errors="replace")
        raise RuntimeError(f"prometheus at {base} rejected its configuration: {reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise PrometheusUnavailable(base, getattr(error, "reason", error)) from error


def query_value(base: str, expr: str, timeout: float = 10) -> float | None:
    """The value of a PromQL expression that yields one number (summed where it yields
    several series); None where it yields none or NaN. Raises PrometheusUnavailable when
    Prometheus does not answer."""
    query = urllib.parse.urlencode({"query": expr})
    body = prometheus_api(f"{base.rstrip('/')}/api/v1/query?{query}", timeout)
    values = [float(series["value"][1]) for series in body.get("data", {}).get("result", [])]
    finite = [v for v in values if v == v and v not in (float("inf"), float("-inf"))]
    return sum(finite) if finite else None
