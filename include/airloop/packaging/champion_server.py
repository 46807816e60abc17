"""`airloop serve`: serve each model's champion bento, and follow each champion when it moves.

What the serving container runs in production (docker-compose's `airloop-serving`). Each
model has its own port (`serving_ports`: the first model in name order at the base port,
the next at base + 1, ...). Every `poll_seconds` each model's `champion` alias is read;
when it names another version (a promotion or a rollback), that version's bento is built
if the store lacks it (digest checked, as in the pipeline), the model's old server is
stopped and the new one started on the same address. Requests to that model during the
switch, a few seconds while the new model loads, are refused rather than answered by the
old model; the other models' servers are not touched. Until a model has a champion, its
port stays closed. Every answer goes to the model's prediction log (`paths.prediction_log`).

Beside them runs a Prometheus (where one is installed: `make prometheus`) scraping every
model's port and evaluating its alert rules (`airloop.production.service_health`), rewritten
with the new champion's gate latency on every switch; its URL is recorded in the state for
the models' `watch_service` DAGs.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from airloop.config import AirloopConfig
from airloop.packaging.bento import build_bento
from airloop.packaging.serving import start_bento_server, stop_server, wait_ready
from airloop.paths import StatePaths
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import LATENCY_TAG, current_champion

log = logging.getLogger(__name__)


def serving_ports(models: Sequence[AirloopConfig], base_port: int) -> dict[str, int]:
    """{model: port}: models in name order on consecutive ports from `base_port`."""
    return {name: base_port + i for i, name in enumerate(sorted(c.name for c in models))}


@dataclass
class _Served:
    config: AirloopConfig
    port: int
    version: str | None = None
    server: subprocess.Popen | None = None
    # The latency the gate measured for the served version (the alert's yardstick).
    gate_latency_ms: float | None = None


def serve_champions(
    models: Sequence[AirloopConfig],
    paths: StatePaths,
    host: str,
    base_port: int,
    poll_seconds: float = 30,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Serve until `should_stop()` is true; every server is stopped on the way out, always."""
    client = tracking_client(paths)
    ports = serving_ports(models, base_port)
    served = [_Served(config, ports[config.name]) for config in models]
    with _watched(served, paths) as watch:
        try:
            while not should_stop():
                switched = [
                    _follow(entry, client, paths.for_model(entry.config.name), host) for entry in served
                ]
                if any(switched) and watch is not None:
                    watch(served)
                _sleep(poll_seconds, should_stop)
        finally:
            for entry in served:
                if entry.server is not None:
                    stop_server(entry.server)


def _rules(served: Sequence[_Served]) -> dict[str, Any]:
    from airloop.monitoring.service_alerts import merged_rules
    from airloop.production.service_health import model_rules

    return merged_rules(model_rules(entry.config, entry.gate_latency_ms) for entry in served)


@contextmanager
def _watched(
    served: Sequence[_Served], paths: StatePaths
) -> Iterator[Callable[[Sequence[_Served]], None] | None]:
    """A Prometheus scraping every model's port while the block runs; yields what rewrites
    its rules (None where no Prometheus is installed: the service alerts are off)."""
    from airloop.ops.prometheus import (
        PrometheusNotFound,
        prometheus_binary,
        reload_prometheus,
        running_prometheus,
        write_config,
    )
    from airloop.production.service_health import record_prometheus

    targets = {entry.config.name: f"http://127.0.0.1:{entry.port}" for entry in served}
    folder = paths.home / "serving" / "prometheus"
    try:
        prometheus_binary()
    except PrometheusNotFound as missing:
        log.warning("service alerts off: %s", missing)
        yield None
        return
    with running_prometheus(targets, folder, _rules(served)) as url:

        def rewrite(now_served: Sequence[_Served]) -> None:
            write_config(folder, targets, _rules(now_served))
            reload_prometheus(url)

        record_prometheus(paths, url)
        print(f"airloop serve: Prometheus at {url} watches {', '.join(sorted(targets))}", flush=True)
        try:
            yield rewrite
        finally:
            record_prometheus(paths, None)


def _follow(entry: _Served, client, paths: StatePaths, host: str) -> bool:
    """Start, switch or check one model's server against its champion alias; True when it
    started another version."""
    name = entry.config.model.registered_name
    champion = current_champion(client, name)
    if champion is None and entry.version is None:
        log.info("no %s champion yet: waiting", name)
    elif champion is not None and champion.version != entry.version:
        tag = build_bento(entry.config, champion.uri, champion.version, paths)
        if entry.server is not None:
            stop_server(entry.server)
        entry.server, base = start_bento_server(
            tag, paths, host, entry.port, output=None, prediction_log=paths.prediction_log
        )
        wait_ready(base, entry.server, timeout=180)
        entry.version = champion.version
        latency = champion.tags.get(LATENCY_TAG)
        entry.gate_latency_ms = float(latency) if latency else None
        print(
            f"airloop serve: {entry.config.name}: {tag} (champion v{champion.version}) at {base}", flush=True
        )
        return True
    elif entry.server is not None and entry.server.poll() is not None:
        raise RuntimeError(
            f"bentoml serve of {entry.config.name} v{entry.version} exited with {entry.server.returncode}"
        )
    return False


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not should_stop():
        time.sleep(min(0.5, seconds))
