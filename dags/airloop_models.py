"""Every airloop model's Airflow DAGs: one set per config in the deployment (`airloop.deployment`).

Wiring only: the DAGs are built by `airloop.orchestration.factory`, one per stage per model
(`<model>__ingest_data`, `<model>__continuous_training`, ...). The dag-processor's safe mode
parses only files that mention both "airflow" and "dag", as this docstring does.
"""

from __future__ import annotations

from airloop.orchestration.factory import deployment_dags

globals().update(deployment_dags())
