"""Compare a current window of rows against a model's reference profile; decide drift.

`compare_to_reference` counts the current window's values per compared column and runs
Evidently's column drift tests on the counts (`airloop.monitoring.column_drift`: the same
methods, thresholds and default choices as Evidently 0.7's `DataDriftPreset`, scores equal
to Evidently's), against the reference counts stored when the model was trained
(`airloop.monitoring.reference`); given the model's scores on the window, it tests them
against its scores on its training data the same way (prediction drift). It keeps an
Evidently report (HTML and JSON: the `DataDriftPreset` and a `ValueDrift` of the scores)
drawn from at most `drift.report_rows` rows a side, optionally adds it to an Evidently
workspace (so `evidently ui` shows the history), and returns a `DriftResult`: a decision
record (status, share of drifted columns, which columns, per-column scores and methods,
the prediction test, a reason sentence and the report paths). It never answers "no drift"
when it could not measure:

- a compared column missing from the current frame, or an int or float column that is not
  numeric, raises ValueError (the data does not match the config: a schema problem);
- fewer than `drift.min_rows` rows on either side, or a compared column with fewer than
  `drift.min_rows` non-null values on either side (an all-null column included), gives
  status "skipped" with a reason naming the side, column and counts; nothing is written.
  Skipped is never `drift_detected`; the caller decides how loud a skip should be.

Status is "drift" when the share of drifted columns reaches `drift.share_threshold` or the
predictions drifted.

Every column type is compared (see `airloop.monitoring.reference.compared_frame`): int,
float, date and datetime columns as numbers, str and bool columns as categories; the
predictions as numbers, or as classes for a multiclass model. A test that cannot apply to a
column as it turned out (a constant column, one of two values, a configured test that does
not fit) is replaced by one that can (`airloop.monitoring.column_drift`); the result's
`column_notes`, its reason and the snapshot's metadata say which and why. The Evidently
report is given the test each verdict used, and a numeric column tested by chisquare or z
(Evidently's own pick for 5 distinct values or fewer on a small reference) is declared
categorical to it, the only type Evidently accepts those tests for by name.

For each categorical column (and a multiclass model's predictions) the result also gives the
share of current non-null rows holding a value the reference never had (`unseen_shares`).

A column's score is a distance (wasserstein, jensenshannon, psi, kl_div: drift when the
score >= its threshold) or a p-value (ks: drift when <= threshold; chisquare, z: when <),
per `DriftResult.column_methods`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from airloop.config import AirloopConfig
from airloop.monitoring.column_drift import (
    ColumnDrift,
    ColumnKind,
    compare_column,
    count_values,
    evidently_kind,
    unseen_share,
)
from airloop.monitoring.reference import (
    PREDICTION,
    ReferenceProfile,
    as_predictions,
    column_kinds,
    compared_frame,
    count_predictions,
    reference_profile,
)
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
    # The scores' test; None when there were no scores on one side.
    prediction_drift: ColumnDrift | None = None
    # The Evidently workspace run (snapshot id) holding this check's report, if kept there.
    workspace_run: str | None = None
    # Columns (and "prediction") whose test was replaced: the method asked for, and why
    # ("chisquare replaced by z: ..."); `column_methods` has the method used.
    requested_methods: dict[str, str] = field(default_factory=dict)
    column_notes: dict[str, str] = field(default_factory=dict)
    # Per categorical column (and categorical predictions): the share of current non-null
    # rows whose value the reference never had.
    unseen_shares: dict[str, float] = field(default_factory=dict)

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
            "prediction_drift": asdict(self.prediction_drift) if self.prediction_drift else None,
            "html_path": self.html_path,
            "json_path": self.json_path,
            "workspace_run": self.workspace_run,
            "requested_methods": dict(self.requested_methods),
            "column_notes": dict(self.column_notes),
            "unseen_shares": {name: float(share) for name, share in self.unseen_shares.items()},
        }


def compare_frames(
    reference: pd.DataFrame, current: pd.DataFrame, config: AirloopConfig, report_dir: Path, name: str
) -> DriftResult:
    """`compare_to_reference` against a profile of `reference` (see `reference_profile`)."""
    return compare_to_reference(reference_profile(reference, config), current, config, report_dir, name)


def compare_to_reference(
    reference: ReferenceProfile,
    current: pd.DataFrame,
    config: AirloopConfig,
    report_dir: Path,
    name: str,
    predictions: np.ndarray | None = None,
    workspace: Path | None = None,
    tags: Sequence[str] = (),
) -> DriftResult:
    """Compare `current` (and the model's `predictions` on it) against `reference`.

    Compares `config.drift_columns()`, and the predictions when given and the profile holds
    the model's training-data scores. Writes `<report_dir>/<name>.html` and `.json`
    (overwriting a previous run's, so a retry converges) unless skipped, and adds the report
    to the Evidently workspace at `workspace` (project `config.name`) when given, its run
    tagged `tags` (e.g. "served" or "ingested": the dashboard's panels select by them). Status is
    "drift" when the share of drifted columns >= `config.drift.share_threshold` or the
    predictions drifted, else "no_drift"; "skipped" when a side or a column has fewer than
    `config.drift.min_rows` (non-null) rows. `predictions`: 1-D, one per current row, counted
    as the profile's were (numbers, or a multiclass model's predicted classes). Raises
    ValueError when a compared column is missing, an int or float column holds non-numeric
    values, the predictions are not one 1-D value per current row, the profile lacks or
    counted differently a compared column, or `name` is not a plain file-name key (see
    `airloop.paths.safe_key`).
    """
    if not name or safe_key(name) != name:
        raise ValueError(f"report name {name!r} is not file-name safe; pass safe_key(name)")
    kinds = column_kinds(config)
    compared = compared_frame(current, "current", config)
    if predictions is not None and len(predictions) != len(current):
        raise ValueError(f"{len(predictions)} predictions for {len(current)} current rows")
    counts = {column: count_values(compared[column], kind) for column, kind in kinds.items()}
    skip_reason = _skip_reason(reference, ReferenceProfile(len(current), counts), config.drift.min_rows)
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
    _check_profile(reference, kinds)

    drift = config.drift
    tests = [
        compare_column(
            column,
            reference.columns[column],
            counts[column],
            drift.methods.get(column),
            drift.thresholds.get(column, drift.column_threshold),
        )
        for column in kinds
    ]
    prediction, current_predictions = None, None
    unseen = {
        column: unseen_share(reference.columns[column], counts[column])
        for column, kind in kinds.items()
        if kind == "categorical"
    }
    if predictions is not None and reference.predictions is not None:
        current_predictions = as_predictions(predictions, reference.predictions.kind)
        predicted = count_predictions(current_predictions, reference.predictions.kind)
        # A configured method that does not fit the predictions' kind is replaced, with a note.
        prediction = compare_column(
            PREDICTION, reference.predictions, predicted, drift.prediction_method, drift.prediction_threshold
        )
        if predicted.kind == "categorical":
            unseen[PREDICTION] = unseen_share(reference.predictions, predicted)
    report = _report(reference, compared, current_predictions, config, tests, prediction, tags)
    html_path, json_path = report_dir / f"{name}.html", report_dir / f"{name}.json"
    report_dir.mkdir(parents=True, exist_ok=True)
    report.save_html(str(html_path))
    report.save_json(str(json_path))
    workspace_run = _keep_in_workspace(report, workspace, config.name, name) if workspace else None

    drifted = [test.column for test in tests if test.drifted]
    share = len(drifted) / len(tests)
    detected = share >= drift.share_threshold
    comparison = ">=" if detected else "<"
    reason = (
        f"{len(drifted)} of {len(tests)} columns drifted "
        f"(share {share:.2f} {comparison} threshold {drift.share_threshold:.2f})"
    )
    if drifted:
        reason += f": {', '.join(drifted)}"
    if prediction is not None:
        verdict = "drifted" if prediction.drifted else "did not drift"
        reason += f"; predictions {verdict} ({prediction.method} {prediction.score:.4g})"
    replaced = [test for test in tests + ([prediction] if prediction else []) if test.note]
    reason += _what_else(replaced, unseen)
    return DriftResult(
        status="drift" if detected or (prediction is not None and prediction.drifted) else "no_drift",
        drift_share=share,
        drifted_columns=drifted,
        column_scores={test.column: test.score for test in tests},
        reason=reason,
        html_path=str(html_path),
        json_path=str(json_path),
        column_methods={test.column: test.method for test in tests},
        prediction_drift=prediction,
        workspace_run=workspace_run,
        requested_methods={test.column: str(test.requested_method) for test in replaced},
        column_notes={test.column: str(test.note) for test in replaced},
        unseen_shares=unseen,
    )


def _what_else(replaced: list[ColumnDrift], unseen: dict[str, float]) -> str:
    """The reason's tail: each replaced test's note, and the columns holding values new to the reference."""
    tail = "".join(f"; {test.column}: {test.note}" for test in replaced)
    new_values = {column: share for column, share in unseen.items() if share > 0}
    if new_values:
        listed = ", ".join(f"{column} {share:.1%}" for column, share in new_values.items())
        tail += f"; rows with values unseen in the reference: {listed}"
    return tail


def _check_profile(reference: ReferenceProfile, kinds: dict[str, ColumnKind]) -> None:
    """Raise ValueError when the profile lacks a compared column or counted one as another kind."""
    missing = [column for column in kinds if column not in reference.columns]
    if missing:
        raise ValueError(f"the reference profile has no counts for compared column(s) {missing}")
    counted = {column: reference.columns[column].kind for column in kinds}
    differing = {column: kind for column, kind in counted.items() if kind != kinds[column]}
    if differing:
        raise ValueError(
            f"the reference profile counted {differing} otherwise than the config's types say; "
            "count the reference again"
        )


def _report(
    reference: ReferenceProfile,
    current: pd.DataFrame,
    predictions: np.ndarray | None,
    config: AirloopConfig,
    tests: list[ColumnDrift],
    prediction: ColumnDrift | None,
    tags: Sequence[str] = (),
) -> Any:
    """Evidently's DataDriftPreset (and ValueDrift of the predictions) on the same tests.

    `current` is the compared frame (`compared_frame`) and `predictions` as `as_predictions`
    gives them. Each column is declared to Evidently as `evidently_kind` says for the test
    its verdict used, so Evidently accepts that test. Drawn from at most report_rows a
    side: with both sides within it, its numbers are the verdicts' numbers (checked); above,
    it is a seeded sample's picture. The snapshot's metadata (kept in the workspace) says how
    many rows each side had and which tests were replaced; its tags are `tags`. Returns the
    Evidently snapshot.
    """
    # Evidently takes seconds to import: only pay for it when a comparison actually runs.
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    kinds = column_kinds(config)
    columns = list(kinds)
    limit = config.drift.report_rows
    current_rows = current.loc[:, columns]
    declared = {test.column: evidently_kind(kinds[test.column], test.method) for test in tests}
    metrics: list[Any] = [
        DataDriftPreset(
            columns=columns,
            drift_share=config.drift.share_threshold,
            # The methods the verdicts used, so the report's numbers mean the same thing.
            per_column_method={test.column: test.method for test in tests},
            per_column_threshold={test.column: test.threshold for test in tests},
        )
    ]
    reference_rows = reference.sample_frame(limit)
    if prediction is not None and predictions is not None and reference.predictions is not None:
        current_rows = current_rows.assign(**{PREDICTION: predictions})
        scores = ValueDrift(column=PREDICTION, method=prediction.method, threshold=prediction.threshold)
        metrics.append(scores)
        declared[PREDICTION] = evidently_kind(reference.predictions.kind, prediction.method)
    else:
        reference_rows = reference_rows.drop(columns=[PREDICTION], errors="ignore")
    if len(current_rows) > limit:
        current_rows = current_rows.sample(limit, random_state=0)
    definition = DataDefinition(
        numerical_columns=[c for c, kind in declared.items() if kind == "numerical"],
        categorical_columns=[c for c, kind in declared.items() if kind == "categorical"],
    )
    metadata = {"reference_rows": str(reference.rows), "current_rows": str(len(current))}
    replaced = [test for test in tests + ([prediction] if prediction else []) if test.note]
    notes = [f"{test.column}: {test.note}" for test in replaced]
    if notes:
        metadata["replaced_tests"] = "; ".join(notes)
    # chisquare divides by zero expected rows for a category new in current (p = 0, as ours).
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = Report(metrics, include_tests=True).run(
            Dataset.from_pandas(current_rows, data_definition=definition),
            Dataset.from_pandas(reference_rows, data_definition=definition),
            metadata=metadata,
            tags=list(tags),
        )
    if len(current) <= limit and reference.rows <= limit:
        _agrees_with_evidently(snapshot.dict(), tests + ([prediction] if prediction else []))
    return snapshot


def _keep_in_workspace(snapshot: Any, workspace: Path, project_name: str, name: str) -> str:
    """Add the report to the local Evidently workspace's project; returns the run's id."""
    from airloop.monitoring.dashboard import keep_in_workspace

    return keep_in_workspace(snapshot, workspace, project_name, name)


def _agrees_with_evidently(snapshot: dict[str, Any], tests: list[ColumnDrift]) -> None:
    """Raise RuntimeError unless Evidently, on all the same rows, reached the same verdicts."""
    _, scores, _, drifted = _read_snapshot(snapshot, [test.column for test in tests])
    ours = [test.column for test in tests if test.drifted]
    differing = [t.column for t in tests if abs(scores[t.column] - t.score) > 1e-9 * max(1.0, abs(t.score))]
    if drifted != ours or differing:
        raise RuntimeError(
            f"drift verdicts disagree with Evidently's on the same rows: ours {ours}, Evidently's "
            f"{drifted}; scores differ for {differing}"
        )


def _skip_reason(reference: ReferenceProfile, current: ReferenceProfile, min_rows: int) -> str | None:
    for label, side in (("reference", reference), ("current", current)):
        if side.rows < min_rows:
            return f"{label} frame has {side.rows} rows, fewer than drift.min_rows={min_rows}"
    for label, side in (("reference", reference), ("current", current)):
        sparse = {column: counts.rows for column, counts in side.columns.items() if counts.rows < min_rows}
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
    # tests; both must describe the same data columns (the predictions are not one of them).
    data = [c for c in columns if c != PREDICTION]
    drifted_data = [c for c in drifted if c != PREDICTION]
    if abs(share - len(drifted_data) / len(data)) > 1e-9:
        raise RuntimeError(
            f"Evidently drift share {share} disagrees with {len(drifted_data)} of {len(data)} "
            "columns drifted in its per-column tests"
        )
    return share, scores, methods, drifted
