"""Which DAG runs an asset event started, read from Airflow's REST API."""

from __future__ import annotations

from airloop.ops.airflow_api import AirflowClient


def runs_triggered_by(client: AirflowClient, dag_id: str, asset: str) -> list[dict]:
    """The runs of `dag_id` whose upstream asset events include one of `asset`."""
    triggered = []
    for run in client.dag_runs(dag_id):
        events = client.request("GET", f"dags/{dag_id}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
        if any(e["name"] == asset for e in events["asset_events"]):
            triggered.append(run)
    return triggered


def assert_drift_reached_training(client: AirflowClient, model: str) -> None:
    """At least one of the model's continuous_training runs was started by its drift_detected,
    and all such succeeded."""
    drift_triggered = runs_triggered_by(client, f"{model}__continuous_training", f"{model}.drift_detected")
    assert drift_triggered, f"no {model}__continuous_training run was triggered by {model}.drift_detected"
    assert all(run["state"] == "success" for run in drift_triggered)
