"""Roll back: `champion` returns to `previous_champion`, whose bento is rebuilt if missing.

Manual only (UI or REST). The version rolled back from becomes `previous_champion`, so a
mistaken rollback is undone by triggering this DAG again. Same effect as
`airloop --model <name> rollback`. Only this model's registry aliases move. The rollback is
recorded in the model's promotion ledger (`airloop --model <name> history`): who triggered
it, and the `reason` given in the trigger form.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, dag, task

from airloop.orchestration.wiring import ModelWiring
from airloop.pipelines.rollback_champion import DEFAULT_REASON


def build(model: ModelWiring) -> DAG:
    config, paths, champion_model = model.config, model.paths, model.assets.champion_model

    @dag(
        **model.dag_args("rollback_champion", "registry", __doc__),
        schedule=None,
        params={
            "reason": Param(
                DEFAULT_REASON,
                type="string",
                title="Reason",
                description="Why the champion is rolled back: kept in the model's promotion ledger.",
            )
        },
    )
    def rollback_champion():
        @task(outlets=[champion_model], pool=model.promotion_pool)
        def roll_back(**context) -> dict:
            from airloop.pipelines.rollback_champion import roll_back
            from airloop.registry.ledger import airflow_actor

            actor, reason = airflow_actor(context["dag_run"]), context["params"].get("reason")
            outcome = roll_back(config, paths, actor=actor, reason=reason, run_key=context["run_id"])
            print(f"champion is v{outcome['version']} again (rolled back from v{outcome['rolled_back']})")
            context["outlet_events"][champion_model].extra = outcome
            model.show_links(context, model_version=f"{config.model.registered_name}/{outcome['version']}")
            return outcome

        roll_back()

    return rollback_champion()
