"""Static checks of the deployment files: docker-compose.yaml, Dockerfile, .env.example.

No Docker engine is needed: the compose file is parsed with PyYAML (anchors and merge keys
resolved), the Dockerfile as text. When a `docker compose` client is installed, the compose
file is also validated by it (`docker compose config -q`, which needs no engine).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
REQUIREMENTS = ROOT / "requirements.txt"

AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
SERVICES = ("postgres", "redis", "mlflow", "airloop-serving", *AIRFLOW_SERVICES)
# The services that run airloop against the deployment's models.
MODEL_SERVICES = (*AIRFLOW_SERVICES, "airloop-serving")
# Where the models and the overlay are in the airflow image (configs/ is copied there).
IMAGE_CONFIGS = "/opt/airflow/configs"
IMAGE_OVERLAYS = "/opt/airflow/configs/overlays/production.yaml"

# Variables from .env that hold secrets, and the settings that must take them from there.
SECRET_VARIABLES = frozenset(
    {
        "POSTGRES_PASSWORD",
        "AIRFLOW_FERNET_KEY",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_API_SECRET_KEY",
        "AIRFLOW_ADMIN_PASSWORD",
    }
)
SECRET_SETTINGS = {
    # service: {environment variable in the container: secret variable in .env}
    **{
        service: {
            "AIRFLOW__CORE__FERNET_KEY": "AIRFLOW_FERNET_KEY",
            "AIRFLOW__API_AUTH__JWT_SECRET": "AIRFLOW_JWT_SECRET",
            "AIRFLOW__API__SECRET_KEY": "AIRFLOW_API_SECRET_KEY",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "POSTGRES_PASSWORD",
            "AIRFLOW__CELERY__RESULT_BACKEND": "POSTGRES_PASSWORD",
        }
        for service in AIRFLOW_SERVICES
    },
    "postgres": {"POSTGRES_PASSWORD": "POSTGRES_PASSWORD"},
    "mlflow": {"MLFLOW_BACKEND_STORE_URI": "POSTGRES_PASSWORD"},
}
SECRET_SETTINGS["airflow-init"] = {
    **SECRET_SETTINGS["airflow-init"],
    "_AIRFLOW_WWW_USER_PASSWORD": "AIRFLOW_ADMIN_PASSWORD",
}

# Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err},
# ${NAME:+alt}, ${NAME+alt}, and bare $NAME; "$$" is a literal dollar sign.
_BRACED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
_BARE = re.compile(r"\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)")


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _strings(node: Any) -> Iterator[str]:
    """Every string in the parsed compose file (keys and values; comments are not data)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _references(text: str) -> list[tuple[str, str | None]]:
    """(variable, operator) for each interpolation in ``text``; escaped ``$$`` ignored."""
    text = text.replace("$$", "")
    refs = [(m["name"], m["op"]) for m in _BRACED.finditer(text)]
    refs += [(m["name"], None) for m in _BARE.finditer(_BRACED.sub("", text))]
    return refs


def _all_references(compose: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [ref for text in _strings(compose) for ref in _references(text)]


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def _service_blocks(text: str) -> dict[str, str]:
    """The raw text of each service block (two-space indented keys under ``services:``)."""
    body = text.split("\nservices:\n", 1)[1]
    body = re.split(r"\n(?=\S)", body, maxsplit=1)[0]  # up to the next top-level key
    parts = re.split(r"^  ([A-Za-z0-9._-]+):\s*$", body, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continuation line"
    return instructions


def _dockerfile_stages() -> dict[str, dict[str, Any]]:
    """Stage name -> {"base": resolved FROM image, "instructions": [(INSTR, args), ...]}."""
    global_args: dict[str, str] = {}
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for keyword, args in _dockerfile_instructions():
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert match, f"unparsed FROM {args!r}"
            image = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: global_args[m[1]], match[1])
            name = match[2] or f"stage-{len(stages)}"
            current = stages[name] = {"base": image, "instructions": []}
        elif current is None:
            if keyword == "ARG" and "=" in args:
                name, _, default = args.partition("=")
                global_args[name.strip()] = default.strip().strip('"')
        else:
            current["instructions"].append((keyword, args))
    return stages


def _stage(stages: dict[str, dict[str, Any]], name: str, keyword: str) -> list[str]:
    return [args for kw, args in stages[name]["instructions"] if kw == keyword]


def _stage_env(stage: str) -> dict[str, str]:
    """The stage's ENV variables (`ENV K=V K2=V2 ...`), later ones winning."""
    env: dict[str, str] = {}
    for args in _stage(_dockerfile_stages(), stage, "ENV"):
        for item in shlex.split(args):
            name, sep, value = item.partition("=")
            assert sep, f"{stage}: ENV {args!r}: use the NAME=value form"
            env[name] = value
    return env


def _copies(stage: str) -> dict[str, str]:
    """{path in the image: source in the repository} of the stage's COPYs from the context."""
    copies = {}
    for args in _stage(_dockerfile_stages(), stage, "COPY"):
        parts = [part for part in args.split() if not part.startswith("--")]
        if "--from=" in args or len(parts) != 2:
            continue
        copies[parts[1].rstrip("/")] = parts[0].rstrip("/")
    return copies


def _in_repository(stage: str, image_path: str) -> Path:
    """The repository path that `image_path` of the stage's image was copied from."""
    for destination, source in _copies(stage).items():
        if image_path == destination or image_path.startswith(destination + "/"):
            return ROOT / source / image_path[len(destination) :].lstrip("/")
    raise AssertionError(f"{stage}: nothing is copied to {image_path}")


def _image_root(stage: str, tmp: Path) -> Path:
    """The stage's image as a folder: every COPY from the context linked in at its path."""
    for destination, source in _copies(stage).items():
        link = tmp / destination.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT / source)
    return tmp


def _image_deployment():
    """The models the Airflow services load: compose's AIRLOOP_CONFIGS and AIRLOOP_OVERLAYS,
    read from what the image was copied from."""
    from airloop.deployment import load_deployment

    return load_deployment(
        str(_in_repository("airflow", IMAGE_CONFIGS)), str(_in_repository("airflow", IMAGE_OVERLAYS))
    )


def _pinned(package: str) -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.fullmatch(rf"{re.escape(package)}==(\S+)", line.split("#")[0].strip())
        if match:
            return match[1]
    raise AssertionError(f"{package} is not pinned with == in requirements.txt")


# --------------------------------------------------------------------------- compose


def test_compose_has_the_services(services: dict[str, dict[str, Any]]) -> None:
    missing = sorted(set(SERVICES) - set(services))
    assert not missing, f"services missing from docker-compose.yaml: {missing}"


def test_airflow_services_use_the_common_anchor(compose: dict[str, Any]) -> None:
    blocks = _service_blocks(COMPOSE_FILE.read_text())
    for name in AIRFLOW_SERVICES:
        assert "<<: *airflow-common\n" in blocks[name], f"{name} does not merge *airflow-common"


def test_airflow_image_is_built_from_the_airflow_target(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    common = compose["x-airflow-common"]
    assert common["build"]["target"] == "airflow"
    assert common["build"]["context"] == "."
    assert "dockerfile" not in common["build"], "the repository's Dockerfile is the one built"
    stages = _dockerfile_stages()
    for name in (*AIRFLOW_SERVICES, "mlflow"):
        service = services[name]
        assert service["image"] == common["image"], f"{name} runs another image"
        assert service["build"] == common["build"], f"{name} builds another image"
        assert service["build"]["target"] in stages


def test_executor_is_celery(services: dict[str, dict[str, Any]]) -> None:
    for name in AIRFLOW_SERVICES:
        env = _environment(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert re.match(r"redis://(:@)?redis:6379/", env["AIRFLOW__CELERY__BROKER_URL"]), name
        assert "@postgres/" in env["AIRFLOW__CELERY__RESULT_BACKEND"], name
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/"), (
            name
        )
    assert services["airflow-worker"]["command"][-2:] == ["celery", "worker"]


def test_the_worker_preloads_and_the_serving_container_follows_the_champion(
    services: dict[str, dict[str, Any]],
) -> None:
    from airloop.cli import build_parser

    worker = services["airflow-worker"]["command"]
    assert worker[:3] == ["python", "-m", "airloop.ops.preloaded_airflow"]
    serving = services["airloop-serving"]
    assert serving["command"][:3] == ["python", "-m", "airloop.cli"]
    args = build_parser().parse_args(serving["command"][3:])
    assert (args.func.__name__, args.host, args.port) == ("cmd_serve", "0.0.0.0", 3000)
    assert args.model is None and args.config is None, "the serving container serves every model"
    env = _environment(serving)
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["AIRLOOP_HOME"] == "/opt/airflow/state"
    assert "airloop-state:/opt/airflow/state" in serving["volumes"]


def test_the_serving_container_publishes_one_port_per_model(services: dict[str, dict[str, Any]]) -> None:
    from airloop.cli import build_parser
    from airloop.packaging.champion_server import serving_ports

    serving = services["airloop-serving"]
    args = build_parser().parse_args(serving["command"][3:])
    deployment = _image_deployment()
    ports = serving_ports([deployment.models[name] for name in deployment.names()], args.port)
    assert ports == {"flights": 3000, "weather": 3001}
    assert serving["ports"] == [f"{port}:{port}" for port in ports.values()], (
        f"airloop-serving must publish one port per model {ports}, got {serving['ports']}"
    )
    health = " ".join(serving["healthcheck"]["test"])
    assert "/readyz" in health
    for port in ports.values():
        assert re.search(rf"\b{port}\b", health), f"the healthcheck does not ask port {port}"
    # The compose file says how the next model is served.
    comments = " ".join(line.strip("# ") for line in COMPOSE_FILE.read_text().splitlines())
    assert "each further model takes the next port" in comments, "document the port of a new model"


def test_airloop_environment(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name in MODEL_SERVICES:
        env = _environment(services[name])
        assert env["AIRLOOP_HOME"] == "/opt/airflow/state", name
        assert env["AIRLOOP_CONFIGS"] == IMAGE_CONFIGS, name
        assert env["AIRLOOP_OVERLAYS"] == IMAGE_OVERLAYS, name
        assert "AIRLOOP_CONFIG" not in env, (
            f"{name}: AIRLOOP_CONFIG is gone (AIRLOOP_CONFIGS, AIRLOOP_OVERLAYS)"
        )
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
    # What those name in the image: every model config, none broken, overlays not models.
    assert _in_repository("airflow", IMAGE_CONFIGS).is_dir()
    assert _in_repository("airflow", IMAGE_OVERLAYS).is_file()
    deployment = _image_deployment()
    assert deployment.names() == ["flights", "weather"] and not deployment.broken, deployment.broken
    for model in deployment.models.values():
        assert model.training.runner == "docker", model.name
        assert model.training.docker.network_mode == compose["networks"]["default"]["name"], model.name
    env = _environment(services["airflow-worker"])
    assert env["AIRLOOP_STATE_VOLUME"] == compose["volumes"]["airloop-state"]["name"]
    worker = services["airflow-worker"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in worker["volumes"]
    assert "airloop-state:/opt/airflow/state" in worker["volumes"]


def test_airflow_init_imports_every_models_pools(services: dict[str, dict[str, Any]]) -> None:
    from airloop.cli import build_parser
    from airloop.orchestration.pools import pools_json

    script = "\n".join(services["airflow-init"]["command"])
    match = re.search(
        r"airloop (?P<args>[^>&']*?)\s*> (?P<file>\S+) && airflow pools import (?P=file)", script
    )
    assert match, "airflow-init does not import what `airloop pools` prints"
    args = build_parser().parse_args(shlex.split(match["args"]))
    assert args.func.__name__ == "cmd_pools" and args.model is None and args.config is None
    pools = json.loads(pools_json(_image_deployment().names()))
    assert sorted(pools) == [
        "airloop_dvc__flights",
        "airloop_dvc__weather",
        "airloop_promotion__flights",
        "airloop_promotion__weather",
    ]


def test_secrets_are_required_references(services: dict[str, dict[str, Any]]) -> None:
    for name, settings in SECRET_SETTINGS.items():
        env = _environment(services[name])
        for setting, variable in settings.items():
            value = env.get(setting)
            assert value is not None, f"{name}: {setting} is not set"
            assert f"${{{variable}:?" in value, (
                f"{name}: {setting} must take ${{{variable}:?...}} from .env, got {value!r}"
            )


def test_secrets_are_never_defaulted(compose: dict[str, Any]) -> None:
    refs = _all_references(compose)
    referenced = {name for name, _ in refs}
    assert SECRET_VARIABLES <= referenced, sorted(SECRET_VARIABLES - referenced)
    for name, op in refs:
        if name in SECRET_VARIABLES:
            assert op == ":?", f"${{{name}}} is referenced with {op!r}: secrets must be ':?'"


def test_every_variable_is_documented(compose: dict[str, Any]) -> None:
    documented = _env_example()
    referenced = {name for name, _ in _all_references(compose)}
    undocumented = sorted(referenced - set(documented))
    assert not undocumented, f"referenced in docker-compose.yaml, not in .env.example: {undocumented}"
    unused = sorted(set(documented) - referenced)
    assert not unused, f"in .env.example but not used by docker-compose.yaml: {unused}"


def test_env_example_holds_no_secret_values() -> None:
    documented = _env_example()
    for name in SECRET_VARIABLES:
        assert documented.get(name) == "", f".env.example must leave {name} blank"


def test_env_file_is_kept_out_of_git_and_images() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    ignored = DOCKERIGNORE.read_text().split()
    for path in (".env", ".venv/", ".git/", ".state/"):
        assert path in ignored, f".dockerignore does not exclude {path}"


def test_depends_on_targets_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = {target: {"condition": "service_started"} for target in depends_on}
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name, f"{name} depends on itself"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target} to be healthy; {target} has no healthcheck"
                )


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if source.startswith((".", "/", "~", "$")):
                continue  # a bind mount
            used.add(source)
            assert source in declared, f"{name} mounts undeclared volume {source}"
    assert declared == used, f"declared but unused volumes: {sorted(declared - used)}"


def test_compose_config_validates() -> None:
    """`docker compose config -q` validates schema and interpolation without an engine."""
    command = _compose_command()
    if command is None:
        pytest.skip("no `docker compose` plugin or `docker-compose` binary on this machine")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        env_file = Path(tmp) / ".env"
        values = _env_example()
        values.update({name: f"test-{name.lower()}" for name in SECRET_VARIABLES})
        env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        args = [*command, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", "-q"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

        # Without the secrets compose refuses, naming what is missing.
        env_file.write_text("".join(f"{k}={v}\n" for k, v in _env_example().items()))
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert any(name in result.stderr for name in SECRET_VARIABLES), result.stderr


def _compose_command() -> list[str] | None:
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        probe = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return command
    return None


# --------------------------------------------------------------------------- monitoring

DEPLOY = ROOT / "deploy"


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """{path in the container: path in the repository} of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def _in_container(service: dict[str, Any], path: str) -> Path:
    """The repository file that the service sees at `path` (through a bind mount)."""
    for target, source in _mounts(service).items():
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source / path[len(target) :].lstrip("/")
    raise AssertionError(f"nothing is mounted at {path}")


def _serving_ports(services: dict[str, dict[str, Any]]) -> dict[str, int]:
    from airloop.cli import build_parser
    from airloop.packaging.champion_server import serving_ports

    args = build_parser().parse_args(services["airloop-serving"]["command"][3:])
    deployment = _image_deployment()
    return serving_ports([deployment.models[name] for name in deployment.names()], args.port)


def _prometheus_config(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    prometheus = services["prometheus"]
    (flag,) = [arg for arg in prometheus["command"] if arg.startswith("--config.file=")]
    return yaml.safe_load(_in_container(prometheus, flag.split("=", 1)[1]).read_text())


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_monitoring_images_are_pinned(name: str, services: dict[str, dict[str, Any]]) -> None:
    image = services[name]["image"]
    repository = {"prometheus": "prom/prometheus", "grafana": "grafana/grafana"}[name]
    match = re.fullmatch(rf"{re.escape(repository)}:(?P<tag>v?\d+\.\d+\.\d+)", image)
    assert match, f"{name}: pin {repository} to an exact version tag, not {image!r}"
    assert "healthcheck" in services[name], name
    for target, source in _mounts(services[name]).items():
        assert source.exists(), f"{name} mounts {source} at {target}: missing"
        assert source.is_relative_to(DEPLOY), f"{name}: provisioning files live in deploy/, not {source}"


def test_prometheus_scrapes_every_server_airloop_serve_lists(services: dict[str, dict[str, Any]]) -> None:
    """airloop-serving's servers change ports with every switch: Prometheus reads the list
    `airloop serve` keeps in the state volume, and reaches them at the service's name."""
    from airloop.packaging.champion_server import ADVERTISE_ENV, scrape_targets_file
    from airloop.paths import StatePaths

    config = _prometheus_config(services)
    (job,) = config["scrape_configs"]
    serving = services["airloop-serving"]
    state = serving["environment"]["AIRLOOP_HOME"]
    listed = scrape_targets_file(StatePaths(Path(state))).as_posix()
    assert job["file_sd_configs"] == [{"files": [listed], "refresh_interval": "5s"}]
    assert f"airloop-state:{state}:ro" in services["prometheus"]["volumes"]
    assert serving["environment"][ADVERTISE_ENV] == "airloop-serving"
    assert "--host" in serving["command"] and "0.0.0.0" in serving["command"]


def test_prometheus_evaluates_the_rules_airloop_serve_writes_to_the_state_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    """No rules baked into deploy/: `airloop serve` renders each model's (its latency from the
    champion's gate) into the state volume and has Prometheus reload them."""
    from airloop.packaging.champion_server import alert_rules_file
    from airloop.paths import StatePaths

    prometheus, serving = services["prometheus"], services["airloop-serving"]
    state = serving["environment"]["AIRLOOP_HOME"]
    assert f"airloop-state:{state}" in serving["volumes"]
    assert f"airloop-state:{state}:ro" in prometheus["volumes"]
    written = alert_rules_file(StatePaths(Path(state))).as_posix()
    assert _prometheus_config(services)["rule_files"] == [written]
    assert not (DEPLOY / "prometheus" / "alert_rules.yml").exists(), "fixed rules would ignore the gate"
    # airloop reloads the rules and reads the firing alerts over the HTTP API.
    assert "--web.enable-lifecycle" in prometheus["command"]
    assert any(arg.startswith("--storage.tsdb.path=") for arg in prometheus["command"])
    assert "prometheus-data:/prometheus" in prometheus["volumes"]


def test_the_airloop_services_find_composes_prometheus(services: dict[str, dict[str, Any]]) -> None:
    """watch_service (the Airflow services) reads the firing alerts there, and `airloop serve`
    publishes its rules to it instead of starting a Prometheus of its own."""
    from airloop.production.service_health import PROMETHEUS_URL_ENV

    assert not any(arg.startswith("--web.listen-address=") for arg in services["prometheus"]["command"])
    port = services["prometheus"]["ports"][0].split(":")[-1]
    for name in MODEL_SERVICES:
        assert _environment(services[name]).get(PROMETHEUS_URL_ENV) == f"http://prometheus:{port}", name


def test_the_deploy_prometheus_files_pass_promtool(
    tmp_path: Path, services: dict[str, dict[str, Any]]
) -> None:
    """compose's prometheus.yml, with the state volume's path at a folder where airloop wrote
    the rules of the image's models, passes `promtool check config` (which checks those too)."""
    from airloop.monitoring.service_alerts import merged_rules
    from airloop.ops.prometheus import PrometheusNotFound, prometheus_binary, write_rules
    from airloop.packaging.champion_server import alert_rules_file
    from airloop.paths import StatePaths
    from airloop.production.service_health import model_rules

    try:
        promtool = prometheus_binary().with_name("promtool")
    except PrometheusNotFound:
        pytest.skip("no Prometheus binary: run `make prometheus`")
    if not promtool.is_file():
        pytest.skip("no promtool next to the Prometheus binary: run `make prometheus`")
    state = tmp_path / "state"
    rules = merged_rules(model_rules(model, 12.5) for model in _image_deployment().models.values())
    written = write_rules(alert_rules_file(StatePaths(state)), rules)
    mounted = services["airloop-serving"]["environment"]["AIRLOOP_HOME"].rstrip("/") + "/"
    config = tmp_path / "prometheus.yml"
    config.write_text((DEPLOY / "prometheus" / "prometheus.yml").read_text().replace(mounted, f"{state}/"))
    done = subprocess.run([str(promtool), "check", "config", str(config)], capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    count = sum(len(group["rules"]) for group in rules["groups"])
    assert re.search(rf"{re.escape(str(written))}\s+SUCCESS: {count} rules found", output), output


def test_grafana_shows_the_served_models_from_this_prometheus(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    provisioning = _in_container(grafana, "/etc/grafana/provisioning")
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus"
    published = services["prometheus"]["ports"][0].split(":")[-1]
    assert datasource["url"] == f"http://prometheus:{published}"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "airloop.yml").read_text())["providers"]
    dashboards = _in_container(grafana, provider["options"]["path"])
    files = sorted(dashboards.glob("*.json"))
    assert files, f"no dashboards in {dashboards}"
    env = _environment(grafana)
    assert _in_container(grafana, env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]) in files
    # No account with a known password: anonymous viewers, no login.
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer" and env["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"
    for file in files:
        dashboard = json.loads(file.read_text())
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == datasource["uid"], (file.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == datasource["uid"], (file.name, panel["title"])


def test_the_dashboard_has_the_service_health_panels() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "airloop-serving.json").read_text())
    panels = {panel["title"]: " ".join(t["expr"] for t in panel["targets"]) for panel in dashboard["panels"]}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)

    def panel_with(*parts: str) -> str:
        matching = [title for title, exprs in panels.items() if all(part in exprs for part in parts)]
        assert matching, f"no panel queries {parts}"
        return matching[0]

    panel_with("rate(airloop_requests_total", "by (model, version")
    panel_with("bentoml_service_request_total", 'http_response_code=~"5.."', "/predict")
    panel_with("histogram_quantile(0.95", "airloop_request_latency_seconds_bucket", "version")
    panel_with("airloop_predictions_total", "prediction)")
    panel_with("airloop_prediction_log_errors_total")
    # Every query follows the dashboard's model selector.
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "model"
    for title, exprs in panels.items():
        assert 'model=~"$model"' in exprs, title


def test_published_host_ports_do_not_collide(services: dict[str, dict[str, Any]]) -> None:
    published: dict[str, str] = {}
    for name, service in services.items():
        for port in service.get("ports") or []:
            host = str(port).rsplit(":", 1)[0]
            assert host not in published, f"{name} and {published.get(host)} both publish host port {host}"
            published[host] = name
    assert {"9090", "3300"} <= set(published)


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_has_airflow_and_trainer_targets() -> None:
    stages = _dockerfile_stages()
    assert {"airflow", "trainer"} <= set(stages), sorted(stages)
    assert stages["trainer"]["base"] == "python:3.11-slim"
    # No entrypoint: the DockerOperator's command is the whole `airloop train ...` line,
    # the same list the local runner executes.
    assert not _stage(stages, "trainer", "ENTRYPOINT")
    runs = " ".join(_stage(stages, "trainer", "RUN"))
    # torch and xgboost from PyPI are the CUDA builds (torch bundles the CUDA runtime).
    assert "download.pytorch.org/whl/cpu" not in runs and "TORCH_INDEX_URL" not in runs
    env = " ".join(_stage(stages, "trainer", "ENV"))
    assert "NVIDIA_VISIBLE_DEVICES=all" in env and "compute" in env


def test_compose_builds_the_trainer_image(services: dict[str, dict[str, Any]]) -> None:
    trainer = services["airloop-trainer"]
    assert trainer["build"] == {"context": ".", "target": "trainer"}
    for model in _image_deployment().models.values():
        assert trainer["image"] == model.training.docker.image, model.name


def test_airflow_base_image_matches_the_pinned_airflow() -> None:
    stages = _dockerfile_stages()
    match = re.fullmatch(
        r"apache/airflow:(?P<version>[^-]+)-python(?P<python>[\d.]+)", stages["airflow"]["base"]
    )
    assert match, f"airflow stage is not based on the official image: {stages['airflow']['base']}"
    assert match["version"] == _pinned("apache-airflow")
    assert match["python"] == "3.11"


@pytest.mark.parametrize("stage", ["airflow", "trainer"])
def test_stage_installs_requirements_and_airloop(stage: str) -> None:
    stages = _dockerfile_stages()
    copied = [args for args in _stage(stages, stage, "COPY") if "requirements.txt" in args.split()]
    assert copied, f"{stage}: requirements.txt is not copied"
    destination = copied[0].split()[-1]
    runs = " && ".join(_stage(stages, stage, "RUN"))
    assert re.search(rf"pip install [^&]*-r {re.escape(destination)}", runs), (
        f"{stage}: requirements are not installed with pip install -r {destination}"
    )
    # airloop itself: the wheel built from pyproject.toml (or the source tree, `pip install .`).
    assert re.search(r"pip install [^&]*(airloop[^&\s]*\.whl|\s\.(\s|$))", runs), (
        f"{stage}: airloop is not installed"
    )


def test_airflow_stage_copies_dags_plugins_configs() -> None:
    stages = _dockerfile_stages()
    copies = _stage(stages, "airflow", "COPY")
    for folder in ("dags", "plugins", "configs"):
        assert any(f" {folder}/ /opt/airflow/{folder}/" in f" {args}" for args in copies), folder


@pytest.mark.parametrize("stage", ["airflow", "trainer"])
def test_the_wheel_install_finds_the_projects_folders(stage: str) -> None:
    """A wheel knows no checkout: the image says where configs/ (and dags/, plugins/) are."""
    env = _stage_env(stage)
    assert "AIRLOOP_CONFIG" not in env, f"{stage}: AIRLOOP_CONFIG is gone (AIRLOOP_CONFIGS, AIRLOOP_OVERLAYS)"
    home = {"airflow": "/opt/airflow/state", "trainer": "/opt/airloop/state"}[stage]
    assert env["AIRLOOP_HOME"] == home
    assert "AIRLOOP_PROJECT_ROOT" in env or "AIRLOOP_CONFIGS" in env, (
        f"{stage}: set AIRLOOP_PROJECT_ROOT (or AIRLOOP_CONFIGS) to where configs/ is copied"
    )
    folders = ("dags", "plugins", "configs") if stage == "airflow" else ("configs",)
    if "AIRLOOP_PROJECT_ROOT" in env:
        for folder in folders:
            path = f"{env['AIRLOOP_PROJECT_ROOT'].rstrip('/')}/{folder}"
            assert _in_repository(stage, path) == ROOT / folder, f"{stage}: {path} is not {folder}/"
    for spec in filter(None, env.get("AIRLOOP_CONFIGS", "").split(":")):
        assert _in_repository(stage, spec).exists(), (
            f"{stage}: AIRLOOP_CONFIGS names {spec}, not in the image"
        )


@pytest.mark.parametrize(
    "command",
    [
        pytest.param("train", id="train"),  # what the DockerOperator runs, one container per trial
        pytest.param("cmd", id="CMD"),
        pytest.param("compose", id="compose-command"),
    ],
)
def test_the_trainer_runs_its_commands_without_naming_a_model(
    command: str, services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The trainer image holds every model's config, and what it runs names none: `airloop
    train` reads its config from the request, `airloop devices` must work as it is."""
    from airloop.training.runners import train_command

    argv = {
        "train": train_command(Path("/tmp/request.json"), Path("/tmp/result.json")),
        "cmd": json.loads(_stage(_dockerfile_stages(), "trainer", "CMD")[-1]),
        "compose": services["airloop-trainer"]["command"],
    }[command]
    assert argv[0] == "airloop"
    root = _image_root("trainer", tmp_path / "image")
    env = {
        name: str(root / value.lstrip("/")) if value.startswith("/") else value
        for name, value in _stage_env("trainer").items()
    }
    workdir = root / _stage(_dockerfile_stages(), "trainer", "WORKDIR")[-1].lstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    probe = (
        "import json, sys\n"
        "import airloop.cli as cli\n"
        "ran = []\n"
        "cli.cmd_train = cli.cmd_devices = lambda args, *_: ran.append(args.command) or 0\n"
        "code = cli.main(sys.argv[1:])\n"
        "print(json.dumps([code, ran]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv[1:]],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    code, ran = json.loads(done.stdout.strip().splitlines()[-1])
    assert (code, ran) == (0, [argv[1]]), f"`{' '.join(argv)}` in the trainer image: {done.stderr.strip()}"


def test_copied_sources_exist_and_are_not_dockerignored() -> None:
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for _, stage in _dockerfile_stages().items():
        for args in (a for kw, a in stage["instructions"] if kw == "COPY"):
            if "--from=" in args:
                continue
            sources = [part for part in args.split()[:-1] if not part.startswith("--")]
            for source in sources:
                if "*" in source:  # an optional glob, e.g. README.md*
                    continue
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
                assert source.rstrip("/") not in ignored, f".dockerignore excludes {source}"
