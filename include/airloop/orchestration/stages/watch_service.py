"""Watch the served model's health: send its firing service alerts to airloop_notify.

Runs on `schedules.watch_service`. Prometheus evaluates the model's alert rules (5xx error
rate over `serving.alerts.max_error_rate`, p95 latency over `max_latency_factor` times what
the gate measured, no traffic for `no_traffic_minutes`, prediction-log write errors and
drops); this DAG reads the alerts firing for this model and notifies each new firing once:
an alert is marked sent only after its notification went out, so one that failed to go
(the task fails and retries) is sent by the next run.
Where no Prometheus watches the served models (`airloop serve` runs one beside them,
compose its own; $AIRLOOP_PROMETHEUS_URL names another) the run is skipped, saying so.
"""

from __future__ import annotations

from airflow.sdk import DAG, CronTriggerTimetable, dag, task

from airloop.orchestration.wiring import ModelWiring


def build(model: ModelWiring) -> DAG:
    config, paths = model.config, model.paths

    @dag(
        **model.dag_args("watch_service", "monitoring", __doc__),
        schedule=CronTriggerTimetable(config.schedules.watch_service, timezone="UTC"),
        params=model.run_params("watch_service"),
    )
    def watch_service():
        @task
        def read_alerts() -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from airloop.monitoring.service_alerts import PrometheusUnavailable
            from airloop.production.service_health import alerts_to_send, prometheus_url

            url = prometheus_url(paths)
            if url is None:
                raise AirflowSkipException("no Prometheus watches the served models (is `airloop serve` up?)")
            try:
                alerts = alerts_to_send(config, paths, url)
            except PrometheusUnavailable as down:
                raise AirflowSkipException(str(down)) from None
            for alert in alerts:
                print(f"{alert['name']}: {alert['summary']}")
            return {"prometheus": url, "alerts": alerts, "summaries": [a["summary"] for a in alerts]}

        @task.short_circuit
        def firing(found: dict) -> bool:
            return bool(found["alerts"])

        @task
        def send_alerts(found: dict, **context) -> int:
            from airloop.production.service_health import mark_sent

            model.notify("service_alert").send(context, found, must_arrive=True)
            mark_sent(paths, found["alerts"])
            return len(found["alerts"])

        found = read_alerts()
        firing(found) >> send_alerts(found)

    return watch_service()

