"""Every drift check as an MLflow run in the `<config name>-monitoring` experiment.

One run per check (found again by its `airloop.run_key` tag, so a retried task updates the
same run): the verdicts as tags, the numbers as metrics (drift share, each column's score,
the prediction score, the champion's metric on the labelled window, the shares of unseen
categories and out-of-range values, the champion's served rows and each version's as
`served_rows.v<version>`), the live performance per model version per day
(`live.v<version>.<gate metric>` and `live.v<version>.rows`, step the day as YYYYMMDD,
timestamp its midnight UTC), and the Evidently report and the summary as artifacts.
`mlflow ui` then shows the monitoring history beside the training runs;
`evidently ui --workspace <state>/evidently` shows the reports'.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airloop.config import AirloopConfig
from airloop.paths import StatePaths
from airloop.registry.tracking import ensure_experiment, tracking_client

RUN_KEY_TAG = "airloop.run_key"


def monitoring_experiment(config: AirloopConfig) -> str:
    return f"{config.name}-monitoring"


def log_check(config: AirloopConfig, paths: StatePaths, summary: dict[str, Any]) -> str:
    """Log one check's summary (as `check_drift` returns it); returns the MLflow run id."""
    from mlflow.entities import Metric, RunTag

    client = tracking_client(paths)
    experiment_id = ensure_experiment(client, monitoring_experiment(config), paths)
    run_key = summary["run_key"]
    found = client.search_runs([experiment_id], f"tags.`{RUN_KEY_TAG}` = '{_quoted(run_key)}'", max_results=1)
    run_id = found[0].info.run_id if found else client.create_run(experiment_id, run_name=run_key).info.run_id
    tags = {
        RUN_KEY_TAG: run_key,
        "airloop.status": summary["status"],
        "airloop.signals": ",".join(summary.get("signals", [])) or "none",
        "airloop.reason": summary["reason"][:5000],
        "airloop.champion_version": str(summary.get("champion_version")),
        "airloop.current_partitions": ",".join(summary.get("current_partitions", [])),
    }
    metrics = [Metric(name, value, 0, 0) for name, value in _numbers(summary).items()]
    metrics += [Metric(*point) for point in _live_points(summary, config.gate.metric)]
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(key, value) for key, value in tags.items()])
    for key in ("html_path", "json_path"):
        if summary.get(key):
            client.log_artifact(run_id, summary[key], "report")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "summary.json"
        path.write_text(json.dumps(summary, indent=2))
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return str(run_id)


def _numbers(summary: dict[str, Any]) -> dict[str, float]:
    """The check's numbers as metrics; a "both" check's served half prefixed "served."."""
    numbers = _window_numbers(summary)
    if summary.get("served"):
        served = _window_numbers(summary["served"])
        numbers.update({f"served.{name}": value for name, value in served.items()})
    return numbers


def _window_numbers(summary: dict[str, Any]) -> dict[str, float]:
    numbers: dict[str, float] = {}
    if summary.get("drift_share") is not None:
        numbers["drift_share"] = float(summary["drift_share"])
    for column, score in summary.get("column_scores", {}).items():
        numbers[f"drift_score.{column}"] = float(score)
    if summary.get("prediction_drift"):
        numbers["prediction_drift_score"] = float(summary["prediction_drift"]["score"])
    performance = summary.get("performance") or {}
    for key in ("observed", "expected", "drop"):
        if performance.get(key) is not None:
            numbers[f"performance_{key}"] = float(performance[key])
    if performance.get("labelled_rows") is not None:
        numbers["labelled_rows"] = float(performance["labelled_rows"])
    for kind in ("unseen_shares", "out_of_range_shares"):
        for column, share in (summary.get(kind) or {}).items():
            numbers[f"{kind.removesuffix('_shares')}.{column}"] = float(share)
    if summary.get("served_rows") is not None:
        numbers["served_rows"] = float(summary["served_rows"])
    for version, rows in (summary.get("served_rows_by_version") or {}).items():
        numbers[f"served_rows.v{version}"] = float(rows)
    return numbers


def _live_points(summary: dict[str, Any], metric: str) -> list[tuple[str, float, int, int]]:
    """(name, value, timestamp ms, step) of each version's live performance per day: the
    day is the step (YYYYMMDD), so MLflow charts each version's metric over the days; a
    day whose metric could not be computed logs its rows only."""
    days = summary.get("live_performance") or (summary.get("served") or {}).get("live_performance") or []
    points = []
    for day in days:
        when = datetime.strptime(day["day"], "%Y-%m-%d").replace(tzinfo=UTC)
        timestamp, step = int(when.timestamp() * 1000), int(when.strftime("%Y%m%d"))
        prefix = f"live.v{day['model_version']}"
        points.append((f"{prefix}.rows", float(day["rows"]), timestamp, step))
        if day.get(metric) is not None:
            points.append((f"{prefix}.{metric}", float(day[metric]), timestamp, step))
    return points


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")
