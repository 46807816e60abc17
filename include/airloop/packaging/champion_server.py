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
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from airloop.config import AirloopConfig
from airloop.packaging.bento import build_bento
from airloop.packaging.serving import start_bento_server, stop_server, wait_ready
from airloop.paths import StatePaths
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import current_champion

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
    try:
        while not should_stop():
            for entry in served:
                _follow(entry, client, paths.for_model(entry.config.name), host)
            _sleep(poll_seconds, should_stop)
    finally:
        for entry in served:
            if entry.server is not None:
                stop_server(entry.server)


def _follow(entry: _Served, client, paths: StatePaths, host: str) -> None:
    """Start, switch or check one model's server against its champion alias."""
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
        print(
            f"airloop serve: {entry.config.name}: {tag} (champion v{champion.version}) at {base}", flush=True
        )
    elif entry.server is not None and entry.server.poll() is not None:
        raise RuntimeError(
            f"bentoml serve of {entry.config.name} v{entry.version} exited with {entry.server.returncode}"
        )


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not should_stop():
        time.sleep(min(0.5, seconds))
