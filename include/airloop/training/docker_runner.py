"""The `docker` runner: each trial is a DockerOperator running `airloop train` in the trainer image.

The state directory is mounted at the same path it has on the Airflow worker, so the
request's paths (training data, result file, the SQLite MLflow store of the embedded
stack) mean the same inside the container. When the worker itself runs in a container,
the daemon cannot see the worker's paths: docker-compose names the state volume
(AIRLOOP_STATE_VOLUME) and the trainer mounts that volume; a worker on a host with a bind
mount sets AIRLOOP_HOST_STATE_DIR to the host's path instead.

No tmp dir is mounted (Airflow's default breaks on remote daemons). A successful container
is removed; a failed one is kept for inspection under a name that says which run, trial
and try it was.
"""

from __future__ import annotations

import os
from typing import Any

from airloop.config import AirloopConfig
from airloop.paths import StatePaths, safe_key

STATE_VOLUME_ENV = "AIRLOOP_STATE_VOLUME"
HOST_STATE_ENV = "AIRLOOP_HOST_STATE_DIR"


def container_name(run_key: str, trial: int) -> str:
    """Unique per run, trial and try; the try number is filled in by Airflow's templating."""
    return f"airloop-train-{safe_key(run_key)}-trial{trial}-try{{{{ ti.try_number }}}}"


def state_mount(paths: StatePaths) -> Any:
    """The state directory as the trainer container sees it: at the worker's path."""
    from docker.types import Mount

    target = str(paths.home)
    volume = os.environ.get(STATE_VOLUME_ENV)
    if volume:
        return Mount(target=target, source=volume, type="volume")
    return Mount(target=target, source=os.environ.get(HOST_STATE_ENV, target), type="bind")


def operator_kwargs(config: AirloopConfig, paths: StatePaths) -> dict[str, Any]:
    """What every trial's DockerOperator shares (its `partial(...)` arguments)."""
    docker = config.training.docker
    state = str(paths.home)
    return {
        "image": docker.image,
        "docker_url": docker.docker_url,
        "network_mode": docker.network_mode,
        "mounts": [state_mount(paths)],
        "environment": {
            "AIRLOOP_HOME": state,
            "MLFLOW_TRACKING_URI": paths.tracking_uri(),
            "PYTHONUNBUFFERED": "1",
        },
        "auto_remove": "success",
        "mount_tmp_dir": False,
        "shm_size": docker.shm_size,
        "max_active_tis_per_dagrun": config.training.max_parallel_trials,
    }


def trial_kwargs(trial: dict[str, Any]) -> dict[str, Any]:
    """One trial's own DockerOperator arguments (its `expand_kwargs` entry)."""
    from docker.types import DeviceRequest

    gpus = [DeviceRequest(count=-1, capabilities=[["gpu"]])] if trial["gpu"] else None
    return {"command": trial["command"], "container_name": trial["container_name"], "device_requests": gpus}


def daemon_has_gpu(info: dict[str, Any]) -> bool:
    """Whether `docker info` shows a way to hand a container an NVIDIA GPU."""
    if "nvidia" in (info.get("Runtimes") or {}):
        return True
    return any(str(d.get("ID", "")).startswith("nvidia.com/gpu") for d in info.get("DiscoveredDevices") or [])


def wants_gpu(config: AirloopConfig) -> bool:
    """Whether trial containers request a GPU: `true`, or `auto` on a daemon that has one."""
    gpu = config.training.gpu
    if gpu != "auto":
        return bool(gpu)
    import docker

    url = config.training.docker.docker_url
    try:
        info = docker.APIClient(base_url=url).info()
    except docker.errors.DockerException as error:
        raise RuntimeError(
            f"training.docker.docker_url: no Docker daemon answers at {url}: {error}"
        ) from None
    return daemon_has_gpu(info)
