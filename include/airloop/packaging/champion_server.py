"""`airloop serve`: serve each model's champion, and move traffic with no request refused
when the champion, a canary or a shadow changes.

What the serving container runs in production (docker-compose's `airloop-serving`). Each
model has its own port (`serving_ports`: the first model in name order at the base port,
the next at base + 1, ...), held by HAProxy (`airloop.ops.haproxy`); behind it each version
in play runs its own bento server on a free loopback port. Every `poll_seconds` each
model's rollout state is read from the registry (`airloop.registry.rollout`) and the servers
are reconciled with it (`desired_servers`):

- the champion gets the traffic the canary does not; the canary its percentage;
- the previous champion and a challenger not yet promoted stay warm with no traffic, so a
  promotion or a rollback is a change of weights, effective within one poll;
- a shadow version runs unrouted, and the champion's server copies a sample of its traffic
  to it (`airloop.packaging.shadow_mirror`); its answers are logged with role `shadow`.

A server is built (digest checked, as in the pipeline) and started, and gets traffic only
once it answers `/readyz` (the bento passed the skew check when it was packaged); a server
no longer wanted is drained (no new requests, those in flight finish) and then stopped.
Servers are never reconfigured: a change (a shadow added to the champion) is a new server
and a switch. A version that fails to start leaves the routing as it was and is tried again
on later polls. Every answer goes to the model's prediction log (`paths.prediction_log`).

Beside them runs a Prometheus (where one is installed: `make prometheus`) scraping every
server and evaluating each model's alert rules (`airloop.production.service_health`),
rewritten on every change; its URL is recorded for the `watch_service` DAGs. Given another
one ($AIRLOOP_PROMETHEUS_URL: compose's), `airloop serve` starts none: that one reads the
servers from `scrape_targets_file(paths)` and the rules from `alert_rules_file(paths)`,
rewritten on every change and reloaded (POST /-/reload). What is served where is written to
`routes_file(paths)` after every change.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airloop.config import AirloopConfig
from airloop.ops.haproxy import SLOTS, Router, running_haproxy, slot_name
from airloop.ops.stack import free_port
from airloop.packaging.bento import build_bento
from airloop.packaging.prediction_sink import ROLE_ENV
from airloop.packaging.serving import start_bento_server, stop_server, wait_ready
from airloop.packaging.shadow_mirror import SHADOW_SAMPLE_ENV, SHADOW_URL_ENV
from airloop.paths import StatePaths
from airloop.registry.rollout import RolloutState, rollout_state
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import LATENCY_TAG

log = logging.getLogger(__name__)

SERVED, SHADOW = "served", "shadow"
# The host another container scrapes the servers at (compose: the serving service's name).
ADVERTISE_ENV = "AIRLOOP_SERVING_ADVERTISE"
# How long a failed version waits before it is tried again.
RETRY_SECONDS = 30


def serving_ports(models: Sequence[AirloopConfig], base_port: int) -> dict[str, int]:
    """{model: port}: models in name order on consecutive ports from `base_port`."""
    return {name: base_port + i for i, name in enumerate(sorted(c.name for c in models))}


def routes_file(paths: StatePaths) -> Path:
    return paths.home / "serving" / "routes.json"


def scrape_targets_file(paths: StatePaths) -> Path:
    """Every server to scrape, in Prometheus's file_sd format (what compose's Prometheus reads)."""
    return paths.home / "serving" / "scrape_targets.json"


def alert_rules_file(paths: StatePaths) -> Path:
    """The models' alert rules, for a Prometheus `airloop serve` does not run (compose's)."""
    return paths.home / "serving" / "alert_rules.yml"


@dataclass(frozen=True)
class ServerSpec:
    """What one bento server runs: a version, in a role, maybe copying traffic to a shadow."""

    version: str
    role: str = SERVED
    mirror_to: str | None = None
    mirror_sample: float = 0.0


@dataclass(frozen=True)
class Wanted:
    spec: ServerSpec
    # The percentage of the model's traffic (0: warm, no traffic); None: not routed at all.
    weight: int | None


def desired_servers(state: RolloutState) -> list[Wanted]:
    """The servers a model's rollout state calls for (pure: the registry's state in, the
    servers out; routed ones first, the champion first of all)."""
    if state.champion is None:
        return []
    wanted: list[Wanted] = []
    mirror = state.shadow if state.shadow and state.shadow != state.champion else None
    canary = state.canary if state.canary and state.canary != state.champion else None
    champion = ServerSpec(
        state.champion, mirror_to=mirror, mirror_sample=state.shadow_sample if mirror else 0.0
    )
    wanted.append(Wanted(champion, 100 - (state.canary_percent if canary else 0)))
    if canary:
        wanted.append(Wanted(ServerSpec(canary), state.canary_percent))
    seen = {state.champion, canary}
    for warm in (state.challenger, state.previous_champion):
        if warm and warm not in seen:
            wanted.append(Wanted(ServerSpec(warm), 0))
            seen.add(warm)
    if mirror:
        wanted.append(Wanted(ServerSpec(mirror, role=SHADOW), None))
    return wanted


@dataclass
class _Server:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    port: int
    slot: str | None = None
    weight: int | None = None


@dataclass
class ModelFleet:
    """One model's servers behind its HAProxy backend."""

    config: AirloopConfig
    paths: StatePaths
    router: Router
    port: int
    # Where the servers listen: loopback, or every interface where another container scrapes them.
    bind_host: str = "127.0.0.1"
    running: dict[ServerSpec, _Server] = field(default_factory=dict)
    # The latency the gate measured for the champion (the latency alert's yardstick).
    gate_latency_ms: float | None = None
    failed: dict[ServerSpec, float] = field(default_factory=dict)
    state: RolloutState = field(default_factory=RolloutState)

    @property
    def name(self) -> str:
        return self.config.name

    def reconcile(self, state: RolloutState, client: Any) -> bool:
        """Bring the servers in line with `state`; True when anything changed."""
        self._forget_exited()
        wanted = desired_servers(state)
        startable = [w for w in wanted if w.spec not in self.running and not self._waiting(w.spec)]
        # Shadows first: a champion copying traffic to one needs its address to start.
        for w in sorted(startable, key=lambda w: w.spec.role != SHADOW):
            self._start(w.spec)
        routed = [w for w in wanted if w.weight is not None and w.spec in self.running]
        if not any(w.weight and w.weight > 0 for w in routed):
            # Nothing ready to take the traffic: keep what serves now (a first start, or a
            # new champion that failed to start).
            changed = bool(startable)
        else:
            changed = self._route(routed) | self._retire({w.spec for w in wanted}) | bool(startable)
        if state.champion != self.state.champion:
            self.gate_latency_ms = _gate_latency(client, self.config, state.champion)
            changed = True
        self.state = state
        return changed

    def stop(self) -> None:
        for server in self.running.values():
            stop_server(server.process)
        self.running.clear()

    def summary(self) -> dict[str, Any]:
        servers = [
            {**asdict(s.spec), "port": s.port, "slot": s.slot, "weight": s.weight}
            for s in self.running.values()
        ]
        return {"port": self.port, "champion": self.state.champion, "servers": servers}

    def server_urls(self, host: str = "127.0.0.1") -> list[str]:
        return [f"http://{host}:{s.port}" for s in self.running.values()]

    def _waiting(self, spec: ServerSpec) -> bool:
        failed_at = self.failed.get(spec)
        return failed_at is not None and time.monotonic() - failed_at < RETRY_SECONDS

    def _start(self, spec: ServerSpec) -> None:
        name = self.config.model.registered_name
        try:
            tag = build_bento(self.config, f"models:/{name}/{spec.version}", spec.version, self.paths)
            env = {ROLE_ENV: spec.role}
            if spec.mirror_to is not None:
                shadow = self.running.get(ServerSpec(spec.mirror_to, role=SHADOW))
                if shadow is None:
                    raise RuntimeError(f"the shadow server of v{spec.mirror_to} is not running")
                env |= {
                    SHADOW_URL_ENV: f"http://127.0.0.1:{shadow.port}",
                    SHADOW_SAMPLE_ENV: str(spec.mirror_sample),
                }
            port = free_port()
            process, base = start_bento_server(
                tag, self.paths, self.bind_host, port, output=None,
                prediction_log=self.paths.prediction_log, extra_env=env,
            )  # fmt: skip
            try:
                wait_ready(base, process, timeout=180)
            except BaseException:
                stop_server(process)
                raise
        except Exception as error:
            log.error("%s: could not start %s: %s", self.name, spec, error)
            print(
                f"airloop serve: {self.name}: v{spec.version} ({spec.role}) did not start: {error}",
                flush=True,
            )
            self.failed[spec] = time.monotonic()
            return
        self.failed.pop(spec, None)
        self.running[spec] = _Server(spec, process, port)
        print(f"airloop serve: {self.name}: {tag} ({spec.role}) ready at {base}", flush=True)

    def _route(self, routed: list[Wanted]) -> bool:
        """Put new servers in free slots with no traffic, then set every weight in one
        exchange with HAProxy: the switch."""
        taken = {s.slot for s in self.running.values() if s.slot}
        free = [slot_name(i) for i in range(SLOTS) if slot_name(i) not in taken]
        for w in routed:
            server = self.running[w.spec]
            if server.slot is None:
                if not free:
                    raise RuntimeError(f"{self.name}: all {SLOTS} HAProxy slots are in use")
                server.slot = free.pop(0)
                self.router.route(self.name, server.slot, server.port, 0)
                server.weight = 0
        changes = {
            str(self.running[w.spec].slot): int(w.weight or 0)
            for w in routed
            if self.running[w.spec].weight != w.weight
        }
        if not changes:
            return False
        self.router.weigh(self.name, changes)
        for w in routed:
            self.running[w.spec].weight = w.weight
        live = ", ".join(f"v{w.spec.version} {w.weight}%" for w in routed if w.weight)
        print(f"airloop serve: {self.name}: traffic now {live}", flush=True)
        return True

    def _retire(self, wanted: set[ServerSpec]) -> bool:
        """Drain and stop the servers no longer wanted (after the switch: nothing new reaches them)."""
        retired = [spec for spec in self.running if spec not in wanted]
        for spec in retired:
            server = self.running.pop(spec)
            if server.slot is not None:
                self.router.drain(self.name, server.slot)
            stop_server(server.process)
            print(f"airloop serve: {self.name}: v{spec.version} ({spec.role}) stopped", flush=True)
        return bool(retired)

    def _forget_exited(self) -> None:
        for spec, server in list(self.running.items()):
            if server.process.poll() is not None:
                log.error("%s: the server of %s exited with %s", self.name, spec, server.process.returncode)
                if server.slot is not None:
                    self.router.drain(self.name, server.slot, timeout=0)
                del self.running[spec]
                self.failed[spec] = time.monotonic() - RETRY_SECONDS  # restart it at once


def _gate_latency(client: Any, config: AirloopConfig, version: str | None) -> float | None:
    if version is None:
        return None
    latency = client.get_model_version(config.model.registered_name, version).tags.get(LATENCY_TAG)
    return float(latency) if latency else None


def serve_champions(
    models: Sequence[AirloopConfig],
    paths: StatePaths,
    host: str,
    base_port: int,
    poll_seconds: float = 2,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Serve until `should_stop()` is true; every server is stopped on the way out, always."""
    client = tracking_client(paths)
    ports = serving_ports(models, base_port)
    folder = paths.home / "serving"
    with running_haproxy(ports, folder / "haproxy", host) as router:
        bind = "127.0.0.1" if host in ("127.0.0.1", "localhost") else host
        fleets = [ModelFleet(c, paths.for_model(c.name), router, ports[c.name], bind) for c in models]
        with _watched(fleets, paths) as watch:
            try:
                while not should_stop():
                    changed = [
                        f.reconcile(rollout_state(client, f.config.model.registered_name), client)
                        for f in fleets
                    ]
                    if any(changed):
                        # Prometheus first: a server is listed as warm (and may get a canary's
                        # traffic) only once it has been scraped at its zero counts.
                        if watch is not None:
                            watch(fleets)
                        _write_routes(paths, fleets)
                    _sleep(poll_seconds, should_stop)
            finally:
                for fleet in fleets:
                    fleet.stop()
                routes_file(paths).unlink(missing_ok=True)
                scrape_targets_file(paths).unlink(missing_ok=True)


def _write_routes(paths: StatePaths, fleets: Sequence[ModelFleet]) -> None:
    path = routes_file(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, {f.name: f.summary() for f in fleets})
    advertised = os.environ.get(ADVERTISE_ENV, "127.0.0.1")
    groups = [
        {"targets": [u.partition("//")[2] for u in f.server_urls(advertised)], "labels": {"model": f.name}}
        for f in fleets
    ]
    _replace(scrape_targets_file(paths), groups)


def _replace(path: Path, content: Any) -> None:
    scratch = path.with_name(f".{path.name}")
    scratch.write_text(json.dumps(content, indent=2))
    scratch.replace(path)


def _rules(fleets: Sequence[ModelFleet]) -> dict[str, Any]:
    from airloop.monitoring.service_alerts import merged_rules
    from airloop.production.service_health import model_rules

    return merged_rules(model_rules(fleet.config, fleet.gate_latency_ms) for fleet in fleets)


@contextmanager
def _watched(
    fleets: Sequence[ModelFleet], paths: StatePaths
) -> Iterator[Callable[[Sequence[ModelFleet]], None] | None]:
    """A Prometheus watching every server while the block runs: the one at
    $AIRLOOP_PROMETHEUS_URL, else one of its own. Yields what rewrites its targets and rules
    (None where there is none: the service alerts are off)."""
    from airloop.production.service_health import PROMETHEUS_URL_ENV

    external = os.environ.get(PROMETHEUS_URL_ENV)
    if external:
        yield _external_prometheus(fleets, paths, external.rstrip("/"))
        return
    with _own_prometheus(fleets, paths) as rewrite:
        yield rewrite


def _external_prometheus(
    fleets: Sequence[ModelFleet], paths: StatePaths, url: str
) -> Callable[[Sequence[ModelFleet]], None]:
    """Publish the fleets' rules to the Prometheus at `url`; returns what publishes them again
    (it finds the servers itself, in `scrape_targets_file`)."""
    _publish_rules(url, paths, fleets)
    print(f"airloop serve: Prometheus at {url} watches {', '.join(f.name for f in fleets)}", flush=True)
    return lambda now: _publish_rules(url, paths, now)


def _publish_rules(url: str, paths: StatePaths, fleets: Sequence[ModelFleet]) -> None:
    """Write the fleets' rules to `alert_rules_file` and have the Prometheus at `url` reread
    them. One that is down or refuses them is a warning, never the end of serving: it reads
    the file when it starts, and is asked again on the next change."""
    from airloop.monitoring.service_alerts import PrometheusUnavailable
    from airloop.ops.prometheus import reload_prometheus, write_rules

    write_rules(alert_rules_file(paths), _rules(fleets))
    try:
        reload_prometheus(url)
    except (RuntimeError, PrometheusUnavailable) as failed:
        log.warning("the alert rules in %s are not loaded yet: %s", alert_rules_file(paths), failed)


@contextmanager
def _own_prometheus(
    fleets: Sequence[ModelFleet], paths: StatePaths
) -> Iterator[Callable[[Sequence[ModelFleet]], None] | None]:
    """A Prometheus of its own scraping every server while the block runs; yields what
    rewrites its targets and rules (None where none is installed)."""
    from airloop.ops.prometheus import (
        PrometheusNotFound,
        prometheus_binary,
        reload_prometheus,
        running_prometheus,
        wait_targets_scraped,
        write_config,
    )
    from airloop.production.service_health import record_prometheus

    def targets(now: Sequence[ModelFleet]) -> dict[str, list[str]]:
        return {fleet.name: fleet.server_urls() for fleet in now}

    folder = paths.home / "serving" / "prometheus"
    try:
        prometheus_binary()
    except PrometheusNotFound as missing:
        log.warning("service alerts off: %s", missing)
        yield None
        return
    with running_prometheus(targets(fleets), folder, _rules(fleets)) as url:

        def rewrite(now: Sequence[ModelFleet]) -> None:
            listed = targets(now)
            write_config(folder, listed, _rules(now))
            reload_prometheus(url)
            try:
                wait_targets_scraped(url, sum(len(urls) for urls in listed.values()), 30)
            except RuntimeError as slow:
                log.warning("%s", slow)

        record_prometheus(paths, url)
        print(f"airloop serve: Prometheus at {url} watches {', '.join(f.name for f in fleets)}", flush=True)
        try:
            yield rewrite
        finally:
            record_prometheus(paths, None)


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not should_stop():
        time.sleep(min(0.2, seconds))


def live_routes(paths: StatePaths) -> dict[str, Any] | None:
    """What `airloop serve` serves where now ({model: summary}), None when it is not running."""
    try:
        return dict(json.loads(routes_file(paths).read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_until_warm(paths: StatePaths, model: str, version: str, timeout: float = 300) -> bool:
    """Wait until `airloop serve` has a server of `version` ready to take `model`'s traffic,
    so that moving an alias to it moves the traffic within one poll. False at once when no
    `airloop serve` runs (nothing to wait for), or when `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while (routes := live_routes(paths)) is not None:
        servers = routes.get(model, {}).get("servers", [])
        if any(s["version"] == version and s["role"] == SERVED and s["slot"] for s in servers):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return False
