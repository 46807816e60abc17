"""The Assets that wire airloop's DAGs together (imported by the DAG files, not a DAG itself)."""

from __future__ import annotations

from airflow.sdk import Asset

VALIDATED_DATA = Asset(name="validated_data", uri="airloop://validated_data", group="airloop")
DRIFT_DETECTED = Asset(name="drift_detected", uri="airloop://drift_detected", group="airloop")
CHAMPION_MODEL = Asset(name="champion_model", uri="airloop://champion_model", group="airloop")

# What each asset means when it triggers continuous training.
TRIGGER_OF_ASSET = {VALIDATED_DATA.name: "new_data", DRIFT_DETECTED.name: "drift"}
