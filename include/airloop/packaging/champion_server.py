"""`airloop serve`: serve the champion's bento, and follow the champion when it moves.

What the serving container runs in production (docker-compose's `airloop-serving`). Every
`poll_seconds` it reads the registry's `champion` alias; when it names another version
(a promotion or a rollback), that version's bento is built if the store lacks it (digest
checked, as in the pipeline), the old server is stopped and the new one started on the
same address. Requests during the switch, a few seconds while the new model loads, are
refused rather than answered by the old model. Until there is a champion it waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from airloop.config import AirloopConfig
from airloop.packaging.bento import build_bento
from airloop.packaging.serving import start_bento_server, stop_server, wait_ready
from airloop.paths import StatePaths
from airloop.registry import current_champion
from airloop.tracking import tracking_client

log = logging.getLogger(__name__)


def serve_champion(
    config: AirloopConfig,
    paths: StatePaths,
    host: str,
    port: int,
    poll_seconds: float = 30,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Serve until `should_stop()` is true; the server is stopped on the way out, always."""
    client = tracking_client(paths)
    name = config.model.registered_name
    served_version, server = None, None
    try:
        while not should_stop():
            champion = current_champion(client, name)
            if champion is None and served_version is None:
                log.info("no %s champion yet: waiting", name)
            elif champion is not None and champion.version != served_version:
                tag = build_bento(config, champion.uri, champion.version, paths)
                if server is not None:
                    stop_server(server)
                server, base = start_bento_server(tag, paths, host, port, output=None)
                wait_ready(base, server, timeout=180)
                served_version = champion.version
                print(f"airloop serve: {tag} (champion v{champion.version}) at {base}", flush=True)
            elif server is not None and server.poll() is not None:
                raise RuntimeError(f"bentoml serve of v{served_version} exited with {server.returncode}")
            _sleep(poll_seconds, should_stop)
    finally:
        if server is not None:
            stop_server(server)


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not should_stop():
        time.sleep(min(0.5, seconds))
