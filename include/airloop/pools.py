"""The Airflow pools airloop's DAGs use: one slot each, because what they guard is shared.

Created by the embedded stack and by docker-compose's airflow-init (`airloop pools`
prints them in the format `airflow pools import` reads).
"""

from __future__ import annotations

import json

DVC_POOL = "airloop_dvc"
PROMOTION_POOL = "airloop_promotion"

POOLS = {
    DVC_POOL: "DVC operations take a repository lock",
    PROMOTION_POOL: "registry alias moves (promotion, rollback) happen one at a time",
}


def pools_json() -> str:
    """The pools as `airflow pools import` expects them."""
    return json.dumps(
        {name: {"slots": 1, "description": description, "include_deferred": False}
         for name, description in POOLS.items()},
        indent=2,
    )  # fmt: skip
