"""A person approves a promotion before it happens (`gate.require_approval`).

`PromotionApproval` is Airflow's human-in-the-loop ApprovalOperator (standard provider) set
between `package_model` and `promote_champion`. It asks on the Airflow UI's Required
Actions page (and over REST: `PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/
approve_promotion/-1/hitlDetails` with `{"chosen_options": ["Approve"], "params_input":
{"comment": "..."}}`), showing the model, the candidate version, the gate's verdict and
numbers, and links to the decision record, the model card and the MLflow version. While
it waits the task is parked (`awaiting_input`, no worker slot); after
`gate.approval_timeout_minutes` the scheduler answers `gate.on_approval_timeout`.

Approve lets `promote_champion` run; Reject (by a person or a timeout) skips it, so the
champion stays. Every answer, a timeout's included, is recorded before the operator acts
on it (`airloop.pipelines.approval.record_approval`): in the run's decision record, as
tags of the registered version and in the model's promotion ledger.
"""

from __future__ import annotations

from copy import copy
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from airloop.config import AirloopConfig
from airloop.paths import StatePaths
from airloop.pipelines.approval import APPROVE_OPTION, COMMENT_PARAM, REJECT_OPTION, timeout_option

TASK_ID = "approve_promotion"
assert (ApprovalOperator.APPROVE, ApprovalOperator.REJECT) == (APPROVE_OPTION, REJECT_OPTION)


class PromotionApproval(ApprovalOperator):
    """Ask a person to approve promoting the version `packaged` (package_model's XCom) names.

    `config` and `paths` are the model's; the timeout and what it answers come from
    `config.gate`. The approver may leave a comment (the `comment` field), kept with the answer.
    """

    template_fields = (*ApprovalOperator.template_fields, "packaged")

    def __init__(
        self,
        *,
        airloop_config: AirloopConfig,
        state_paths: StatePaths,
        packaged: Any,
        task_id: str = TASK_ID,
        params: ParamsDict | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        gate = airloop_config.gate
        # Airflow hands every operator the DAG's params too (the trigger form's); the
        # operator's own form is what it marks as the task's.
        form = copy(params) if isinstance(params, ParamsDict) else ParamsDict(params or {})
        form[COMMENT_PARAM] = Param(
            None,
            type=["null", "string"],
            title="Comment",
            description="Why you approve or reject (optional): kept in the decision record, "
            "the version's tags and the promotion ledger.",
            source="task",
        )
        super().__init__(
            task_id=task_id,
            # Placeholders: execute() asks with the version and the gate's numbers.
            subject=f"Promote a new {airloop_config.model.registered_name} version to champion?",
            body=None,
            defaults=[timeout_option(airloop_config)],
            response_timeout=timedelta(minutes=gate.approval_timeout_minutes),
            params=form,
            **kwargs,
        )
        self.airloop_config, self.state_paths, self.packaged = airloop_config, state_paths, packaged

    def execute(self, context: Any) -> Any:
        from airloop.pipelines.approval import approval_request

        request = approval_request(self.airloop_config, self.state_paths, context["run_id"], self.packaged)
        self.subject, self.body = request["subject"], request["body"]
        self._show_links(context)
        self.log.info("Asking: %s\n%s", self.subject, self.body)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Record the answer (a person's or the timeout's), then let ApprovalOperator act on it:
        on Reject it skips promote_champion."""
        from airloop.pipelines.approval import record_approval

        if "error" not in event:
            self.validate_chosen_options(event["chosen_options"])
            self.validate_params_input(event["params_input"] or {})
            version = str(self.packaged["version"])
            entry = record_approval(self.airloop_config, self.state_paths, context["run_id"], version, event)
            self.log.info("v%s %s: %s", version, entry["decision"], entry["reason"])
        self._show_links(context)
        return super().execute_complete(context=context, event=event)

    def _show_links(self, context: Any) -> None:
        from airloop.orchestration.links import LINKS_XCOM, link_references
        from airloop.pipelines.approval import approval_evidence

        links = approval_evidence(
            self.airloop_config, self.state_paths, context["run_id"], str(self.packaged["version"])
        )
        references = link_references(self.state_paths.home, **links)
        if references:
            context["ti"].xcom_push(key=LINKS_XCOM, value=references)
