"""The model's Evidently dashboard in a real local workspace: panels over time, once each; drift
runs tagged by window; live performance reports with Evidently's own metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airloop.config import AirloopConfig, parse_config
from airloop.evaluation.metrics import metric_value
from airloop.monitoring.dashboard import (
    INGESTED,
    LIVE_PERFORMANCE,
    SERVED,
    ensure_dashboard,
    keep_in_workspace,
    live_performance_report,
)
from airloop.monitoring.drift import DriftResult, compare_to_reference
from airloop.monitoring.reference import reference_profile
from airloop.pipelines.monitor_drift import served_config
from airloop.production.live_performance import champion_performance

CARRIERS = ["9E", "AA", "B6", "DL", "EV", "UA", "US", "WN"]
METRIC = "evidently:metric_v2:"


def flights_like(rows: int, seed: int, dep_shift: float = 0.0) -> pd.DataFrame:
    """Synthetic departures with the flights config's compared columns; arr_delay follows dep_delay."""
    rng = np.random.default_rng(seed)
    dep_delay = rng.normal(12.0 + dep_shift, 30.0, rows)
    return pd.DataFrame(
        {
            "carrier": rng.choice(CARRIERS, rows),
            "origin": rng.choice(["EWR", "JFK", "LGA"], rows),
            "dest": rng.choice(["ATL", "BOS", "LAX", "ORD", "MIA"], rows),
            "distance": rng.integers(200, 2500, rows),
            "hour": rng.integers(5, 23, rows),
            "minute": rng.integers(0, 60, rows),
            "sched_arr_time": rng.integers(600, 2359, rows),
            "day": rng.integers(1, 29, rows),
            "dep_delay": dep_delay,
            "arr_delay": dep_delay + rng.normal(0.0, 15.0, rows),
        }
    )


def late_probability(frame: pd.DataFrame) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(frame["dep_delay"].to_numpy() - 15.0) / 10.0))


def labelled_answers(frame: pd.DataFrame, version: str = "3") -> pd.DataFrame:
    """The prediction log joined to labels, as `labelled_predictions` gives it (binary)."""
    score = late_probability(frame)
    return frame.assign(
        score=score,
        prediction=(score >= 0.5).astype("int64"),
        probabilities=None,
        model_version=version,
        served_at=pd.Timestamp("2026-12-01", tz="UTC"),
    )


def panels_by_title(workspace: Path, project_name: str) -> dict[str, Any]:
    from evidently.ui.workspace import Workspace

    store = Workspace.create(str(workspace))
    (project,) = store.search_project(project_name)
    return {panel.title: panel for panel in store.get_dashboard(project.id).panels}


def test_ensure_dashboard_twice_adds_each_panel_once(config: AirloopConfig, tmp_path: Path) -> None:
    from evidently.ui.workspace import Workspace

    ensure_dashboard(tmp_path, config.name, config.task, config.gate.metric)
    ensure_dashboard(tmp_path, config.name, config.task, config.gate.metric)

    store = Workspace.create(str(tmp_path))
    (project,) = store.search_project(config.name)
    dashboard = store.get_dashboard(project.id)
    titles = [panel.title for panel in dashboard.panels]
    assert len(titles) == len(set(titles)) == 7
    assert {tab.title: len(tab.panels) for tab in dashboard.tabs} == {"Served traffic": 4, "Ingested data": 3}
    listed = [panel_id for tab in dashboard.tabs for panel_id in tab.panels]
    assert sorted(map(str, listed)) == sorted(str(panel.id) for panel in dashboard.panels)


def test_ensure_dashboard_keeps_panels_the_user_added(config: AirloopConfig, tmp_path: Path) -> None:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel
    from evidently.ui.workspace import Workspace

    ensure_dashboard(tmp_path, config.name, config.task)
    store = Workspace.create(str(tmp_path))
    (project,) = store.search_project(config.name)
    project.dashboard.add_panel(counter_panel("Rows", [PanelMetric(metric="RowCount")]), tab="Mine")

    ensure_dashboard(tmp_path, config.name, config.task)

    titles = [panel.title for panel in store.get_dashboard(project.id).panels]
    assert titles.count("Rows") == 1 and len(titles) == 8


def test_dashboard_panels_are_line_plots_of_each_windows_drift_and_live_metric(
    config: AirloopConfig, tmp_path: Path
) -> None:
    ensure_dashboard(tmp_path, config.name, config.task, config.gate.metric)

    series = {
        title: (panel.plot_params["plot_type"], [(v.metric, v.metric_labels, v.tags) for v in panel.values])
        for title, panel in panels_by_title(tmp_path, config.name).items()
    }
    share = (f"{METRIC}DriftedColumnsCount", {"value_type": "share"})
    count = (f"{METRIC}DriftedColumnsCount", {"value_type": "count"})
    scores = (f"{METRIC}ValueDrift", {"column": "prediction"})
    expected = {
        f"{label}: {title}": ("line", [(*value, [window])])
        for window, label in ((SERVED, "Served"), (INGESTED, "Ingested"))
        for title, value in (
            ("share of drifted columns", share),
            ("drifted columns", count),
            ("prediction drift score", scores),
        )
    }
    expected["Served: live roc_auc"] = ("line", [(f"{METRIC}RocAuc", {}, [SERVED, LIVE_PERFORMANCE])])
    assert series == expected


@pytest.mark.parametrize(
    ("task", "metric", "title", "plotted"),
    [
        ("binary_classification", "average_precision", "Served: live roc_auc", ("RocAuc", {})),
        ("multiclass_classification", "macro_f1", "Served: live macro_f1", ("F1Score", {})),
        ("regression", "mae", "Served: live mae", ("MAE", {"value_type": "mean"})),
    ],
)
def test_live_panel_plots_the_gate_metric_else_the_tasks_first(
    task: str, metric: str, title: str, plotted: tuple[str, dict], tmp_path: Path
) -> None:
    ensure_dashboard(tmp_path, "model", task, metric)

    (value,) = panels_by_title(tmp_path, "model")[title].values
    assert (value.metric, value.metric_labels) == (f"{METRIC}{plotted[0]}", plotted[1])


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One workspace with an ingested and a served drift check and a live performance report."""
    from airloop.config import load_config

    config = load_config()
    root = tmp_path_factory.mktemp("dashboard")
    workspace = root / "workspace"
    reference = flights_like(1500, seed=1)
    profile = reference_profile(reference, config, late_probability(reference))
    ingested_rows, served_rows = flights_like(800, seed=2), flights_like(800, seed=3, dep_shift=40.0)
    ingested = compare_to_reference(
        profile, ingested_rows, config, root, "2026-11_v3", late_probability(ingested_rows),
        workspace=workspace, tags=(INGESTED,),
    )  # fmt: skip
    served = compare_to_reference(
        profile, served_rows, served_config(config), root, "served_20261201T000000_v3",
        late_probability(served_rows), workspace=workspace, tags=(SERVED,),
    )  # fmt: skip
    labelled = labelled_answers(served_rows)
    snapshot = live_performance_report(config, labelled, "3")
    live_run = keep_in_workspace(snapshot, workspace, config.name, "served_20261201T000000_v3_performance")
    ensure_dashboard(workspace, config.name, config.task, config.gate.metric)
    return {"config": config, "workspace": workspace, "ingested": ingested, "served": served,
            "live_run": live_run, "labelled": labelled}  # fmt: skip


def test_workspace_lists_each_checks_run_with_its_tags(kept: dict[str, Any]) -> None:
    from evidently.ui.workspace import Workspace

    ingested, served = kept["ingested"], kept["served"]
    assert isinstance(ingested, DriftResult) and isinstance(served, DriftResult)
    store = Workspace.create(str(kept["workspace"]))
    (project,) = store.search_project(kept["config"].name)
    runs = {str(run): store.get_run(project.id, run) for run in store.list_runs(project.id)}
    tagged = {run_id: (run.name, run.tags) for run_id, run in runs.items() if run is not None}

    assert tagged == {
        ingested.workspace_run: ("2026-11_v3", [INGESTED]),
        served.workspace_run: ("served_20261201T000000_v3", [SERVED]),
        kept["live_run"]: ("served_20261201T000000_v3_performance", [SERVED, LIVE_PERFORMANCE]),
    }


def test_each_panel_plots_the_points_of_its_windows_runs(kept: dict[str, Any]) -> None:
    """The points Evidently's own UI storage gives each panel's series: each window's drift
    numbers from its own run only, and the live metric from the performance report."""
    from evidently.ui.service.base import SeriesFilter
    from evidently.ui.service.storage.local.base import InMemoryDataStorage
    from evidently.ui.workspace import Workspace

    config, workspace = kept["config"], kept["workspace"]
    (project,) = Workspace.create(str(workspace)).search_project(config.name)
    storage = InMemoryDataStorage(path=str(workspace))

    def points(title: str) -> list[float]:
        (value,) = panels_by_title(workspace, config.name)[title].values
        wanted = SeriesFilter(tags=value.tags, metadata=value.metadata, metric=value.metric,
                              metric_labels=value.metric_labels)  # fmt: skip
        response = asyncio.run(storage.get_data_series(project.id, [wanted], None, None))
        return [v for s in response.series for v in s.values if v is not None]

    ingested, served = kept["ingested"], kept["served"]
    assert served.status == "drift" and "dep_delay" in served.drifted_columns
    assert ingested.prediction_drift is not None and served.prediction_drift is not None
    assert points("Ingested: share of drifted columns") == [pytest.approx(ingested.drift_share)]
    assert points("Served: share of drifted columns") == [pytest.approx(served.drift_share)]
    assert points("Served: drifted columns") == [len(served.drifted_columns)]
    assert points("Ingested: prediction drift score") == [pytest.approx(ingested.prediction_drift.score)]
    assert points("Served: prediction drift score") == [pytest.approx(served.prediction_drift.score)]
    live = champion_performance(config, kept["labelled"], "3", expected=0.9)
    assert points("Served: live roc_auc") == [pytest.approx(live.observed)]


def test_live_performance_report_holds_evidently_binary_metrics_equal_to_ours(config: AirloopConfig) -> None:
    labelled = labelled_answers(flights_like(700, seed=4))
    other_version = labelled_answers(flights_like(300, seed=5), version="2").assign(score=0.5)

    snapshot = live_performance_report(config, pd.concat([labelled, other_version]), "3")

    assert snapshot is not None
    values = {m["config"]["type"].removeprefix(METRIC): m["value"] for m in snapshot.dict()["metrics"]}
    truth = (labelled["arr_delay"] > 15).to_numpy()
    scores = labelled["score"].to_numpy()
    assert values["RocAuc"] == pytest.approx(metric_value("roc_auc", truth, scores))
    assert values["Accuracy"] == pytest.approx(metric_value("accuracy", truth, scores))
    assert values["LogLoss"] == pytest.approx(metric_value("log_loss", truth, scores))
    model = snapshot.to_snapshot_model()
    assert model.tags == [SERVED, LIVE_PERFORMANCE]
    assert model.metadata == {"model_version": "3", "labelled_rows": "700"}


def small_config(task: str, gate: str) -> AirloopConfig:
    target: dict[str, Any] = {"column": "y"}
    if task == "multiclass_classification":
        target["classes"] = ["a", "b", "c"]
    return parse_config(
        {
            "name": "small",
            "task": task,
            "dataset": {
                "columns": {"x": {"type": "float"}, "y": {"type": "str" if "class" in task else "float"}},
                "target": target,
                "features": ["x"],
            },
            "model": {"family": "sklearn_linear", "registered_name": "small"},
            "gate": {"metric": gate},
            "drift": {"min_rows": 50},
        }
    )


def test_live_performance_report_holds_evidently_multiclass_and_regression_metrics_equal_to_ours() -> None:
    import json

    rng = np.random.default_rng(6)
    rows = 200
    probabilities = rng.dirichlet([1.0, 1.0, 1.0], rows)
    truth = np.array([rng.choice(3, p=p) for p in probabilities])
    multiclass_config = small_config("multiclass_classification", "accuracy")
    answers = pd.DataFrame(
        {
            "y": np.array(["a", "b", "c"])[truth],
            "probabilities": [
                json.dumps(dict(zip("abc", map(float, p), strict=True))) for p in probabilities
            ],
            "score": None,
            "prediction": None,
            "model_version": "1",
        }
    )
    multiclass = live_performance_report(multiclass_config, answers, "1", ["a", "b", "c"])
    y = rng.normal(10.0, 2.0, rows)
    predicted = y + rng.normal(0.0, 1.0, rows)
    regression = live_performance_report(
        small_config("regression", "rmse"),
        pd.DataFrame({"y": y, "prediction": predicted, "model_version": "1"}),
        "1",
    )

    assert multiclass is not None and regression is not None
    by_class = {m["config"]["type"].removeprefix(METRIC): m["value"] for m in multiclass.dict()["metrics"]}
    assert by_class["Accuracy"] == pytest.approx(metric_value("accuracy", truth, probabilities))
    assert by_class["F1Score"] == pytest.approx(metric_value("macro_f1", truth, probabilities))
    assert by_class["LogLoss"] == pytest.approx(metric_value("log_loss", truth, probabilities))
    by_value = {m["config"]["type"].removeprefix(METRIC): m["value"] for m in regression.dict()["metrics"]}
    assert by_value["RMSE"] == pytest.approx(metric_value("rmse", y, predicted))
    assert by_value["MAE"]["mean"] == pytest.approx(metric_value("mae", y, predicted))
    assert by_value["R2Score"] == pytest.approx(metric_value("r2", y, predicted))


def test_live_performance_report_is_none_where_the_performance_check_skips(config: AirloopConfig) -> None:
    enough = labelled_answers(flights_like(600, seed=7))
    few = enough.head(config.drift.min_rows - 1)
    unlabelled = enough.assign(arr_delay=np.nan)
    one_class = enough.assign(arr_delay=60.0)

    assert live_performance_report(config, few, "3") is None
    assert live_performance_report(config, unlabelled, "3") is None
    assert live_performance_report(config, one_class, "3") is None
    assert live_performance_report(config, enough, "4") is None
    assert live_performance_report(config, enough.iloc[0:0], "3") is None
    assert live_performance_report(config, enough, "3") is not None
