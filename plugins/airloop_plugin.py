"""airloop's Airflow plugin: from a task in the Airflow UI to what it produced.

- Buttons on a task instance ("MLflow run", "Model version", "Model card", "Gate decision",
  "Drift report", "Data Docs"), shown where the task published such a thing
  (`airloop.orchestration.links`). Airflow 3 computes global extra links in the API server, so each
  button reads the task's published references from the metadata database when the UI
  asks, and the MLflow UI's address from the API server's environment.
- `/airloop/reports/...`: the report files those buttons open (Great Expectations Data
  Docs, Evidently reports, model cards, gate decisions), from each model's reports folder
  under `$AIRLOOP_HOME`, for signed-in users only (`airloop.orchestration.reports_app`).
- "airloop models" (under Browse): the deployment's models, each with its champion, last
  continuous-training decision and last drift check, linked to its DAGs, runs and reports
  (`/airloop/models`, `airloop.orchestration.models_page`), shown inside the Airflow UI.
- A navigation entry ("MLflow", under Browse) opening the MLflow UI.

The MLflow UI's address is ``$AIRLOOP_MLFLOW_UI_URL`` (default ``http://127.0.0.1:5000``): the
address a browser reaches, which is not always the tracking URI the workers use
(``http://mlflow:5000`` inside docker-compose).

Every Airflow component that loads plugins imports this module, so module level keeps to
the standard library, Airflow and `airloop.orchestration.links` (standard library only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from airloop.orchestration.links import (
    BUTTONS,
    LINKS_XCOM,
    MODELS_ROUTE,
    PLUGIN_PREFIX,
    link_url,
    mlflow_ui_base_url,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def mlflow_experiments_url() -> str:
    """The MLflow UI's experiment list, where airloop's training runs are found."""
    return f"{mlflow_ui_base_url()}/#/experiments"


def published_references(ti_key: TaskInstanceKey) -> dict[str, str]:
    """What the task instance published under `LINKS_XCOM` ({} if nothing)."""
    import json

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(
        key=LINKS_XCOM,
        run_id=ti_key.run_id,
        dag_ids=ti_key.dag_id,
        task_ids=ti_key.task_id,
        map_indexes=ti_key.map_index,
    ).with_only_columns(XComModel.value)
    with create_session() as session:
        row = session.execute(query).first()
    value: Any = row.value if row else None
    if isinstance(value, str):
        value = json.loads(value)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


class ProducedLink(BaseOperatorLink):
    """One airloop button; empty (so not shown) on tasks that produced nothing of its kind."""

    name = ""
    kind = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        reference = published_references(ti_key).get(self.kind)
        return link_url(self.kind, reference, mlflow_ui_base_url()) if reference else ""


def _button(name: str, kind: str) -> ProducedLink:
    link_class = type(f"{kind.title().replace('_', '')}Link", (ProducedLink,), {"name": name, "kind": kind})
    return link_class()


class LazyApp:
    """An ASGI app built on its first request, so FastAPI and Airflow's API modules load only
    where it is served (the API server), not in every process that loads plugins."""

    def __init__(self, module: str, factory: str) -> None:
        self._where = (module, factory)
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            import importlib

            module, factory = self._where
            self._app = getattr(importlib.import_module(module), factory)()
        await self._app(scope, receive, send)


class AirloopPlugin(AirflowPlugin):
    """Registers airloop's UI additions with Airflow."""

    name = "airloop"
    global_operator_extra_links = [_button(name, kind) for name, kind in BUTTONS.items()]
    reports = LazyApp("airloop.orchestration.reports_app", "reports_app")
    fastapi_apps = [{"app": reports, "url_prefix": PLUGIN_PREFIX, "name": "airloop reports"}]
    # External views are plain dicts read by the UI. With a ``url_route`` the UI shows
    # ``href`` in a frame at ``/plugin/<url_route>``; without one the entry opens ``href``
    # directly (fixed when the plugin loads, at API server start-up).
    external_views = [
        {
            "name": "airloop models",
            "href": MODELS_ROUTE,
            "url_route": "airloop-models",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "MLflow",
            "href": mlflow_experiments_url(),
            "destination": "nav",
            "category": "browse",
        },
    ]
