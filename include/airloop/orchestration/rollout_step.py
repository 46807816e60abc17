"""The Airflow operator of one judged rollout step: a canary at one percentage, or a shadow.

It starts the step (`airloop.rollout.steps`), then waits deferred (on the triggerer, holding
no worker slot) while the step bakes, and judges it: advance (the task succeeds and the
next step runs), wait again (deferred once more, a minute or the bake time at most), or roll
back. A rollback undoes the rollout, sends a `rollback` notification and skips every later
step and the promotion.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from airloop.orchestration.wiring import ModelWiring

CANARY, SHADOW = "canary", "shadow"
PLAN_TASK = "plan_rollout"
# How long a step that is not ready yet waits before it is judged again, at most.
RECHECK = timedelta(minutes=1)


class RolloutStep(BaseOperator):
    ui_color = "#f5e6c8"

    def __init__(
        self, *, wiring: ModelWiring, stage: str, kind: str, percent: int | None = None, **kwargs: Any
    ):
        super().__init__(**kwargs)
        if kind not in (CANARY, SHADOW):
            raise ValueError(f"a rollout step is a {CANARY} or a {SHADOW} step, not {kind!r}")
        self.wiring, self.stage, self.kind, self.percent = wiring, stage, kind, percent

    def execute(self, context: Any) -> None:
        from airloop.registry.ledger import airflow_actor
        from airloop.rollout.steps import start_canary_step, start_shadow

        config, plan = self.wiring.run_config(self.stage, context), self._plan(context)
        actor = airflow_actor(context["dag_run"])
        if self.kind == CANARY:
            step = start_canary_step(config, self.wiring.paths, plan, int(self.percent or 0), actor)
        else:
            step = start_shadow(config, self.wiring.paths, plan, actor)
        self.log.info("%s step started: %s", self.kind, step)
        self._wait(timedelta(minutes=config.rollout.bake_minutes), step)

    def judge(self, context: Any, event: Any = None, step: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow.exceptions import AirflowSkipException

        from airloop.registry.ledger import airflow_actor
        from airloop.rollout.judge import ROLL_BACK, WAIT
        from airloop.rollout.steps import judge_canary_step, judge_shadow_step, roll_back

        config, plan, paths = (
            self.wiring.run_config(self.stage, context),
            self._plan(context),
            self.wiring.paths,
        )
        assert step is not None
        judged = (judge_canary_step if self.kind == CANARY else judge_shadow_step)(config, paths, plan, step)
        verdict = judged["verdict"]
        self.log.info("%s: %s", verdict["action"], verdict["reason"])
        if verdict["action"] == WAIT:
            self._wait(min(RECHECK, timedelta(minutes=config.rollout.bake_minutes)), step)
        if verdict["action"] == ROLL_BACK:
            details = roll_back(config, paths, plan, verdict["reason"], airflow_actor(context["dag_run"]))
            self.wiring.notify("rollback").send(context, details)
            self.wiring.show_links(context, rollout=details["record"])
            raise AirflowSkipException(f"rolled back: {verdict['reason']}")
        return judged

    def _plan(self, context: Any) -> dict[str, Any]:
        return dict(context["ti"].xcom_pull(task_ids=PLAN_TASK))

    def _wait(self, delay: timedelta, step: dict[str, Any]) -> None:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        self.defer(trigger=TimeDeltaTrigger(delay), method_name="judge", kwargs={"step": step})
