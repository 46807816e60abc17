"""The generality suite: real tables nobody wrote airloop for, each with only the config
that `airloop data profile` proposes from its first partitions, run in-process through
ingest, validation, versioning, training, the gate, registration and the bento; then its
later rows are served (none refused) and a drift check gives a verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from airloop.config import AirloopConfig, parse_config
from airloop.data.profile import profile_yaml
from airloop.packaging.serving import post_json, served_bento
from airloop.paths import StatePaths
from airloop.pipelines.continuous_training import run_continuous_training
from airloop.pipelines.ingest_data import ingest_landed
from airloop.pipelines.monitor_drift import check_drift
from tests.generality.tables import REQUIRED_SHAPES, TABLES, Table, partition_files

pytestmark = pytest.mark.generality

# Small models: the suite proves the loop runs on each table, not how good a model can be.
FAST_PARAMS = {
    "xgboost": {"n_estimators": 40, "max_depth": 4},
    "sklearn_hgb": {"max_iter": 40},
    "sklearn_linear": {},
    "torch_mlp": {"max_epochs": 5, "hidden_units": 32},
}


def proposed_config(table: Table, files: list[Path], family: str = "xgboost") -> AirloopConfig:
    """What `airloop data profile FILES --target T --task K` writes, with a small model."""
    raw = yaml.safe_load(profile_yaml([str(f) for f in files], target=table.target, task=table.task))
    raw["model"] = {**raw["model"], "family": family, "params": FAST_PARAMS[family]}
    raw["gate"] = {**raw.get("gate", {}), "bootstrap_resamples": 100}
    return parse_config(raw, f"the profile of {table.id}")


def land(files: list[Path], paths: StatePaths) -> None:
    paths.landing.mkdir(parents=True, exist_ok=True)
    for file in files:
        (paths.landing / file.name).write_bytes(file.read_bytes())


def served_answers(config: AirloopConfig, paths: StatePaths, bento: str, frame: pd.DataFrame) -> list[Any]:
    """Every row of `frame` sent to the served bento as a client would send it."""
    records = json.loads(frame[list(config.dataset.features)].to_json(orient="records", date_format="iso"))
    answers: list[Any] = []
    with served_bento(bento, paths, paths.reports / "serving.log") as base:
        for start in range(0, len(records), 500):
            answers += post_json(f"{base}/predict", {"records": records[start : start + 500]})
    return answers


def test_the_tables_cover_every_shape_the_issue_names() -> None:
    covered = {shape for table in TABLES for shape in table.covers}
    assert REQUIRED_SHAPES <= covered, REQUIRED_SHAPES - covered
    assert len(TABLES) >= 8


@pytest.mark.parametrize("table", TABLES, ids=[t.id for t in TABLES])
def test_a_real_table_runs_the_loop_from_its_profiled_config(table, tmp_path, monkeypatch) -> None:
    paths = StatePaths(tmp_path / "state")
    monkeypatch.setenv("AIRLOOP_HOME", str(paths.home))
    monkeypatch.setenv("BENTOML_HOME", str(paths.bentoml_home))
    files = partition_files(table, tmp_path / "source")
    config = proposed_config(table, files[:-1])
    _check_shape(table, config, files)

    land(files[:-1], paths)
    outcomes = ingest_landed(config, paths)
    assert [o["accepted"] for o in outcomes] == [True] * (len(files) - 1), outcomes

    record = run_continuous_training(config, paths, ["manual"], f"{table.id}-1")
    assert record["decision"]["promote"], record["decision"]["reason"]
    bento = record["promoted"]["bento"]

    # A later partition the profile never saw. A sample cannot foresee everything (a first
    # null, a value past the range so far): then it is quarantined, naming the column.
    land(files[-1:], paths)
    (later,) = ingest_landed(config, paths)
    if not later["accepted"]:
        assert any(column in later["reason"] for column in config.dataset.columns), later["reason"]
        assert (paths.quarantine / files[-1].stem / files[-1].name).exists()
    newest = files[-1] if later["accepted"] else files[-2]

    # Every row of the newest validated partition is answered, none refused.
    rows = pd.read_csv(newest, low_memory=False)
    answers = served_answers(config, paths, bento, rows)
    assert len(answers) == len(rows)
    assert {a["model_version"] for a in answers} == {record["promoted"]["version"]}

    drift = check_drift(config, paths, f"{table.id}-drift")
    assert drift["status"] in ("drift", "no_drift"), drift["reason"]
    assert drift["current_partition"] == newest.stem


def _check_shape(table: Table, config: AirloopConfig, files: list[Path]) -> None:
    """The proposal takes the table's shape as the suite claims it does."""
    frame = pd.concat(pd.read_csv(f, low_memory=False) for f in files[:-1])
    assert config.task == table.task
    for shape in table.covers:
        assert _has_shape(shape, config, frame), f"{table.id}: not {shape!r}"


def _has_shape(shape: str, config: AirloopConfig, frame: pd.DataFrame) -> bool:
    dataset = config.dataset
    label = dataset.columns[dataset.target.column]
    types = {name: dataset.columns[name].type for name in dataset.features}
    if shape.startswith("multiclass, "):
        classes = int(shape.split()[1])
        return (
            config.task == "multiclass_classification" and frame[dataset.target.column].nunique() >= classes
        )
    checks = {
        "text binary label": lambda: label.type == "str" and dataset.target.positive is not None,
        "boolean label": lambda: label.type == "bool",
        "regression": lambda: config.task == "regression",
        "one-column key": lambda: len(dataset.keys) == 1,
        "date partitions": lambda: dataset.partition.kind == "date",
        "at least 50 columns": lambda: len(dataset.columns) >= 50,
        "column with nulls": lambda: any(
            frame[c].isna().any() and dataset.columns[c].nullable for c in dataset.columns
        ),
        "column at least 20% null": lambda: any(
            frame[c].isna().mean() >= 0.2 and dataset.columns[c].nullable for c in dataset.columns
        ),
        "categorical with at least 100 values": lambda: any(
            frame[c].nunique() >= 100 and kind == "str" for c, kind in types.items()
        ),
        "constant column": lambda: any(frame[c].nunique() == 1 for c in dataset.columns),
        "date feature": lambda: "date" in types.values(),
        "datetime feature": lambda: "datetime" in types.values(),
    }
    return bool(checks[shape]())


FAMILY_TABLES = [t for t in TABLES if t.item in ("Default", "penguins")]


@pytest.mark.parametrize("family", ["sklearn_hgb", "sklearn_linear", "torch_mlp"])
@pytest.mark.parametrize("table", FAMILY_TABLES, ids=[t.id for t in FAMILY_TABLES])
def test_every_family_runs_the_loop_on_a_binary_and_a_multiclass_table(
    table, family, tmp_path, monkeypatch
) -> None:
    paths = StatePaths(tmp_path / "state")
    monkeypatch.setenv("AIRLOOP_HOME", str(paths.home))
    monkeypatch.setenv("BENTOML_HOME", str(paths.bentoml_home))
    files = partition_files(table, tmp_path / "source")
    config = proposed_config(table, files[:-1], family)
    land(files[:-1], paths)
    assert all(o["accepted"] for o in ingest_landed(config, paths))
    record = run_continuous_training(config, paths, ["manual"], f"{table.id}-{family}")
    assert record["decision"]["promote"], record["decision"]["reason"]
    # Packaging's skew check served the bento and held its answers to the MLflow model's.
    assert record["promoted"]["skew"]["max_abs_difference"] <= 1e-6
