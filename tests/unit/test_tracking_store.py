"""The embedded MLflow store is created once, however many tasks touch it first together:
several models' first tasks start at the same moment."""

from __future__ import annotations

import subprocess
import sys

from airloop.paths import StatePaths

FIRST_TOUCH = """
import sys
from airloop.paths import StatePaths
from airloop.registry.tracking import tracking_client
from pathlib import Path
client = tracking_client(StatePaths(Path(sys.argv[1])))
client.search_experiments()
client.search_registered_models()
"""


def test_tasks_that_first_touch_a_new_store_together_all_find_it_made(tmp_path) -> None:
    paths = StatePaths(tmp_path / "state")
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    touching = [
        subprocess.Popen([sys.executable, "-c", FIRST_TOUCH, str(paths.home)], env=env_free,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in touching]
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], [err[-1500:] for _, err in outcomes]
    assert paths.mlflow_db.is_file()
