"""Every airloop model's DAGs: one set per config in the deployment (`airloop.deployment`).

Wiring only: the DAGs are built by `airloop.orchestration.factory`, one per stage per model
(`<model>__ingest_data`, `<model>__continuous_training`, ...).
"""

from __future__ import annotations

from airloop.orchestration.factory import deployment_dags

globals().update(deployment_dags())
