"""A model's Evidently dashboard: its drift and live performance over time, not one report a check.

Each drift check adds its Evidently report to the model's project in the local workspace
(`keep_in_workspace`), tagged with the window it looked at: "served" (what the served model
was asked) or "ingested" (validated partitions). A served check also adds a report of the
model's live performance on the labels joined to its answers (`live_performance_report`,
tagged "served" and "live_performance"), with Evidently's own classification or regression
metrics. `ensure_dashboard` gives the project line plots across those runs, one tab per
window: the share and the number of drifted columns, the prediction drift score and, for
served traffic, the live performance metric.

Panels pick their runs by tag. Evidently 0.7 gives each point of a run to the first series
of its panel whose metric fits and drops it unless that series' tags match, so the served
and ingested lines of one metric get a panel each, never two series in one panel.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airloop.config import AirloopConfig, Label
from airloop.data.labels import class_key, labelled_mask, labels
from airloop.monitoring.reference import PREDICTION

SERVED, INGESTED, LIVE_PERFORMANCE = "served", "ingested", "live_performance"
TABS = {SERVED: "Served traffic", INGESTED: "Ingested data"}

# What each window's drift panels plot: a title, an Evidently metric and the labels picking
# its value (DriftedColumnsCount's result is a count and a share).
DRIFT_SERIES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("share of drifted columns", "DriftedColumnsCount", {"value_type": "share"}),
    ("drifted columns", "DriftedColumnsCount", {"value_type": "count"}),
    ("prediction drift score", "ValueDrift", {"column": PREDICTION}),
)
# A gate metric's Evidently equivalent: the metric's name and the labels that pick its value
# (MAE's result is a mean and a standard deviation). average_precision and balanced_accuracy
# have none.
EVIDENTLY_METRICS: dict[str, tuple[str, dict[str, str]]] = {
    "roc_auc": ("RocAuc", {}),
    "accuracy": ("Accuracy", {}),
    "log_loss": ("LogLoss", {}),
    "macro_f1": ("F1Score", {}),
    "rmse": ("RMSE", {}),
    "mae": ("MAE", {"value_type": "mean"}),
    "r2": ("R2Score", {}),
}
# What a live performance report holds for each task; the first is the dashboard's metric
# when the gate metric has no Evidently equivalent.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary_classification": ("roc_auc", "accuracy", "log_loss"),
    "multiclass_classification": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


def live_metric(task: str, metric: str | None = None) -> str:
    """The metric the dashboard plots as live performance: `metric` (the gate metric) when
    Evidently has it, else the task's first."""
    return metric if metric in EVIDENTLY_METRICS else TASK_METRICS[task][0]


def keep_in_workspace(snapshot: Any, workspace: Path, project_name: str, name: str) -> str:
    """Add an Evidently snapshot to the workspace's project (created when missing) as a run
    named `name`, with the tags it was run with; returns the run's id."""
    from evidently.ui.workspace import Workspace

    store = Workspace.create(str(workspace))
    project = _project(store, project_name)
    return str(store.add_run(project.id, snapshot, include_data=False, name=name).id)


def ensure_dashboard(workspace: Path, project_name: str, task: str, metric: str | None = None) -> None:
    """Give the project (created when missing) its dashboard of line plots over runs.

    Tab "Served traffic" and tab "Ingested data", each with the share of drifted columns, the
    number of drifted columns and the prediction drift score of the runs tagged "served" or
    "ingested"; the served tab also the live performance (`live_metric(task, metric)`) of
    runs tagged "served" and "live_performance". Idempotent: a panel whose title the
    dashboard already has is not added again, and panels the user added are kept.
    """
    from evidently.sdk.models import DashboardTabModel
    from evidently.ui.workspace import Workspace

    store = Workspace.create(str(workspace))
    project = _project(store, project_name)
    dashboard = store.get_dashboard(project.id)
    titles = {panel.title for panel in dashboard.panels}
    missing = [(tab, panel) for tab, panel in dashboard_panels(task, metric) if panel.title not in titles]
    if not missing:
        return
    for tab, panel in missing:
        tabs = [t for t in dashboard.tabs if t.title == tab]
        if not tabs:
            tabs = [DashboardTabModel(title=tab, panels=[])]
            dashboard.tabs.append(tabs[0])
        dashboard.panels.append(panel)
        tabs[0].panels.append(panel.id)
    # Saved whole, once: Evidently 0.7's add_panel lists a panel twice in an existing tab.
    store.save_dashboard(project.id, dashboard)


def dashboard_panels(task: str, metric: str | None = None) -> list[tuple[str, Any]]:
    """(tab title, DashboardPanelPlot) of every panel `ensure_dashboard` gives a project."""
    panels = [
        (TABS[window], _line(window, title, name, metric_labels))
        for window in (SERVED, INGESTED)
        for title, name, metric_labels in DRIFT_SERIES
    ]
    shown = live_metric(task, metric)
    name, metric_labels = EVIDENTLY_METRICS[shown]
    panels.append((TABS[SERVED], _line(SERVED, f"live {shown}", name, metric_labels, LIVE_PERFORMANCE)))
    return panels


def _line(window: str, title: str, metric: str, metric_labels: dict[str, str], *tags: str) -> Any:
    """A line plot over the runs tagged `window` (and `tags`) of one value of one metric."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    value = PanelMetric(legend=title, tags=[window, *tags], metric=metric, metric_labels=metric_labels)
    return line_plot_panel(f"{window.capitalize()}: {title}", [value], size="half")


def live_performance_report(
    config: AirloopConfig,
    labelled: pd.DataFrame,
    version: str,
    classes: list[Label] | None = None,
) -> Any | None:
    """An Evidently report of model `version`'s live performance on its labelled answers.

    `labelled`: the prediction log joined to labels (the target column and the logged
    "score", "prediction" and "probabilities", with "model_version"); scored on what the
    model answered, as `champion_performance` is. Holds `TASK_METRICS[config.task]` and the
    gate metric when Evidently has it: for binary classification on P(1) (accuracy at 0.5),
    multiclass on the class probabilities in `classes`' order, regression on the values.
    Tagged "served" and "live_performance", its metadata the version and the labelled rows.
    None where `champion_performance` skips for want of rows: fewer than `drift.min_rows`
    labelled rows of this version, or (classification) labels of one class only.
    """
    from evidently import Dataset, Report

    from airloop.production.live_performance import logged_scores

    rows = labelled[labelled["model_version"].astype(str) == str(version)] if len(labelled) else labelled
    if not len(rows):
        return None
    known = labelled_mask(rows, config, classes)
    if int(known.sum()) < config.drift.min_rows:
        return None
    rows = rows[known]
    truth = labels(rows, config, classes).to_numpy()
    if config.task != "regression" and len(np.unique(truth)) < 2:
        return None
    frame, definition = _performance_frame(config, truth, logged_scores(rows, config, classes), classes)
    names = list(dict.fromkeys([*TASK_METRICS[config.task], config.gate.metric]))
    metrics = [_evidently_metric(name) for name in names if name in EVIDENTLY_METRICS]
    metadata = {"model_version": str(version), "labelled_rows": str(len(rows))}
    with warnings.catch_warnings():
        # sklearn's warnings on classes the window lacks: Evidently's numbers say as much.
        warnings.simplefilter("ignore")
        return Report(metrics).run(
            Dataset.from_pandas(frame, data_definition=definition),
            None,
            metadata=metadata,
            tags=[SERVED, LIVE_PERFORMANCE],
        )


def keep_live_performance(
    workspace: Path,
    config: AirloopConfig,
    labelled: pd.DataFrame,
    version: str,
    classes: list[Label] | None,
    name: str,
) -> str | None:
    """`live_performance_report` added to the workspace's project `config.name` as run `name`;
    the run's id, None (nothing added) where there is no report."""
    snapshot = live_performance_report(config, labelled, version, classes)
    return None if snapshot is None else keep_in_workspace(snapshot, workspace, config.name, name)


def _performance_frame(
    config: AirloopConfig, truth: np.ndarray, scores: np.ndarray, classes: list[Label] | None
) -> tuple[pd.DataFrame, Any]:
    """The truth and the answers as Evidently's classification or regression data."""
    from evidently import BinaryClassification, DataDefinition, MulticlassClassification, Regression

    if config.task == "regression":
        frame = pd.DataFrame({"target": truth.astype("float64"), "prediction": scores})
        regression = Regression(target="target", prediction="prediction")
        return frame, DataDefinition(numerical_columns=["target", "prediction"], regression=[regression])
    if config.task == "binary_classification":
        frame = pd.DataFrame({"target": truth.astype("int64"), "score": scores})
        binary = BinaryClassification(target="target", prediction_probas="score", pos_label=1)
        return frame, DataDefinition(
            numerical_columns=["score"], categorical_columns=["target"], classification=[binary]
        )
    # Evidently names each class's probability column by the class itself.
    keys = [class_key(c) for c in classes or []]
    target, predicted = _free_name("target", keys), _free_name("prediction", keys)
    frame = pd.DataFrame(scores, columns=keys)
    frame[target] = np.asarray(keys, dtype=object)[truth]
    frame[predicted] = np.asarray(keys, dtype=object)[np.argmax(scores, axis=1)]
    multiclass = MulticlassClassification(target=target, prediction_labels=predicted, prediction_probas=keys)
    return frame, DataDefinition(
        numerical_columns=keys, categorical_columns=[target, predicted], classification=[multiclass]
    )


def _evidently_metric(name: str) -> Any:
    import evidently.metrics

    return getattr(evidently.metrics, EVIDENTLY_METRICS[name][0])()


def _free_name(base: str, taken: list[str]) -> str:
    name = base
    while name in taken:
        name = f"_{name}"
    return name


def _project(store: Any, project_name: str) -> Any:
    projects = store.search_project(project_name)
    return projects[0] if projects else store.create_project(project_name)
