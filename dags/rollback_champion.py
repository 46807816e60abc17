"""Roll back: `champion` returns to `previous_champion`, whose bento is rebuilt if missing.

Manual only (UI or REST). The version rolled back from becomes `previous_champion`, so a
mistaken rollback is undone by triggering this DAG again. Same effect as `airloop rollback`.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from airloop_wiring import CHAMPION_MODEL, DEFAULT_ARGS, PROMOTION_POOL, START_DATE, show_links

from airloop.config import load_config
from airloop.paths import StatePaths

CONFIG = load_config()
PATHS = StatePaths.from_env()


@dag(
    schedule=None,
    start_date=START_DATE,
    max_active_runs=1,
    catchup=False,
    tags=["airloop", "registry"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
)
def rollback_champion():
    @task(outlets=[CHAMPION_MODEL], pool=PROMOTION_POOL)
    def roll_back(**context) -> dict:
        from airloop.pipelines.rollback_champion import roll_back

        outcome = roll_back(CONFIG, PATHS)
        print(f"champion is v{outcome['version']} again (rolled back from v{outcome['rolled_back']})")
        context["outlet_events"][CHAMPION_MODEL].extra = outcome
        show_links(context, model_version=f"{CONFIG.model.registered_name}/{outcome['version']}")
        return outcome

    roll_back()


rollback_champion()
