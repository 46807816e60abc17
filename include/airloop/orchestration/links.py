"""The Airflow UI's airloop buttons: what a task produced, and the URL each one opens.

A task publishes references to what it produced (an MLflow run id, a registered version,
a report file) under the XCom key `LINKS_XCOM`; the airloop plugin turns them into
buttons on that task instance, in the API server, when the UI asks for its extra links.
Files are references relative to `$AIRLOOP_HOME` inside a reports folder (each model's,
`models/<name>/reports/...`), served by the plugin under `REPORTS_ROUTE` to signed-in users.

Standard library only: the plugin imports this in every Airflow component.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from airloop.paths import report_roots

LINKS_XCOM = "airloop_links"
# Where the plugin's FastAPI app is mounted, and its route for report files.
PLUGIN_PREFIX = "/airloop"
REPORTS_ROUTE = f"{PLUGIN_PREFIX}/reports"
# The plugin's page of the deployment's models (an external view in the Airflow UI).
MODELS_ROUTE = f"{PLUGIN_PREFIX}/models"

# The MLflow UI's address as a browser reaches it, which is not always the tracking URI the
# workers use (``http://mlflow:5000`` inside docker-compose).
MLFLOW_UI_URL_ENV = "AIRLOOP_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"

# Button name → the kind of reference a task publishes for it.
BUTTONS = {
    "MLflow run": "mlflow_run",
    "Model version": "model_version",
    "Model card": "model_card",
    "Gate decision": "decision",
    "Drift report": "drift_report",
    "Data Docs": "data_docs",
    "Rollout record": "rollout",
}
FILE_KINDS = ("model_card", "decision", "drift_report", "data_docs", "rollout")


def mlflow_ui_base_url() -> str:
    """The MLflow UI's base URL from ``$AIRLOOP_MLFLOW_UI_URL`` (unset or blank: the default)."""
    url = os.environ.get(MLFLOW_UI_URL_ENV, "").strip() or DEFAULT_MLFLOW_UI_URL
    return url.rstrip("/")


def report_file(home: Path, relative: str) -> Path | None:
    """The report file `relative` (to `home`) names, or None unless it is a file inside one
    of the deployment's reports folders."""
    path = (home / relative).resolve()
    inside = any(path.is_relative_to(root.resolve()) for root in report_roots(home))
    return path if inside and path.is_file() else None


def link_references(home: Path, **produced: str | Path | None) -> dict[str, str]:
    """What a task publishes: {kind: reference}, files made relative to the state `home`.

    `produced` maps kinds (the values of BUTTONS) to a run id, "name/version", or a file's
    path; None (nothing produced) and files outside the reports folders publish nothing.
    """
    unknown = set(produced) - set(BUTTONS.values())
    if unknown:
        raise ValueError(f"unknown link kinds {sorted(unknown)}; known: {sorted(BUTTONS.values())}")
    references: dict[str, str] = {}
    for kind, value in produced.items():
        if value is None or value == "":
            continue
        if kind in FILE_KINDS:
            path = Path(value).resolve()
            if not any(path.is_relative_to(root.resolve()) for root in report_roots(home)):
                continue
            value = path.relative_to(home.resolve()).as_posix()
        references[kind] = str(value)
    return references


def link_url(kind: str, reference: str, mlflow_ui: str) -> str:
    """The URL a button opens: the MLflow UI for runs and versions, the plugin for files."""
    if kind == "mlflow_run":
        return f"{mlflow_ui}/#/runs/{quote(reference)}"
    if kind == "model_version":
        name, _, version = reference.rpartition("/")
        return f"{mlflow_ui}/#/models/{quote(name)}/versions/{quote(version)}"
    if kind in FILE_KINDS:
        return f"{REPORTS_ROUTE}/{quote(reference)}"
    raise ValueError(f"unknown link kind {kind!r}")


def button_urls(references: Mapping[str, str], mlflow_ui: str) -> dict[str, str]:
    """{button name: URL} for the references one task published."""
    return {
        button: link_url(kind, references[kind], mlflow_ui)
        for button, kind in BUTTONS.items()
        if references.get(kind)
    }
