"""Monitoring what the served model was asked, without Airflow: a real champion trained on two
months of flights, served by `bentoml serve` with its prediction log; March's rows are sent
with a bug upstream (every dep_delay 0), their real labels land later and are joined, and
monitor_drift on served traffic finds the drift and the live performance drop."""

from __future__ import annotations

import pytest

from airloop.config import AirloopConfig
from airloop.demo.live_traffic import land_labels, live_metric, request_records, send_records
from airloop.packaging.serving import served_bento
from airloop.paths import StatePaths
from airloop.pipelines.continuous_training import run_continuous_training
from airloop.pipelines.monitor_drift import DATA_DRIFT, PERFORMANCE_DROP, check_drift
from airloop.production.labels_join import join_pending_labels
from tests.conftest import config_variant

pytestmark = pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")


def test_served_traffic_with_late_labels_shows_drift_and_a_live_performance_drop(
    config: AirloopConfig, paths: StatePaths, training_window, flights_month, monkeypatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(paths.bentoml_home))
    served = config_variant(config, drift={"current": "served", "min_rows": 300})
    record = run_continuous_training(served, paths, ["manual"], "served-run-1")
    bento = record["promoted"]["bento"]

    march = flights_month(3, 1200)
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
    assert (
        day["model_version"] == record["promoted"]["version"] and day["rows"] == performance["labelled_rows"]
    )

    both = check_drift(config_variant(served, drift={"current": "both"}), paths, "served-check-3")
    assert both["served"]["signals"] == after["signals"]
    assert set(both["signals"]) >= set(after["signals"]) and both["current_partitions"]
