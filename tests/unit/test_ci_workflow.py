"""The CI example (.github/workflows/retrain.yml): it installs what `airloop trigger` needs, no
more, picks the models to retrain, and triggers each one's continuous_training DAG."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from airloop.paths import PROJECT_ROOT
from tests.conftest import HEAVY_MODULES

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "retrain.yml"
UNREACHABLE = {
    "AIRLOOP_AIRFLOW_URL": "http://127.0.0.1:9",  # nothing listens on port 9
    "AIRLOOP_AIRFLOW_USERNAME": "ci",
    "AIRLOOP_AIRFLOW_PASSWORD": "x",
}


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(job: str) -> list[dict]:
    return list(_workflow()["jobs"][job]["steps"])


def _step(job: str, name: str) -> dict:
    return next(s for s in _steps(job) if s.get("name") == name)


def _heredoc(run: str) -> str:
    """The Python script a step runs as `python - <<'PY' ... PY`."""
    match = re.search(r"python - <<'PY'[^\n]*\n(?P<script>.*?)\nPY\b", run, re.S)
    assert match, f"no python heredoc in {run!r}"
    return match["script"] + "\n"


def _install_commands(job: str) -> list[list[str]]:
    run = _step(job, "Install the airloop CLI")["run"]
    return [shlex.split(line) for line in run.splitlines() if line.strip()]


def _pinned_versions() -> dict[str, str]:
    requirements = (PROJECT_ROOT / "requirements.txt").read_text()
    return {canonicalize_name(n): v for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", requirements, re.M)}


def _with_dependencies(names: set[str]) -> set[str]:
    """The distributions `pip install names` installs (as this environment resolves them)."""
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def _run_cli(argv: list[str], tmp_path: Path) -> tuple[int, list[str], list[str], str]:
    """(exit code, heavy modules loaded, third-party distributions loaded, stderr) of
    `airloop ARGV` in a fresh interpreter, as the workflow runs it (from the checkout)."""
    watched = [*HEAVY_MODULES, "airflow"]
    probe = (
        "import json, sys\n"
        "at_start = set(sys.modules)  # what the interpreter loads anyway (.pth files)\n"
        "from airloop.cli import main\n"
        f"code = main({argv!r})\n"
        "top = {m.split('.')[0] for m in set(sys.modules) - at_start} - set(sys.stdlib_module_names)\n"
        f"print(json.dumps([code, sorted(m for m in {watched!r} if m in sys.modules), sorted(top)]))\n"
    )
    env = {
        **UNREACHABLE,
        "AIRLOOP_HOME": str(tmp_path / "state"),
        "AIRLOOP_PROJECT_ROOT": str(PROJECT_ROOT),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    code, heavy, top = json.loads(done.stdout.strip().splitlines()[-1])
    distributions = metadata.packages_distributions()
    loaded = {canonicalize_name(d) for module in top for d in distributions.get(module, [])}
    return code, heavy, sorted(loaded - {"airloop"}), done.stderr


# --------------------------------------------------------------------------- installing


@pytest.mark.parametrize("job", ["models", "retrain"])
def test_the_workflow_installs_airloop_and_the_pinned_versions_of_what_it_imports(job: str) -> None:
    airloop, *others = _install_commands(job)
    # airloop itself without its dependencies (the pipeline's libraries), in a command of its
    # own: `--no-deps` would also leave out what the packages named beside it need.
    assert airloop == ["pip", "install", "--no-deps", "."], airloop
    assert len(others) == 1 and others[0][:2] == ["pip", "install"], others
    assert "--no-deps" not in others[0]
    wanted = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", arg).groups() for arg in others[0][2:])
    # The project's pins; croniter (what the configs' schedules are checked with) comes with
    # Airflow, so its version is the one this environment resolved.
    pinned = _pinned_versions()
    expected = {n: pinned.get(canonicalize_name(n)) or metadata.version(n) for n in wanted}
    assert wanted == expected, "the workflow's pins differ from the project's"
    assert {canonicalize_name(n) for n in wanted} == {"pydantic", "pyyaml", "croniter", "requests"}


def test_the_workflow_installs_everything_airloop_trigger_loads(tmp_path: Path) -> None:
    code, heavy, loaded, stderr = _run_cli(["--model", "flights", "trigger", "continuous_training"], tmp_path)
    assert code == 6 and "did not answer" in stderr, stderr
    (install,) = _install_commands("retrain")[1:]
    installed = _with_dependencies({re.sub(r"==.*", "", arg) for arg in install[2:]})
    assert set(loaded) <= installed, f"loaded but not installed by the workflow: {set(loaded) - installed}"


# --------------------------------------------------------------------------- triggering


def test_each_model_is_triggered_and_waited_for_with_secrets_from_the_environment() -> None:
    from airloop.cli import build_parser

    workflow = _workflow()
    job = workflow["jobs"]["retrain"]
    assert job["needs"] == "models"
    assert job["strategy"]["matrix"]["model"] == "${{ fromJSON(needs.models.outputs.models) }}"
    assert job["strategy"]["fail-fast"] is False, "one model's failure must not cancel another's"
    step = next(s for s in job["steps"] if "airloop" in s.get("run", "") and "trigger" in s["run"])
    assert step["env"]["MODEL"] == "${{ matrix.model }}"
    assert {"AIRLOOP_AIRFLOW_URL", "AIRLOOP_AIRFLOW_USERNAME", "AIRLOOP_AIRFLOW_PASSWORD"} <= set(step["env"])
    for key, value in step["env"].items():
        if key.startswith("AIRLOOP_"):
            assert value == f"${{{{ secrets.{key} }}}}", key
    command = shlex.split(step["run"].replace('"$MODEL"', "flights").replace('"$CONF"', "{}"))
    assert command[0] == "airloop"
    args = build_parser().parse_args(command[1:])
    assert (args.func.__name__, args.model, args.dag, args.wait) == (
        "cmd_trigger",
        "flights",
        "continuous_training",
        True,
    )
    assert args.conf == "{}" and args.timeout <= job["timeout-minutes"] * 60
    # The CLI installed from a wheel finds the models in the checkout.
    assert workflow["env"]["AIRLOOP_PROJECT_ROOT"] == "${{ github.workspace }}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "flights", "trigger", "continuous_training", "--conf", "{}"],
        ["trigger", "flights__continuous_training", "--conf", "{}"],
    ],
    ids=["model-and-stage", "dag-id"],
)
def test_airloop_trigger_loads_none_of_the_pipelines_libraries(argv: list[str], tmp_path: Path) -> None:
    code, heavy, _, stderr = _run_cli(argv, tmp_path)
    assert code == 6 and "did not answer" in stderr, stderr  # it got as far as asking Airflow
    assert heavy == []


def test_a_stage_without_a_model_is_refused_in_a_deployment_of_several(tmp_path: Path) -> None:
    code, _, _, stderr = _run_cli(["trigger", "continuous_training"], tmp_path)
    assert code == 2 and "--model" in stderr, stderr


# --------------------------------------------------------------------------- picking the models


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git checkout holding the project's configs/, and the commits that change them."""
    if shutil.which("git") is None:
        pytest.skip("no git")
    root = tmp_path / "checkout"
    shutil.copytree(PROJECT_ROOT / "configs", root / "configs")

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.org", *args],
            cwd=root, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    def commit(name: str) -> None:
        git("add", "-A")
        git("commit", "-q", "--allow-empty", "-m", name)
        commits[name] = git("rev-parse", "HEAD")

    commits: dict[str, str] = {}
    git("init", "-q")
    commit("start")
    with (root / "configs" / "weather.yaml").open("a") as f:
        f.write("# tuned\n")
    commit("weather")
    with (root / "configs" / "overlays" / "production.yaml").open("a") as f:
        f.write("# tuned\n")
    commit("overlay")
    (root / "configs" / "NOTES.txt").write_text("not a config\n")
    commit("notes")
    (root / "configs" / "flights.yaml").write_text("name: flights\ntask: nonsense\n")
    commit("broken")
    return root, commits


def _pick(root: Path, **env: str) -> tuple[int, list[str] | None, str]:
    run = _step("models", "Pick the models to retrain")["run"]
    full_env = {"PATH": "/usr/bin:/bin", "AIRLOOP_PROJECT_ROOT": str(root), "MODEL": "", "BEFORE": "", **env}
    done = subprocess.run(
        [sys.executable, "-c", _heredoc(run)],
        cwd=root,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    outputs = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return done.returncode, json.loads(outputs["models"]) if "models" in outputs else None, done.stderr


def test_the_models_job_feeds_the_matrix() -> None:
    job = _workflow()["jobs"]["models"]
    step = _step("models", "Pick the models to retrain")
    assert job["outputs"]["models"] == f"${{{{ steps.{step['id']}.outputs.models }}}}"
    assert '>> "$GITHUB_OUTPUT"' in step["run"]
    assert step["env"]["MODEL"] == "${{ github.event.inputs.model }}"
    assert step["env"]["BEFORE"] == "${{ github.event.before }}"
    assert next(s for s in job["steps"] if "checkout" in s.get("uses", ""))["with"]["fetch-depth"] == 0
    assert _workflow()["jobs"]["retrain"]["if"] == "needs.models.outputs.models != '[]'"


def test_a_manual_run_retrains_the_model_it_names(checkout: tuple[Path, dict[str, str]]) -> None:
    root, _ = checkout
    (root / "configs" / "flights.yaml").write_text((PROJECT_ROOT / "configs" / "flights.yaml").read_text())
    assert _pick(root, MODEL="flights")[:2] == (0, ["flights"])
    code, models, stderr = _pick(root, MODEL="nope")
    assert code != 0 and models is None and "no model 'nope'" in stderr, stderr


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("start", "weather", ["weather"]),  # one config changed: that model
        ("weather", "overlay", ["flights", "weather"]),  # an overlay changed: every model
        ("overlay", "notes", []),  # no config changed: no model (the retrain job is skipped)
        ("0" * 40, "notes", ["flights", "weather"]),  # a new branch: every model
        ("f" * 40, "notes", ["flights", "weather"]),  # an unknown commit (history rewritten)
    ],
)
def test_a_push_retrains_the_models_whose_config_changed(
    checkout: tuple[Path, dict[str, str]], before: str, after: str, expected: list[str]
) -> None:
    root, commits = checkout
    subprocess.run(["git", "checkout", "-q", commits[after]], cwd=root, check=True)
    code, models, stderr = _pick(root, BEFORE=commits.get(before, before), AFTER=commits[after])
    assert (code, models) == (0, expected), stderr


def test_a_push_that_breaks_a_config_fails_naming_the_key(checkout: tuple[Path, dict[str, str]]) -> None:
    root, commits = checkout
    code, models, stderr = _pick(root, BEFORE=commits["notes"], AFTER=commits["broken"])
    assert code != 0 and models is None
    assert "flights.yaml" in stderr and "task" in stderr, stderr
