"""`airloop trigger` run the way a CI job runs it: Airflow's address and login from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from airloop.ops.stack import Stack
from airloop.ops.trigger import CI_RUN_IDS


def airloop_trigger(
    stack: Stack, *args: str, password: str | None = None, timeout: float = 960, **env: str
) -> subprocess.CompletedProcess[str]:
    client = stack.client()
    ci_env = {
        **os.environ,
        "AIRLOOP_AIRFLOW_URL": client.base_url,
        "AIRLOOP_AIRFLOW_USERNAME": client.username,
        "AIRLOOP_AIRFLOW_PASSWORD": password or client.password,
    }
    for name in CI_RUN_IDS:  # this machine's own CI must not decide the run id
        ci_env.pop(name, None)
    ci_env.update(env)
    airloop = Path(sys.executable).parent / "airloop"
    return subprocess.run(
        [str(airloop), "trigger", *args], env=ci_env, capture_output=True, text=True, timeout=timeout
    )
