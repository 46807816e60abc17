"""What the loop did, one row per partition, read from the records each stage keeps."""

from __future__ import annotations

import json
from pathlib import Path

from airloop.config import AirloopConfig
from airloop.console import render_table
from airloop.paths import StatePaths

COLUMNS = (
    "partition", "validation", "live", "drift", "CT", "candidate", "champion", "promoted", "version", "bento",
)  # fmt: skip


def _load(path: Path) -> dict:
    return dict(json.loads(path.read_text()))


def _partitions(paths: StatePaths) -> list[str]:
    seen = {p.stem for p in paths.report_dir("validation").glob("*.json")}
    return sorted(seen)


def _validation(paths: StatePaths, partition: str) -> str:
    if (paths.quarantine / partition).is_dir():
        return "quarantined"
    result = paths.report_dir("validation") / f"{partition}.json"
    return "passed" if _load(result).get("success") else "failed"


def drift_summary(paths: StatePaths, partition: str) -> dict | None:
    """The newest drift check whose current data was this partition."""
    found = sorted(
        paths.report_dir("drift").glob(f"{partition}_*.summary.json"), key=lambda p: p.stat().st_mtime
    )
    return _load(found[-1]) if found else None


def decision_records(paths: StatePaths, partition: str) -> list[dict]:
    """Continuous-training records (trained or skipped) whose newest data was this partition."""
    records = [_load(p) for p in paths.report_dir("decisions").glob("*.json")]
    return [r for r in records if r.get("eval_partition") == partition]


def _drift_cell(summary: dict | None) -> str:
    if summary is None:
        return "-"
    if summary["status"] == "skipped":
        return "skipped"
    signals = summary.get("signals") or (["drift"] if summary["drift_detected"] else [])
    return f"{summary['drift_share']:.2f}" + (f" {'+'.join(signals).upper()}" if signals else "")


def _live_cell(config: AirloopConfig | None, paths: StatePaths, partition: str) -> str:
    """How right the served champion was on this month's rows, asked live before the month
    was trained on (the offline scores are the candidate and champion columns)."""
    from airloop.demo.live_traffic import live_metric

    live = live_metric(config, paths, partition) if config is not None else None
    if live is None:
        return "-"
    value = "n/a" if live["value"] is None else f"{live['value']:.4f}"
    return f"v{live['version']} {live['metric']} {value} ({live['rows']} rows)"


def month_row(paths: StatePaths, partition: str, config: AirloopConfig | None = None) -> dict:
    row = dict.fromkeys(COLUMNS, "-")
    row["partition"], row["validation"] = partition, _validation(paths, partition)
    row["live"] = _live_cell(config, paths, partition)
    row["drift"] = _drift_cell(drift_summary(paths, partition))
    records = decision_records(paths, partition)
    trained = [r for r in records if "decision" in r]
    if trained:
        record = trained[-1]
        decision = record["decision"]
        row["CT"] = "trained (" + "+".join(record.get("triggers", [])) + ")"
        row["candidate"] = f"{decision['metric']} {decision['candidate']:.4f}"
        champion = decision.get("champion")
        row["champion"] = f"{champion:.4f}" if champion is not None else "none"
        promoted = record.get("promoted")
        row["promoted"] = "yes" if promoted else "no"
        if promoted:
            row["version"], row["bento"] = f"v{promoted['version']}", promoted["bento"]
    elif records:
        row["CT"] = "skipped (policy)"
    return row


def month_rows(paths: StatePaths, config: AirloopConfig | None = None) -> list[dict]:
    """One row per partition; with the model's config, its live metric too."""
    return [month_row(paths, partition, config) for partition in _partitions(paths)]


def render_months(rows: list[dict]) -> str:
    return render_table(rows, COLUMNS)
