"""What wires airloop's DAGs together: the Assets between them and the defaults they share.

Imported by the DAG files (Airflow puts this folder on sys.path); not a DAG itself, so
.airflowignore keeps the dag-processor from parsing it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset

from airloop.pools import DVC_POOL, PROMOTION_POOL

__all__ = ["DVC_POOL", "PROMOTION_POOL"]

VALIDATED_DATA = Asset(name="validated_data", uri="airloop://validated_data", group="airloop")
DRIFT_DETECTED = Asset(name="drift_detected", uri="airloop://drift_detected", group="airloop")
CHAMPION_MODEL = Asset(name="champion_model", uri="airloop://champion_model", group="airloop")

# What each asset means when it triggers continuous training.
TRIGGER_OF_ASSET = {VALIDATED_DATA.name: "new_data", DRIFT_DETECTED.name: "drift"}

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_ARGS = {"owner": "airloop", "retries": 1, "retry_delay": timedelta(seconds=10)}
