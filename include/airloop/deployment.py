"""The models of one deployment: one config file each, with the deployment's overlays laid over.

The model configs are what `$AIRLOOP_CONFIGS` names (files or folders, separated by ':'),
else every `configs/*.yaml`. Overlays (`configs/overlays/*.yaml`, e.g. production.yaml) are
never models: `$AIRLOOP_OVERLAYS` names the ones laid over every model, in order.

Each file is loaded on its own, so a broken one breaks only its model: `Deployment.broken`
holds its message (naming the key), and the other models load. Two files may not claim the
same model name or registered model: the later one (in path order) is broken.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from airloop.config import AirloopConfig, ConfigError, load_config
from airloop.paths import PROJECT_ROOT

CONFIGS_ENV = "AIRLOOP_CONFIGS"
OVERLAYS_ENV = "AIRLOOP_OVERLAYS"


def configs_folder() -> Path:
    return PROJECT_ROOT / "configs"


def _split(spec: str) -> list[str]:
    return [part for part in spec.split(os.pathsep) if part.strip()]


def model_config_files(spec: str | None = None) -> list[Path]:
    """The deployment's model config files, in path order (`spec` as `$AIRLOOP_CONFIGS`)."""
    spec = spec if spec is not None else os.environ.get(CONFIGS_ENV, "")
    named = [Path(part) for part in _split(spec)] or [configs_folder()]
    files: list[Path] = []
    for path in named:
        files += sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
    return sorted({f.resolve() for f in files})


def overlay_files(spec: str | None = None) -> list[Path]:
    """The overlays laid over every model (`spec` as `$AIRLOOP_OVERLAYS`), in order."""
    spec = spec if spec is not None else os.environ.get(OVERLAYS_ENV, "")
    return [Path(part).resolve() for part in _split(spec)]


def load_model_config(path: Path, overlays: Iterable[Path] = ()) -> AirloopConfig:
    """One model's config: its file with the overlays laid over it; ConfigError names the key."""
    return load_config(os.pathsep.join(str(p) for p in (path, *overlays)))


@dataclass(frozen=True)
class Deployment:
    """Every model config that loads ({model name: config}, with the file it came from),
    and every one that does not ({file: why})."""

    models: dict[str, AirloopConfig]
    files: dict[str, Path]
    broken: dict[Path, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.models)

    def model(self, name: str) -> AirloopConfig:
        """The config of model `name`; ConfigError lists the models there are."""
        if name in self.models:
            return self.models[name]
        for path, error in self.broken.items():
            if path.stem == name:
                raise ConfigError(error)
        raise ConfigError(f"no model {name!r} in this deployment; its models: {self.names() or 'none'}")

    def only_model(self) -> AirloopConfig:
        """The one model, when there is exactly one; else ConfigError asking for --model."""
        if len(self.models) == 1 and not self.broken:
            return next(iter(self.models.values()))
        if not self.models and len(self.broken) == 1:
            raise ConfigError(next(iter(self.broken.values())))
        raise ConfigError(
            f"this deployment has models {self.names()}"
            + (f" and broken configs {sorted(str(p) for p in self.broken)}" if self.broken else "")
            + ": name one with --model (or a file with --config)"
        )


def load_deployment(configs: str | None = None, overlays: str | None = None) -> Deployment:
    """Every model config of the deployment (`configs`, `overlays` as the environment's)."""
    laid_over = overlay_files(overlays)
    models: dict[str, AirloopConfig] = {}
    files: dict[str, Path] = {}
    broken: dict[Path, str] = {}
    registered: dict[str, str] = {}
    for path in model_config_files(configs):
        try:
            config = load_model_config(path, laid_over)
        except ConfigError as error:
            broken[path] = str(error)
            continue
        clash = _clash(config, files, registered)
        if clash:
            broken[path] = f"invalid config {path}:\n  {clash}"
            continue
        models[config.name] = config
        files[config.name] = path
        registered[config.model.registered_name] = config.name
    return Deployment(models, files, broken)


def _clash(config: AirloopConfig, files: dict[str, Path], registered: dict[str, str]) -> str | None:
    if config.name in files:
        return f"name: {config.name!r} is already the name of {files[config.name]}"
    owner = registered.get(config.model.registered_name)
    if owner is not None:
        return (
            f"model.registered_name: {config.model.registered_name!r} is already model {owner!r}'s "
            f"({files[owner]})"
        )
    return None
