"""airloop's Airflow plugin: links from the Airflow UI into the MLflow UI.

- A global operator extra link, "MLflow", on every task instance. Airflow 3 computes global
  links in the API server (``plugins_manager.get_global_operator_extra_links``), so the URL
  comes from the API server's environment, read when the link is asked for.
- A navigation entry ("MLflow", under Browse) opening the same UI: an Airflow 3 external
  view, since Airflow 3 serves no Flask views unless the FAB provider is installed.

The MLflow UI's address is ``$AIRLOOP_MLFLOW_UI_URL`` (default ``http://127.0.0.1:5000``): the
address a browser reaches, which is not always the tracking URI the workers use
(``http://mlflow:5000`` inside docker-compose).

This module is imported by every Airflow component that loads plugins, so it keeps to the
standard library and Airflow's own light modules.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

MLFLOW_UI_URL_ENV = "AIRLOOP_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"


def mlflow_ui_base_url() -> str:
    """The MLflow UI's base URL from ``$AIRLOOP_MLFLOW_UI_URL`` (unset or blank: the default)."""
    url = os.environ.get(MLFLOW_UI_URL_ENV, "").strip() or DEFAULT_MLFLOW_UI_URL
    return url.rstrip("/")


def mlflow_experiments_url() -> str:
    """The MLflow UI's experiment list, where airloop's training runs are found."""
    return f"{mlflow_ui_base_url()}/#/experiments"


class MLflowLink(BaseOperatorLink):
    """The "MLflow" button on every task instance: opens the MLflow UI's experiments."""

    name = "MLflow"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        # Read at call time, not import time: the API server's environment decides.
        return mlflow_experiments_url()


class AirloopPlugin(AirflowPlugin):
    """Registers airloop's UI additions with Airflow."""

    name = "airloop"
    global_operator_extra_links = [MLflowLink()]
    # External views are plain dicts read by the UI; without ``url_route`` the entry opens
    # ``href`` directly. The href is fixed when the plugin loads (API server start-up).
    external_views = [
        {
            "name": "MLflow",
            "href": mlflow_experiments_url(),
            "destination": "nav",
            "category": "browse",
        }
    ]
