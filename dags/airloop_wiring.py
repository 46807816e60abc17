"""What wires airloop's DAGs together: the Assets between them and the defaults they share.

Imported by the DAG files (Airflow puts this folder on sys.path); not a DAG itself, so
.airflowignore keeps the dag-processor from parsing it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseNotifier

from airloop.pools import DVC_POOL, PROMOTION_POOL

if TYPE_CHECKING:
    from airloop.config import AirloopConfig

__all__ = ["DVC_POOL", "PROMOTION_POOL"]

VALIDATED_DATA = Asset(name="validated_data", uri="airloop://validated_data", group="airloop")
DRIFT_DETECTED = Asset(name="drift_detected", uri="airloop://drift_detected", group="airloop")
CHAMPION_MODEL = Asset(name="champion_model", uri="airloop://champion_model", group="airloop")

# What each asset means when it triggers continuous training.
TRIGGER_OF_ASSET = {VALIDATED_DATA.name: "new_data", DRIFT_DETECTED.name: "drift"}

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def run_params(dag_id: str) -> dict:
    """The DAG's trigger-form fields (`airloop.run_params`), as typed Airflow Params."""
    from airflow.sdk import Param

    from airloop.run_params import param_specs

    return {name: Param(**spec) for name, spec in param_specs(dag_id).items()}


def run_config(config: AirloopConfig, context: Any) -> AirloopConfig:
    """The config for this run: the run's params laid over `config`. A bad param fails the
    task at once (no retry), naming the config key."""
    from airflow.sdk.exceptions import AirflowFailException

    from airloop.config import ConfigError
    from airloop.run_params import config_for_run

    try:
        return config_for_run(config, context["dag"].dag_id, context["params"])
    except ConfigError as error:
        raise AirflowFailException(str(error)) from None


def show_links(context: Any, **produced: Any) -> None:
    """Publish what this task produced as buttons on its page in the Airflow UI.

    `produced` maps kinds (`airloop.ui_links.BUTTONS`) to a run id, "name/version" or a
    report file; the airloop plugin turns them into links.
    """
    from airloop.paths import StatePaths
    from airloop.ui_links import LINKS_XCOM, link_references

    references = link_references(StatePaths.from_env().reports, **produced)
    if references:
        context["ti"].xcom_push(key=LINKS_XCOM, value=references)


class Notify(BaseNotifier):
    """Send one airloop event (see `airloop.notifications`) to the `airloop_notify` connection.

    `details_from` names the task whose return value describes the event. A missing
    connection sends nothing; an unreachable webhook or mail server is logged, never fails
    the task.
    """

    def __init__(self, event: str, details_from: str | None = None) -> None:
        super().__init__()
        self.event, self.details_from = event, details_from

    def notify(self, context) -> None:
        from airflow.sdk import Connection

        from airloop.notifications import CONNECTION_ID, deliver, notification

        try:
            connection = Connection.get(CONNECTION_ID)
        except Exception:  # noqa: BLE001 - AirflowNotFoundException: notifications are opt-in
            self.log.info("no %r connection: %s not sent", CONNECTION_ID, self.event)
            return
        from airflow.sdk.exceptions import AirflowFailException

        ti, error = context["ti"], context.get("exception")
        details = dict(ti.xcom_pull(task_ids=self.details_from) or {}) if self.details_from else {}
        if error is not None:
            details["error"] = str(error)
        event = self.event
        # validate fails fast (AirflowFailException) only on a partition it quarantined;
        # anything else that fails it is an ordinary failure.
        if event == "blocked_partition" and not isinstance(error, AirflowFailException):
            event = "failure"
        body = notification(event, ti.dag_id, ti.run_id, ti.task_id, details)
        try:
            deliver(connection, body)
        except Exception as failed:  # noqa: BLE001 - a lost notification must not fail the pipeline
            self.log.warning("notification %s to %r failed: %s", self.event, CONNECTION_ID, failed)


DEFAULT_ARGS = {
    "owner": "airloop",
    "retries": 1,
    "retry_delay": timedelta(seconds=10),
    "on_failure_callback": Notify("failure"),
}
