"""The CI example (.github/workflows/retrain.yml) installs what `airloop trigger` needs, no more."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import yaml

from airloop.paths import PROJECT_ROOT
from tests.conftest import HEAVY_MODULES

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "retrain.yml"


def _steps() -> list[dict]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return list(workflow["jobs"]["retrain"]["steps"])


def test_the_workflow_installs_the_pinned_versions_of_what_the_trigger_imports() -> None:
    install = next(s["run"] for s in _steps() if s.get("name") == "Install the airloop CLI")
    requirements = (PROJECT_ROOT / "requirements.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", requirements, re.M))
    wanted = dict(re.findall(r"([A-Za-z0-9_.-]+)==(\S+)", install))
    assert wanted == {name: pins[name] for name in wanted}, "the workflow's pins differ from requirements.txt"
    assert set(wanted) == {"pydantic", "PyYAML", "requests"}


def test_the_workflow_triggers_and_waits_with_secrets_from_the_environment() -> None:
    step = next(s for s in _steps() if "airloop trigger" in s.get("run", ""))
    assert "--wait" in step["run"] and '"$CONF"' in step["run"]
    assert {"AIRLOOP_AIRFLOW_URL", "AIRLOOP_AIRFLOW_USERNAME", "AIRLOOP_AIRFLOW_PASSWORD"} <= set(step["env"])
    assert all(value.startswith("${{ secrets.") for key, value in step["env"].items() if key != "CONF")


def test_airloop_trigger_loads_none_of_the_pipelines_libraries(tmp_path) -> None:
    watched = [*HEAVY_MODULES, "airflow"]
    probe = (
        "import json, sys\n"
        "from airloop.cli import main\n"
        "code = main(['trigger', 'continuous_training', '--conf', '{}'])\n"
        f"print(json.dumps([code, sorted(m for m in {watched!r} if m in sys.modules)]))\n"
    )
    env = {
        "AIRLOOP_AIRFLOW_URL": "http://127.0.0.1:9",
        "AIRLOOP_AIRFLOW_USERNAME": "ci",
        "AIRLOOP_AIRFLOW_PASSWORD": "x",
        "AIRLOOP_HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    code, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 6 and "did not answer" in done.stderr  # nothing listens on port 9
    assert loaded == []
