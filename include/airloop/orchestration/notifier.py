"""The Airflow notifier that sends airloop's events (`airloop.orchestration.notifications`)."""

from __future__ import annotations

from airflow.sdk import BaseNotifier


class Notify(BaseNotifier):
    """Send one airloop event of `model` to the `airloop_notify` connection.

    `details_from` names the task whose return value describes the event. A missing
    connection sends nothing; an unreachable webhook or mail server is logged, never fails
    the task.
    """

    def __init__(self, event: str, model: str, details_from: str | None = None) -> None:
        super().__init__()
        self.event, self.model, self.details_from = event, model, details_from

    def notify(self, context) -> None:
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
        self.send(context, details, event)

    def send(self, context, details: dict, event: str | None = None, must_arrive: bool = False) -> None:
        """Send the event (or `event` instead) with `details`, from inside a task. A failed
        delivery is logged, or raised when it `must_arrive` (the task fails and retries)."""
        from airflow.sdk import Connection

        from airloop.orchestration.notifications import CONNECTION_ID, deliver, notification

        event = event or self.event
        try:
            connection = Connection.get(CONNECTION_ID)
        except Exception:  # noqa: BLE001 - AirflowNotFoundException: notifications are opt-in
            self.log.info("no %r connection: %s not sent", CONNECTION_ID, event)
            return
        ti = context["ti"]
        body = notification(event, ti.dag_id, ti.run_id, ti.task_id, details, model=self.model)
        try:
            deliver(connection, body)
        except Exception as failed:  # noqa: BLE001 - a lost notification must not fail the pipeline
            if must_arrive:
                raise
            self.log.warning("notification %s to %r failed: %s", event, CONNECTION_ID, failed)
