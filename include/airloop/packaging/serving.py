"""Serve a bento on loopback for as long as a block runs: `bentoml serve` on a free port,
in its own process group, stopped by its pid when the block ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from airloop.ops.stack import free_port
from airloop.packaging.prediction_sink import LOG_LOCATION_ENV, PII_KEY_ENV
from airloop.paths import StatePaths


def post_json(url: str, body: Any, timeout: float = 30) -> Any:
    """POST JSON and decode the JSON answer (urllib.error.HTTPError on a 4xx/5xx)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


@contextmanager
def served_bento(
    tag: str, paths: StatePaths, log: Path, timeout: float = 90, prediction_log: Path | None = None
) -> Iterator[str]:
    """Yield the base URL of `tag` served from paths.bentoml_home; raise with the log's tail
    if it does not become ready within `timeout` seconds. Its answers are written to
    `prediction_log` if given (the skew check's are not: they are no traffic)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        server, base = start_bento_server(
            tag, paths, "127.0.0.1", free_port(), output, cwd=log.parent, prediction_log=prediction_log
        )
        try:
            wait_ready(base, server, timeout, log)
            yield base
        finally:
            stop_server(server)


def start_bento_server(
    tag: str,
    paths: StatePaths,
    host: str,
    port: int,
    output: IO[bytes] | None,
    cwd: Path | None = None,
    prediction_log: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """`bentoml serve tag` in its own process group (its workers stop with it); output to
    `output` (None: this process's), answers logged to `prediction_log` (None: not logged,
    unless the bento's config names object storage), `extra_env` added to its environment.
    Returns the process and the base URL."""
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    home = server_home(paths, port)
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    env.pop(LOG_LOCATION_ENV, None)
    if prediction_log is not None:
        env[LOG_LOCATION_ENV] = str(prediction_log)
        env.setdefault(PII_KEY_ENV, pii_key(paths))
    env.update(extra_env or {})
    server = subprocess.Popen(
        [str(bentoml_cli), "serve", tag, "--host", host, "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
    )
    return server, f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"


def server_home(paths: StatePaths, port: int) -> Path:
    """The BentoML home one server runs in: its own folder, whose bento and model stores are
    the deployment's (links). BentoML keeps /metrics' multiprocess files under its home and
    empties them when a server starts, so servers sharing a home would wipe and count each
    other's metrics."""
    home = paths.home / "serving" / f"bentoml-{port}"
    home.mkdir(parents=True, exist_ok=True)
    for store in ("bentos", "models"):
        link = home / store
        if not link.is_symlink():
            (paths.bentoml_home / store).mkdir(parents=True, exist_ok=True)
            link.symlink_to(paths.bentoml_home / store, target_is_directory=True)
    return home


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float, log: Path | None = None) -> None:
    wait_process_ready(f"{base}/readyz", server, timeout, "bentoml serve", log)


def wait_process_ready(
    url: str, server: subprocess.Popen[bytes], timeout: float, what: str, log: Path | None = None
) -> None:
    """Return once GET `url` answers 200; raise with the log's tail if the server process
    exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{what} exited with {server.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready at {url} after {timeout} s:\n{_tail(log)}")


def scraped_total(metrics_text: str, name: str, **labels: str) -> float:
    """The sum of the samples of metric `name` in a /metrics page whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else "(see its output)"


def pii_key(paths: StatePaths) -> str:
    """The deployment's key for hashing personal data in prediction logs ($AIRLOOP_PII_KEY
    wins): made once, kept readable by its owner only."""
    import secrets

    if os.environ.get(PII_KEY_ENV):
        return os.environ[PII_KEY_ENV]
    path = paths.pii_key_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()
