"""The Airflow UI's airloop buttons: what a task produced, and the URL each one opens.

A task publishes references to what it produced (an MLflow run id, a registered version,
a report file) under the XCom key `LINKS_XCOM`; the airloop plugin turns them into
buttons on that task instance, in the API server, when the UI asks for its extra links.
Files are references relative to `$AIRLOOP_HOME/reports`, served by the plugin under
`REPORTS_ROUTE` to signed-in users.

Standard library only: the plugin imports this in every Airflow component.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

LINKS_XCOM = "airloop_links"
# Where the plugin's FastAPI app is mounted, and its route for report files.
PLUGIN_PREFIX = "/airloop"
REPORTS_ROUTE = f"{PLUGIN_PREFIX}/reports"

# Button name → the kind of reference a task publishes for it.
BUTTONS = {
    "MLflow run": "mlflow_run",
    "Model version": "model_version",
    "Model card": "model_card",
    "Gate decision": "decision",
    "Drift report": "drift_report",
    "Data Docs": "data_docs",
}
FILE_KINDS = ("model_card", "decision", "drift_report", "data_docs")


def link_references(reports: Path, **produced: str | Path | None) -> dict[str, str]:
    """What a task publishes: {kind: reference}, files made relative to `reports`.

    `produced` maps kinds (the values of BUTTONS) to a run id, "name/version", or a file's
    path; None (nothing produced) and files outside `reports` publish nothing.
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
            if not path.is_relative_to(reports.resolve()):
                continue
            value = path.relative_to(reports.resolve()).as_posix()
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
