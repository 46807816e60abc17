"""Which DAG runs an asset event started, read from Airflow's REST API."""

from __future__ import annotations

from airloop.airflow_api import AirflowClient


def runs_triggered_by(client: AirflowClient, dag_id: str, asset: str) -> list[dict]:
    """The runs of `dag_id` whose upstream asset events include one of `asset`."""
    triggered = []
    for run in client.dag_runs(dag_id):
        events = client.request("GET", f"dags/{dag_id}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
        if any(e["name"] == asset for e in events["asset_events"]):
            triggered.append(run)
    return triggered


def assert_drift_reached_training(client: AirflowClient) -> None:
    """At least one continuous_training run was started by drift_detected, and all such succeeded."""
    drift_triggered = runs_triggered_by(client, "continuous_training", "drift_detected")
    assert drift_triggered, "no continuous_training run was triggered by drift_detected"
    assert all(run["state"] == "success" for run in drift_triggered)
