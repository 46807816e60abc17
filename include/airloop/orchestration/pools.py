"""The Airflow pools each model's DAGs use: one slot each, because what they guard is shared
within the model (its DVC repository, its registry aliases) and never across models.

Created by the embedded stack and by docker-compose's airflow-init (`airloop pools`
prints them in the format `airflow pools import` reads). A config added to a running
deployment gets its pools from `airloop stack up` (idempotent) or `airloop pools`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable


def dvc_pool(model: str) -> str:
    return f"airloop_dvc__{model}"


def promotion_pool(model: str) -> str:
    return f"airloop_promotion__{model}"


def model_pools(model: str) -> dict[str, str]:
    """{pool: description} of one model."""
    return {
        dvc_pool(model): f"{model}: DVC operations take its repository's lock",
        promotion_pool(model): f"{model}: registry alias moves (promotion, rollback) happen one at a time",
    }


def deployment_pools(models: Iterable[str]) -> dict[str, str]:
    return {pool: about for model in sorted(models) for pool, about in model_pools(model).items()}


def pools_json(models: Iterable[str]) -> str:
    """The models' pools as `airflow pools import` expects them."""
    return json.dumps(
        {name: {"slots": 1, "description": description, "include_deferred": False}
         for name, description in deployment_pools(models).items()},
        indent=2,
    )  # fmt: skip
