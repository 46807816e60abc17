"""Airflow 3 (and what it needs) on this machine, as background processes on 127.0.0.1.

Two topologies, one code path:

- `local`, the embedded default: no Docker, no servers to install. SQLite under a
  project-local AIRFLOW_HOME, the LocalExecutor, MLflow's SQLite store under AIRLOOP_HOME.
- `celery`, the production topology of docker-compose.yaml run natively: Airflow's metadata
  on PostgreSQL, the CeleryExecutor with Redis as broker and a Celery worker process, and an
  MLflow server on PostgreSQL. This is the path past one machine: more workers on other
  hosts join the same broker.

Airflow's own api-server, scheduler, dag-processor and triggerer run in both. Each process
is started in its own session and stopped by its pid (and its group), so nothing outlives
`stop()`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import requests

from airloop.deployment import CONFIGS_ENV, OVERLAYS_ENV, load_deployment, overlay_files
from airloop.ops.airflow_api import AirflowClient
from airloop.paths import PROJECT_ROOT, StatePaths

# Each Airflow component and its command. Log serving is skipped: on one machine the
# api-server reads task logs from disk, and Airflow's log servers bind every interface.
AIRFLOW_COMPONENTS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
USERNAME = "admin"
# Tasks import pandas, GX, MLflow...: more than a few at once only thrashes 2 cores.
PARALLELISM = 3


@dataclass(frozen=True)
class Topology:
    """How the stack runs tasks and where it keeps its state (see the module docstring)."""

    executor: Literal["local", "celery"] = "local"
    # Airflow's metadata database (a SQLAlchemy URL); None: SQLite under AIRFLOW_HOME.
    database_url: str | None = None
    # The Celery broker (celery only), e.g. redis://127.0.0.1:6379/0.
    broker_url: str | None = None
    # Set: an MLflow server on this store, on 127.0.0.1. None: MLflow's SQLite file.
    mlflow_database_url: str | None = None

    def __post_init__(self) -> None:
        if self.executor == "celery" and not (self.database_url and self.broker_url):
            raise ValueError("the celery topology needs database_url (PostgreSQL) and broker_url (Redis)")
        if self.executor == "celery" and self.database_url and self.database_url.startswith("sqlite"):
            raise ValueError("the celery topology needs a database its worker can share: not SQLite")

    @property
    def celery(self) -> bool:
        return self.executor == "celery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of `count` consecutive loopback ports free now (`airloop serve` takes one
    port per model from its base port)."""
    while True:
        base = free_port()
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base


class Stack:
    """The stack under `paths.airflow_home`. Its topology, ports and secrets are chosen when it
    is first set up and kept in a settings file there, so `airloop stack up` and
    `airloop trigger` later find the same one."""

    def __init__(
        self, paths: StatePaths, configs: str | None = None, topology: Topology | None = None
    ) -> None:
        """`configs`: the model configs this stack runs, as `$AIRLOOP_CONFIGS` names them
        (default: that variable, else every configs/*.yaml)."""
        self.paths = paths
        self.home = paths.airflow_home
        self.configs = configs or os.environ.get(CONFIGS_ENV)
        self.settings_file = self.home / "airloop-stack.json"
        self._wanted = topology

    # -- settings kept across restarts: topology, ports, secrets and the admin password --------
    def settings(self) -> dict:
        if self.settings_file.exists():
            settings = dict(json.loads(self.settings_file.read_text()))
            if self._wanted is not None and Topology(**settings["topology"]) != self._wanted:
                raise ValueError(
                    f"the stack under {self.home} was set up as {settings['topology']}; "
                    f"`airloop stack down` and remove {self.home} to set it up as {asdict(self._wanted)}"
                )
            return settings
        self.home.mkdir(parents=True, exist_ok=True)
        settings = {
            "topology": asdict(self._wanted or Topology()),
            "port": free_port(),
            "mlflow_port": free_port(),
            # Airflow signs with HS512 for a shared secret: 64 bytes or more (RFC 7518 3.2).
            "jwt_secret": secrets.token_urlsafe(64),
            "api_secret": secrets.token_urlsafe(32),
            "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "password": secrets.token_urlsafe(12),
        }
        self.settings_file.write_text(json.dumps(settings))
        self.settings_file.chmod(0o600)
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({USERNAME: settings["password"]}))
        passwords.chmod(0o600)
        return settings

    @property
    def topology(self) -> Topology:
        return Topology(**self.settings()["topology"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings()['port']}"

    @property
    def mlflow_url(self) -> str | None:
        """The MLflow server's URL, when the topology runs one."""
        if self.topology.mlflow_database_url is None:
            return None
        return f"http://127.0.0.1:{self.settings()['mlflow_port']}"

    def client(self) -> AirflowClient:
        return AirflowClient(self.url, USERNAME, self.settings()["password"])

    def components(self) -> dict[str, list[str]]:
        """Each process of this topology and its command, in the order they start."""
        bin_dir = Path(sys.executable).parent
        commands: dict[str, list[str]] = {}
        topology = self.topology
        if topology.mlflow_database_url is not None:
            port = self.settings()["mlflow_port"]
            commands["mlflow-server"] = mlflow_server_command(topology.mlflow_database_url, self.paths, port)
        airflow = [str(bin_dir / "airflow")]
        # Task processes are forked from the process that runs the executor's workers: there,
        # the pipeline's libraries are imported once instead of in every task.
        preloaded = [sys.executable, "-m", "airloop.ops.preloaded_airflow"]
        for component, args in AIRFLOW_COMPONENTS.items():
            forks_tasks = component == "scheduler" and not topology.celery
            commands[component] = [*(preloaded if forks_tasks else airflow), *args]
        if topology.celery:
            commands["celery-worker"] = [
                *preloaded, "celery", "worker", "--skip-serve-logs", "--concurrency", str(PARALLELISM),
            ]  # fmt: skip
        return commands

    def env(self) -> dict[str, str]:
        """The environment every Airflow process (and so every task) runs with."""
        settings, topology = self.settings(), self.topology
        venv_bin = str(Path(sys.executable).parent)
        database = topology.database_url or f"sqlite:///{self.home / 'airflow.db'}"
        env = {
            **os.environ,
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if topology.celery else "LocalExecutor",
            "AIRFLOW__CORE__FERNET_KEY": settings["fernet_key"],
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(settings["port"]),
            "AIRFLOW__API__SECRET_KEY": settings["api_secret"],
            "AIRFLOW__API_AUTH__JWT_SECRET": settings["jwt_secret"],
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            # The DAG file builds every model's DAGs (~4 s of CPU at 50 models): parsed once a
            # minute, not Airflow's every 30 s; a new config's DAGs appear within a minute.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            # Each loop re-examines this many running DAG runs; every model's continuous
            # ingest run is always running (its sensor deferred), and examining 20 of them
            # every 0.5 s was most of an idle scheduler's CPU at 50 models
            # (benchmarks/RESULTS.md, parse and schedule cost). 8 covers the demo's busiest.
            "AIRFLOW__SCHEDULER__MAX_DAGRUNS_PER_LOOP_TO_SCHEDULE": "8",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # Half of Airflow's 1 s between idle scheduler loops: each task waits on the next
            # loop to start. Idle with ingest_data's sensor run active, the scheduler then uses
            # ~10% of a core instead of ~6% (benchmarks/RESULTS.md, orchestration overhead).
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            # The landing sensor resolves paths through this connection; paths are absolute.
            "AIRFLOW_CONN_FS_DEFAULT": json.dumps({"conn_type": "fs"}),
            "AIRLOOP_HOME": str(self.paths.home),
            "MLFLOW_TRACKING_URI": self.mlflow_url or self.paths.tracking_uri(),
            "BENTOML_HOME": str(self.paths.bentoml_home),
            "GX_ANALYTICS_ENABLED": "False",
            # MLflow's download progress bars go to stderr, which task logs show as errors.
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        if topology.celery:
            env["AIRFLOW__CELERY__BROKER_URL"] = str(topology.broker_url)
            # Task states go back through the metadata database (Celery's `db+` backend).
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = f"db+{database}"
            env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(PARALLELISM)
        if self.configs:
            env[CONFIGS_ENV] = os.pathsep.join(
                str(Path(part).resolve()) for part in self.configs.split(os.pathsep) if part
            )
        overlays = overlay_files()
        if overlays:
            env[OVERLAYS_ENV] = os.pathsep.join(str(p) for p in overlays)
        return env

    def airflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run an `airflow` CLI command against this stack; raise with its output on failure."""
        done = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        return done

    def models(self) -> list[str]:
        """The models this stack runs (those whose configs load)."""
        return load_deployment(self.configs).names()

    def initialise(self) -> None:
        """Create the metadata database and every model's pools (idempotent)."""
        from airloop.orchestration.pools import pools_json

        self.airflow("db", "migrate")
        pools = self.home / "pools.json"
        pools.write_text(pools_json(self.models()))
        self.airflow("pools", "import", str(pools))

    def start(self, timeout: float = 180) -> None:
        self.initialise()
        for component, command in self.components().items():
            if not self._alive(component):
                self._launch(component, command)
            if component == "mlflow-server":  # tasks need it from their first line
                wait_until_answers(f"{self.mlflow_url}/health", timeout, "the MLflow server")
        self.client().wait_until_healthy(timeout)

    def _launch(self, component: str, command: list[str]) -> None:
        logs = self.home / "logs" / "components"
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"{component}.log", "ab")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(
            command, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._pid_file(component).write_text(str(process.pid))

    def stop(self, grace: float = 20) -> None:
        """Stop every component by its pid and process group, the last started first:
        SIGTERM, then SIGKILL."""
        if not self.settings_file.exists():
            return  # never set up: nothing runs
        for component in reversed(self.components()):
            pid = self._pid(component)
            if pid is None:
                continue
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            _signal_group(pid, signal.SIGKILL)
            self._pid_file(component).unlink(missing_ok=True)

    def describe(self) -> dict:
        return {
            "airflow_ui": self.url,
            "user": USERNAME,
            "password": self.settings()["password"],
            "topology": self.topology.executor,
            "mlflow_server": self.mlflow_url,
            "models": self.models(),
            "running": {c: self._alive(c) for c in self.components()},
            "airflow_home": str(self.home),
        }

    def _pid_file(self, component: str) -> Path:
        folder = self.home / "pids"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{component}.pid"

    def _pid(self, component: str) -> int | None:
        pid_file = self._pid_file(component)
        return int(pid_file.read_text()) if pid_file.exists() else None

    def _alive(self, component: str) -> bool:
        pid = self._pid(component)
        return pid is not None and _running(pid)


def mlflow_server_command(database_url: str, paths: StatePaths, port: int) -> list[str]:
    """An MLflow tracking server on `database_url`, keeping artifacts under `paths`, on loopback."""
    return [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", database_url,
        "--artifacts-destination", str(paths.mlflow_artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def wait_until_answers(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=5).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer at {url} within {timeout:.0f} s")
        time.sleep(1)


def _running(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall back to probing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
