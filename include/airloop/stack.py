"""The embedded default: Airflow 3 on this machine, no Docker, no servers to install.

SQLite under a project-local AIRFLOW_HOME, the LocalExecutor, and Airflow's own
api-server, scheduler, dag-processor and triggerer as background processes on 127.0.0.1.
Each process is started in its own session and stopped by its pid (and its group), so
nothing outlives `stop()`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from airloop.airflow_api import AirflowClient
from airloop.paths import PROJECT_ROOT, StatePaths

# Each Airflow component and its command. Log serving is skipped: on one machine the
# api-server reads task logs from disk, and Airflow's log servers bind every interface.
COMPONENTS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
USERNAME = "admin"
# Tasks import pandas, GX, MLflow...: more than a few at once only thrashes 2 cores.
PARALLELISM = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedStack:
    def __init__(self, paths: StatePaths, config_path: str | None = None) -> None:
        self.paths = paths
        self.home = paths.airflow_home
        self.config_path = config_path or os.environ.get("AIRLOOP_CONFIG")
        self.settings_file = self.home / "airloop-stack.json"

    # -- settings kept across restarts: the port, secrets and the admin password ---------------
    def settings(self) -> dict:
        if self.settings_file.exists():
            return dict(json.loads(self.settings_file.read_text()))
        self.home.mkdir(parents=True, exist_ok=True)
        settings = {
            "port": free_port(),
            "jwt_secret": secrets.token_urlsafe(32),
            "api_secret": secrets.token_urlsafe(32),
            "password": secrets.token_urlsafe(12),
        }
        self.settings_file.write_text(json.dumps(settings))
        self.settings_file.chmod(0o600)
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({USERNAME: settings["password"]}))
        passwords.chmod(0o600)
        return settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings()['port']}"

    def client(self) -> AirflowClient:
        return AirflowClient(self.url, USERNAME, self.settings()["password"])

    def env(self) -> dict[str, str]:
        """The environment every Airflow process (and so every task) runs with."""
        settings = self.settings()
        venv_bin = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(settings["port"]),
            "AIRFLOW__API__SECRET_KEY": settings["api_secret"],
            "AIRFLOW__API_AUTH__JWT_SECRET": settings["jwt_secret"],
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # The landing sensor resolves paths through this connection; paths are absolute.
            "AIRFLOW_CONN_FS_DEFAULT": json.dumps({"conn_type": "fs"}),
            "AIRLOOP_HOME": str(self.paths.home),
            "MLFLOW_TRACKING_URI": self.paths.tracking_uri(),
            "BENTOML_HOME": str(self.paths.bentoml_home),
            "GX_ANALYTICS_ENABLED": "False",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        if self.config_path:
            env["AIRLOOP_CONFIG"] = str(Path(self.config_path).resolve())
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

    def initialise(self) -> None:
        """Create the metadata database and airloop's pools (idempotent)."""
        from airloop.pools import POOLS

        self.airflow("db", "migrate")
        for name, description in POOLS.items():
            self.airflow("pools", "set", name, "1", description)

    def start(self, timeout: float = 180) -> None:
        self.initialise()
        logs = self.home / "logs" / "components"
        logs.mkdir(parents=True, exist_ok=True)
        for component, command in COMPONENTS.items():
            if self._alive(component):
                continue
            log = open(logs / f"{component}.log", "ab")  # noqa: SIM115 - owned by the child
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "airflow"), *command],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._pid_file(component).write_text(str(process.pid))
        self.client().wait_until_healthy(timeout)

    def stop(self, grace: float = 20) -> None:
        """Stop every component by its pid and process group: SIGTERM, then SIGKILL."""
        for component in COMPONENTS:
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
            "running": {c: self._alive(c) for c in COMPONENTS},
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
