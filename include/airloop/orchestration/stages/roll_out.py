"""Roll out a registered version: as a canary in steps, as a shadow, or all at once.

Scheduled on the model's `rollout_requested` (continuous_training emits it for a candidate
that passed the gate when `rollout.strategy` is canary or shadow), or triggered in the UI or
over REST with a `version` (empty: the registry's challenger) and, optionally, another
`strategy`. `plan_rollout` checks the version, builds its bento and waits for `airloop
serve` to hold a warm server of it. Then one path:

- canary: one `canary_<percent>` task per step of `rollout.steps` before 100; each gives
  the canary its share, waits deferred while it bakes, and judges it against the champion;
- shadow: `shadow` copies the traffic to the version and judges it on its paired answers;
- blue_green: straight on.

`promote_rolled_out` moves `champion` to the version (all traffic). A step that fails its
judgement rolls back instead: the canary or shadow ends, the champion keeps the traffic,
a `rollback` notification goes out, and the rollout record (`reports/rollouts/<run>.md`)
and the promotion ledger say why.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, chain, dag, task

from airloop.orchestration.wiring import ModelWiring

STAGE = "roll_out"


def build(model: ModelWiring) -> DAG:
    from airflow.providers.standard.operators.empty import EmptyOperator

    from airloop.orchestration.rollout_step import PLAN_TASK, RolloutStep

    config, paths, champion_model = model.config, model.paths, model.assets.champion_model

    @dag(
        **model.dag_args(STAGE, "rollout", __doc__),
        schedule=[model.assets.rollout_requested],
        params={
            **model.run_params(STAGE),
            "version": Param(
                None,
                type=["null", "string"],
                title="Version",
                description="The registered version to roll out. Empty: the registry's challenger.",
            ),
        },
    )
    def roll_out():
        @task(task_id=PLAN_TASK)
        def plan_rollout(**context) -> dict:
            from airloop.rollout.steps import plan_rollout

            version = context["params"].get("version") or _requested_version(context)
            plan = plan_rollout(model.run_config(STAGE, context), paths, version, context["run_id"])
            print(f"rolling out v{plan['version']} beside champion v{plan['champion']}: {plan['strategy']}")
            return plan

        steps = [
            RolloutStep(task_id=f"canary_{p}", wiring=model, stage=STAGE, kind="canary", percent=p)
            for p in config.rollout.steps[:-1]
        ]
        shadow = RolloutStep(task_id="shadow", wiring=model, stage=STAGE, kind="shadow")
        blue_green = EmptyOperator(task_id="blue_green")
        first_of = {"canary": steps[0].task_id if steps else blue_green.task_id, "shadow": shadow.task_id}

        @task.branch
        def choose_path(plan: dict) -> str:
            return first_of.get(plan["strategy"], blue_green.task_id)

        @task(
            outlets=[champion_model],
            pool=model.promotion_pool,
            trigger_rule="none_failed_min_one_success",
            on_success_callback=model.notify("promotion", details_from="promote_rolled_out"),
        )
        def promote_rolled_out(**context) -> dict:
            from airloop.registry.ledger import airflow_actor
            from airloop.rollout.steps import finish, rollout_record

            # Pulled, not passed: plan_rollout upstream would let it run after a rollback.
            plan = context["ti"].xcom_pull(task_ids=PLAN_TASK)
            outcome = finish(model.run_config(STAGE, context), paths, plan, airflow_actor(context["dag_run"]))
            context["outlet_events"][champion_model].extra = outcome
            version = f"{config.model.registered_name}/{outcome['version']}"
            record = rollout_record(paths, plan["run_key"]).with_suffix(".md")
            model.show_links(context, model_version=version, rollout=record)
            return outcome

        plan = plan_rollout()
        path = choose_path(plan)
        promote = promote_rolled_out()
        path >> [blue_green, shadow, *steps[:1]]
        if steps:
            chain(*steps)
        [blue_green, shadow, *steps[-1:]] >> promote

    return roll_out()


def _requested_version(context) -> str | None:
    """The version continuous_training handed on (its rollout_requested event), if any."""
    events = [e for found in context.get("triggering_asset_events", {}).values() for e in found]
    return str(events[-1].extra["version"]) if events and events[-1].extra.get("version") else None
