"""Monitoring what the served model was asked, without Airflow: a real champion trained on two
months of flights, served by `bentoml serve` with its prediction log; March's rows are sent
with a bug upstream (every dep_delay 0), their real labels land later and are joined, and
monitor_drift on served traffic finds the drift and the live performance drop, and logs the
served window's numbers to the model's monitoring experiment."""

from __future__ import annotations

import pytest

from airloop.config import AirloopConfig
from airloop.demo.live_traffic import land_labels, live_metric, request_records, send_records
from airloop.monitoring.history import monitoring_experiment
from airloop.packaging.serving import served_bento
from airloop.paths import StatePaths
from airloop.pipelines.continuous_training import run_continuous_training
from airloop.pipelines.monitor_drift import DATA_DRIFT, PERFORMANCE_DROP, check_drift
from airloop.production.labels_join import join_pending_labels
from airloop.registry.tracking import tracking_client
from tests.conftest import config_variant

pytestmark = pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")


def _logged(paths: StatePaths, config: AirloopConfig, summary: dict) -> dict[str, float]:
    """The metrics of the check's MLflow run, which is in the model's monitoring experiment."""
    client = tracking_client(paths)
    run = client.get_run(summary["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == monitoring_experiment(config)
    return dict(run.data.metrics)


def test_served_traffic_with_late_labels_shows_drift_and_a_live_performance_drop(
    config: AirloopConfig, paths: StatePaths, training_window, flights_month, monkeypatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(paths.bentoml_home))
    served = config_variant(config, drift={"current": "served", "min_rows": 300})
    record = run_continuous_training(served, paths, ["manual"], "served-run-1")
    bento = record["promoted"]["bento"]

    march = flights_month(3, 1200)
    # One destination the training months never had (CHO): an unseen category when served.
    assert (march["dest"] == "CHO").sum() == 1
    records = request_records(march.assign(dep_delay=0.0), served)
    with served_bento(bento, paths, paths.reports / "serve.log", prediction_log=paths.prediction_log) as base:
        answers = send_records(base, records)
    assert len(answers) == len(records)

    # Before labels: drift on what was asked, no performance yet.
    before = check_drift(served, paths, "served-check-1")
    assert before["current"] == "served" and before["served_rows"] == len(records)
    assert DATA_DRIFT in before["signals"] and "dep_delay" in before["drifted_columns"]
    assert before["performance"]["status"] == "skipped"
    assert set(before["out_of_range_shares"]) >= {"distance", "dep_delay"}
    version = record["promoted"]["version"]
    assert before["served_rows_by_version"] == {version: len(records)}
    # Measured on the served window: the unseen destination, and the champion's answers.
    assert before["unseen_shares"]["dest"] >= 1 / len(records)
    assert before["unseen_shares"]["carrier"] == 0
    drifted_predictions = before["prediction_drift"]
    assert drifted_predictions is not None and drifted_predictions["column"] == "prediction"
    assert "predictions" in before["reason"]
    logged = _logged(paths, served, before)
    assert logged["served_rows"] == len(records) and logged[f"served_rows.v{version}"] == len(records)
    assert logged["drift_share"] == pytest.approx(before["drift_share"])
    assert logged["prediction_drift_score"] == pytest.approx(drifted_predictions["score"])
    assert logged["unseen.dest"] == pytest.approx(before["unseen_shares"]["dest"])
    for column, share in before["out_of_range_shares"].items():
        assert logged[f"out_of_range.{column}"] == pytest.approx(share)
    assert "performance_observed" not in logged and not any(name.startswith("live.") for name in logged)

    land_labels(paths, served, "2013-03", [a["inference_id"] for a in answers], march)
    (joined,) = join_pending_labels(served, paths)["reports"]
    assert joined["counts"]["joined"] == march["arr_delay"].notna().sum()
    assert joined["counts"]["missing"] == march["arr_delay"].isna().sum()
    live = live_metric(served, paths, "2013-03")
    assert live is not None and live["rows"] == joined["counts"]["joined"] and live["metric"] == "roc_auc"

    after = check_drift(served, paths, "served-check-2")
    performance = after["performance"]
    assert PERFORMANCE_DROP in after["signals"] and after["drift_detected"]
    assert performance["observed"] < performance["expected"] - served.drift.max_metric_drop
    (day,) = after["live_performance"]
    assert day["model_version"] == version and day["rows"] == performance["labelled_rows"]
    logged = _logged(paths, served, after)
    assert logged["performance_observed"] == pytest.approx(performance["observed"])
    assert logged["performance_expected"] == pytest.approx(performance["expected"])
    assert logged["labelled_rows"] == performance["labelled_rows"]
    assert logged[f"live.v{version}.roc_auc"] == pytest.approx(day["roc_auc"])
    assert logged[f"live.v{version}.rows"] == day["rows"]
    (point,) = tracking_client(paths).get_metric_history(after["mlflow_run_id"], f"live.v{version}.roc_auc")
    assert point.step == int(day["day"].replace("-", ""))

    both = check_drift(config_variant(served, drift={"current": "both"}), paths, "served-check-3")
    assert both["served"]["signals"] == after["signals"]
    assert set(both["signals"]) >= set(after["signals"]) and both["current_partitions"]
    # The ingested half was measured too: the champion scored the validated partitions.
    assert both["predicted_rows"] == 3000 * len(both["current_partitions"])
    assert both["prediction_drift"] is not None
    assert both["drift_share"] is not None and "arr_delay" in both["column_scores"]
    assert "arr_delay" not in both["served"]["column_scores"]
    assert both["served"]["served_rows"] == len(records)
    logged = _logged(paths, served, both)
    assert logged["drift_share"] == pytest.approx(both["drift_share"])
    assert logged["served.drift_share"] == pytest.approx(both["served"]["drift_share"])
    assert logged["served.served_rows"] == len(records)
    assert logged[f"live.v{version}.roc_auc"] == pytest.approx(day["roc_auc"])
