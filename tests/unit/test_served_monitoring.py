"""Monitoring what the served model was asked, without Airflow: a real champion trained on two
months of flights, served by `bentoml serve` with its prediction log; March's rows are sent
with a bug upstream (every dep_delay 0), their real labels land later and are joined, and
monitor_drift on served traffic finds the drift and the live performance drop."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from airloop.config import AirloopConfig
from airloop.packaging.serving import post_json, served_bento
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
    sent = march[[*served.dataset.features, *served.logged_keys()]].assign(dep_delay=0.0)
    records = json.loads(sent.to_json(orient="records"))
    with served_bento(bento, paths, paths.reports / "serve.log", prediction_log=paths.prediction_log) as base:
        answers = [a for start in range(0, len(records), 200)
                   for a in post_json(f"{base}/predict", {"records": records[start : start + 200]})]  # fmt: skip
    assert len(answers) == len(records)

    # Before labels: drift on what was asked, no performance yet.
    before = check_drift(served, paths, "served-check-1")
    assert before["current"] == "served" and before["served_rows"] == len(records)
    assert DATA_DRIFT in before["signals"] and "dep_delay" in before["drifted_columns"]
    assert before["performance"]["status"] == "skipped"
    assert set(before["out_of_range_shares"]) >= {"distance", "dep_delay"}

    labels = pd.DataFrame({"inference_id": [a["inference_id"] for a in answers], "arr_delay": march["arr_delay"]})
    paths.labels_landing.mkdir(parents=True)
    labels.to_csv(paths.labels_landing / "march-labels.csv", index=False)
    (joined,) = join_pending_labels(served, paths)["reports"]
    assert joined["counts"]["joined"] == labels["arr_delay"].notna().sum()
    assert joined["counts"]["missing"] == labels["arr_delay"].isna().sum()

    after = check_drift(served, paths, "served-check-2")
    performance = after["performance"]
    assert PERFORMANCE_DROP in after["signals"] and after["drift_detected"]
    assert performance["observed"] < performance["expected"] - served.drift.max_metric_drop
    (day,) = after["live_performance"]
    assert day["model_version"] == record["promoted"]["version"] and day["rows"] == performance["labelled_rows"]

    both = check_drift(config_variant(served, drift={"current": "both"}), paths, "served-check-3")
    assert both["served"]["signals"] == after["signals"]
    assert set(both["signals"]) >= set(after["signals"]) and both["current_partitions"]
