"""Compare a current window of rows against reference rows with Evidently; decide drift.

`compare_frames` runs Evidently 0.7's `DataDriftPreset` over the config's drift columns,
keeps the HTML and JSON report on disk, and returns a `DriftResult`: a decision record
(status, share of drifted columns, which columns, per-column scores, a reason sentence and
the report paths). It never answers "no drift" when it could not measure:

- a compared column missing from either frame, or a numeric column that is not numeric,
  raises ValueError (the data does not match the config: a schema problem, not drift);
- fewer than `drift.min_rows` rows in either frame, or a compared column with fewer than
  `drift.min_rows` non-null values in either frame (an all-null column included), gives
  status "skipped" with a reason naming the frame, column and counts; nothing is written.
  Skipped is never `drift_detected`; the caller decides how loud a skip should be.

Evidently picks each column's test from its type and the sample size: above 1000 rows,
Wasserstein distance (numeric) and Jensen-Shannon distance (categorical), threshold 0.1,
a column drifts when its score >= threshold; at 1000 rows or fewer, K-S / chi-square /
Z-test p-values, threshold 0.05, a column drifts when its score < threshold. So the meaning
of `drift.column_threshold` and of each column score depends on the method, which
`DriftResult.column_methods` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from airloop.config import AirloopConfig
from airloop.paths import safe_key

DriftStatus = Literal["drift", "no_drift", "skipped"]


@dataclass(frozen=True)
class DriftResult:
    """What was compared, the numbers, the verdict and why."""

    status: DriftStatus
    # Share of compared columns that drifted; None when skipped.
    drift_share: float | None
    drifted_columns: list[str]
    # Evidently's per-column drift score: a distance (higher = more drift) or a p-value
    # (lower = more drift), per `column_methods`.
    column_scores: dict[str, float]
    reason: str
    html_path: str | None
    json_path: str | None
    column_methods: dict[str, str] = field(default_factory=dict)

    @property
    def drift_detected(self) -> bool:
        return self.status == "drift"

    def summary(self) -> dict[str, Any]:
        """A small JSON-serializable dict (for XCom and asset event extras)."""
        return {
            "status": self.status,
            "drift_detected": self.drift_detected,
            "drift_share": self.drift_share,
            "drifted_columns": list(self.drifted_columns),
            "column_scores": {name: float(score) for name, score in self.column_scores.items()},
            "column_methods": dict(self.column_methods),
            "reason": self.reason,
            "html_path": self.html_path,
            "json_path": self.json_path,
        }


def compare_frames(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: AirloopConfig,
    report_dir: Path,
    name: str,
) -> DriftResult:
    """Compare `current` against `reference` over `config.drift_columns()`.

    Writes `<report_dir>/<name>.html` and `<report_dir>/<name>.json` (overwriting a previous
    run's, so a retry converges) unless skipped. Status is "drift" when the share of drifted
    columns >= `config.drift.share_threshold`, else "no_drift"; "skipped" when a frame or a
    column has fewer than `config.drift.min_rows` (non-null) rows. Raises ValueError when a
    compared column is missing, a numeric column holds non-numeric values, or `name` is not
    a plain file-name key (see `airloop.paths.safe_key`).
    """
    if not name or safe_key(name) != name:
        raise ValueError(f"report name {name!r} is not file-name safe; pass safe_key(name)")
    columns = config.drift_columns()
    numerical, categorical = _split_by_type(columns, config)
    for label, frame in (("reference", reference), ("current", current)):
        _check_schema(frame, label, columns, numerical)

    skip_reason = _skip_reason(reference, current, columns, config.drift.min_rows)
    if skip_reason is not None:
        return DriftResult(
            status="skipped",
            drift_share=None,
            drifted_columns=[],
            column_scores={},
            reason=skip_reason,
            html_path=None,
            json_path=None,
        )

    # Evidently takes seconds to import: only pay for it when a comparison actually runs.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=columns,
        drift_share=config.drift.share_threshold,
        threshold=config.drift.column_threshold,
    )
    # include_tests makes Evidently record its own per-column drift verdicts in the snapshot,
    # so the decision never has to guess whether a score is a distance or a p-value.
    report = Report([preset], include_tests=True)
    snapshot = report.run(
        Dataset.from_pandas(current.loc[:, columns], data_definition=definition),
        Dataset.from_pandas(reference.loc[:, columns], data_definition=definition),
    )

    report_dir.mkdir(parents=True, exist_ok=True)
    html_path = report_dir / f"{name}.html"
    json_path = report_dir / f"{name}.json"
    snapshot.save_html(str(html_path))
    snapshot.save_json(str(json_path))

    share, scores, methods, drifted = _read_snapshot(snapshot.dict(), columns)
    threshold = config.drift.share_threshold
    detected = share >= threshold
    comparison = ">=" if detected else "<"
    reason = (
        f"{len(drifted)} of {len(columns)} columns drifted "
        f"(share {share:.2f} {comparison} threshold {threshold:.2f})"
    )
    if drifted:
        reason += f": {', '.join(drifted)}"
    return DriftResult(
        status="drift" if detected else "no_drift",
        drift_share=share,
        drifted_columns=drifted,
        column_scores=scores,
        reason=reason,
        html_path=str(html_path),
        json_path=str(json_path),
        column_methods=methods,
    )


def _split_by_type(columns: list[str], config: AirloopConfig) -> tuple[list[str], list[str]]:
    specs = config.dataset.columns
    numerical = [c for c in columns if specs[c].type in ("int", "float")]
    categorical = [c for c in columns if specs[c].type in ("str", "bool")]
    return numerical, categorical


def _check_schema(frame: pd.DataFrame, label: str, columns: list[str], numerical: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{label} frame lacks compared column(s) {missing}")
    for column in numerical:
        dtype = frame[column].dtype
        # An all-null column reads as object; it is reported as skipped, not as a type error.
        if not pd.api.types.is_numeric_dtype(dtype) and frame[column].notna().any():
            raise ValueError(f"{label} frame column {column!r} is declared numeric but has dtype {dtype}")
        if pd.api.types.is_bool_dtype(dtype):
            raise ValueError(f"{label} frame column {column!r} is declared numeric but is boolean")


def _skip_reason(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], min_rows: int
) -> str | None:
    for label, frame in (("reference", reference), ("current", current)):
        if len(frame) < min_rows:
            return f"{label} frame has {len(frame)} rows, fewer than drift.min_rows={min_rows}"
    for label, frame in (("reference", reference), ("current", current)):
        counts = frame.loc[:, columns].notna().sum()
        sparse = {column: int(counts[column]) for column in columns if counts[column] < min_rows}
        if sparse:
            listed = ", ".join(f"{column!r} ({count})" for column, count in sparse.items())
            return (
                f"{label} frame has fewer than drift.min_rows={min_rows} non-null values "
                f"in column(s) {listed}"
            )
    return None


def _read_snapshot(
    snapshot: dict[str, Any], columns: list[str]
) -> tuple[float, dict[str, float], dict[str, str], list[str]]:
    """Drift share, per-column scores and methods, and drifted columns from `Snapshot.dict()`.

    Matches metrics and tests by their config `type` and `column`, not by position or id,
    and raises RuntimeError when the snapshot lacks a number or disagrees with itself.
    """
    share: float | None = None
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif kind.endswith(":ValueDrift") and config.get("column") in columns:
            scores[config["column"]] = float(metric["value"])
            methods[config["column"]] = str(config.get("method"))

    verdicts: dict[str, bool] = {}
    for test in snapshot.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if str(params.get("type", "")).endswith(":ValueDrift") and params.get("column") in columns:
            verdicts[params["column"]] = test.get("status") == "FAIL"

    if share is None:
        raise RuntimeError("Evidently snapshot has no DriftedColumnsCount share")
    absent = [c for c in columns if c not in scores or c not in verdicts]
    if absent:
        raise RuntimeError(f"Evidently snapshot has no drift score or verdict for {absent}")
    drifted = [c for c in columns if verdicts[c]]
    # The share comes from Evidently's dataset-level metric, the verdicts from its per-column
    # tests; both must describe the same columns.
    if abs(share - len(drifted) / len(columns)) > 1e-9:
        raise RuntimeError(
            f"Evidently drift share {share} disagrees with {len(drifted)} of {len(columns)} "
            "columns drifted in its per-column tests"
        )
    return share, scores, methods, drifted
