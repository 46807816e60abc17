"""The `docker` runner, with no Docker engine here: the operator as the DAG builds and renders it,
its command run as the container would run it, and GPU settings that fail loudly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from airloop.config import ConfigError
from airloop.paths import PROJECT_ROOT
from airloop.pipelines.continuous_training import plan_training
from airloop.training.devices import GpuUnavailable, resolve_device
from airloop.training.docker_runner import daemon_has_gpu, operator_kwargs, trial_kwargs, wants_gpu
from airloop.training.train import TrainResult
from tests.conftest import FLIGHTS_CONFIG, config_variant

DAGS_FOLDER = PROJECT_ROOT / "dags"


def in_docker(config, gpu, **docker):
    docker = {"image": "airloop-trainer:test", **docker}
    return config_variant(config, training={"runner": "docker", "gpu": gpu, "docker": docker})


def rendered_operator(config, paths, trial: dict, try_number: int = 1):
    """The DockerOperator one mapped `train_trial` instance becomes, with its templates rendered."""
    from airflow.providers.docker.operators.docker import DockerOperator

    train_trial = DockerOperator(
        task_id="train_trial", **operator_kwargs(config, paths), **trial_kwargs(trial)
    )
    train_trial.render_template_fields({"ti": SimpleNamespace(try_number=try_number)})
    return train_trial


def test_the_dag_maps_a_docker_operator_per_trial_when_the_runner_is_docker(tmp_path, monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.docker.operators.docker import DockerOperator

    raw = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    raw["training"] = {"runner": "docker", "gpu": True, "docker": {"network_mode": "airloop_default"}}
    variant = tmp_path / "docker.yaml"
    variant.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("AIRLOOP_CONFIGS", str(variant))
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path / "state"))
    bag = DagBag(dag_folder=str(DAGS_FOLDER), safe_mode=False)
    assert bag.import_errors == {}
    trial_task = bag.dags["flights__continuous_training"].get_task("train_trial")
    assert trial_task.operator_class is DockerOperator
    shared = trial_task.partial_kwargs
    assert shared["image"] == "airloop-trainer:latest" and shared["network_mode"] == "airloop_default"
    assert shared["auto_remove"] == "success" and shared["mount_tmp_dir"] is False
    assert shared["mounts"][0]["Target"] == str(tmp_path / "state")
    assert {"plan_training"} == trial_task.upstream_task_ids
    assert {"select_candidate"} == trial_task.downstream_task_ids


def test_the_rendered_operator_runs_the_same_command_with_state_mounted_and_a_gpu(
    config, paths, training_window, monkeypatch
) -> None:
    monkeypatch.setenv("AIRLOOP_HOST_STATE_DIR", "/srv/airloop/state")
    docker = in_docker(config, True, network_mode="airloop_default")
    [trial] = plan_training(docker, paths, training_window.summary(), "manual__2026-11-22T10:00:00+00:00")
    operator = rendered_operator(docker, paths, trial, try_number=2)

    assert operator.image == "airloop-trainer:test"
    assert operator.command == [
        "airloop",
        "train",
        "--request",
        trial["request"],
        "--result",
        trial["result"],
    ]
    assert operator.container_name == "airloop-train-manual__2026-11-22T10_00_00_00_00-trial0-try2"
    [mount] = operator.mounts
    assert (mount["Source"], mount["Target"], mount["Type"]) == (
        "/srv/airloop/state",
        str(paths.home),
        "bind",
    )
    assert operator.environment["AIRLOOP_HOME"] == str(paths.home)
    assert operator.environment["MLFLOW_TRACKING_URI"] == paths.tracking_uri()
    [gpu] = operator.device_requests
    assert gpu["Count"] == -1 and gpu["Capabilities"] == [["gpu"]]
    assert operator.auto_remove == "success" and operator.mount_tmp_dir is False
    assert operator.network_mode == "airloop_default" and operator.shm_size == 2 * 1024**3


def test_without_a_gpu_setting_no_device_is_requested(config, paths, training_window) -> None:
    [trial] = plan_training(in_docker(config, False), paths, training_window.summary(), "run")
    assert trial["gpu"] is False
    assert rendered_operator(in_docker(config, False), paths, trial).device_requests is None


def test_the_container_command_trains_as_a_process_with_only_the_operator_environment(
    config, paths, training_window
) -> None:
    """What the trainer image runs, run here: the rendered command and environment, nothing else."""
    docker = config_variant(in_docker(config, False), model={"params": {"n_estimators": 20}})
    [trial] = plan_training(docker, paths, training_window.summary(), "run")
    operator = rendered_operator(docker, paths, trial)
    entrypoint = shutil.which("airloop", path=str(Path(sys.executable).parent))
    environment = {**operator.environment, "PATH": os.environ["PATH"], "HOME": str(paths.home)}
    done = subprocess.run(
        [entrypoint, *operator.command[1:]], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = TrainResult.read(Path(trial["result"]))
    assert result.device == "cpu" and result.metrics["roc_auc"] > 0.6
    assert result.params == {"n_estimators": 20}


def test_auto_asks_the_daemon_and_names_the_setting_when_none_answers(config) -> None:
    docker = in_docker(config, "auto", docker_url="unix:///nonexistent/docker.sock")
    with pytest.raises(
        RuntimeError, match="training.docker.docker_url: no Docker daemon answers at unix:///nonexistent"
    ):
        wants_gpu(docker)
    assert daemon_has_gpu({"Runtimes": {"runc": {}, "nvidia": {"path": "nvidia-container-runtime"}}})
    assert daemon_has_gpu(
        {"Runtimes": {"runc": {}}, "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"}]}
    )
    assert not daemon_has_gpu({"Runtimes": {"runc": {}}})


def test_a_required_gpu_on_a_machine_without_one_fails_before_any_compute(
    config, paths, training_window
) -> None:
    local_gpu = config_variant(config, training={"gpu": True})
    with pytest.raises(GpuUnavailable, match="training.gpu is true but no CUDA device is visible"):
        plan_training(local_gpu, paths, training_window.summary(), "run")
    assert not paths.runs.exists()  # no request was written, nothing was trained
    assert resolve_device("auto", available=False) == "cpu"
    assert resolve_device("auto", available=True) == "cuda"
    assert resolve_device(False, available=True) == "cpu"


def test_gpu_true_with_a_cpu_only_family_is_a_config_error(config) -> None:
    with pytest.raises(ConfigError, match="training.gpu: true needs a family that trains on a GPU"):
        config_variant(config, model={"family": "sklearn_hgb", "params": {}}, training={"gpu": True})
