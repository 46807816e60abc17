"""Validation of a landed partition with Great Expectations, derived only from the dataset config.

Every expectation comes from `config.dataset`: each declared column exists, has its declared
type, is not null unless nullable, stays within min/max and within its allowed values, and the
table has between `min_rows` and `max_rows` rows. The gate fails closed: a partition that fails,
or cannot even be read, is moved to `quarantine/<partition>/` with its validation result (nothing
is deleted) and `PartitionRejected` is raised.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import pandas as pd

from airloop.config import AirloopConfig, ColumnSpec, ColumnType
from airloop.data.frames import read_table
from airloop.paths import StatePaths, safe_key

# GX would report usage over the network unless told not to; it must be set before the import.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.core import ExpectationSuiteValidationResult  # noqa: E402
from great_expectations.core.expectation_validation_result import (  # noqa: E402
    ExpectationValidationResult,
)
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context import AbstractDataContext  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.data_context.types.resource_identifiers import (  # noqa: E402
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

# Names GX resolves against pandas dtypes (numpy names, pandas extension dtypes) and, for
# object columns, against each value's Python type ("int", "float", "str", "bool").
_INT_TYPES = [
    "int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype",
    "UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype",
]  # fmt: skip
_FLOAT_TYPES = [
    *_INT_TYPES, "float", "float16", "float32", "float64", "Float32Dtype", "Float64Dtype",
]  # fmt: skip
_TYPE_LISTS: dict[ColumnType, list[str]] = {
    "int": _INT_TYPES,
    "float": _FLOAT_TYPES,
    # Not "object": every value is an instance of object, so it would accept anything.
    "str": ["str", "StringDtype"],
    "bool": ["bool", "BooleanDtype"],
}

# SUMMARY keeps unexpected counts and a few example values, enough to say what went wrong;
# a short example list keeps the result JSON small.
RESULT_FORMAT: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 5}

READABLE_FILE = "readable_file"
COLUMN_EXISTS = "expect_column_to_exist"
MATCH_SET = "expect_table_columns_to_match_set"
# Enough to read in a task log; the result JSON has all of them.
_MAX_REASONS = 8


class PartitionRejected(Exception):
    """A partition failed validation (or could not be read) and was quarantined."""

    def __init__(self, message: str, outcome: ValidationOutcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class ValidationOutcome:
    """What validating one partition found; `failures` is empty exactly when `success` is true."""

    partition: str
    success: bool
    rows: int
    failures: list[dict[str, Any]]
    result_path: str
    # Failed checks whose severity is "warning": recorded, the partition goes on.
    warnings: list[dict[str, Any]] = field(default_factory=list)
    # This partition's page in the Great Expectations Data Docs site, when one was built.
    docs_path: str | None = None

    def summary(self) -> dict[str, Any]:
        """A small JSON-serializable record (for XCom): never the data itself."""
        return asdict(self)


def build_expectations(
    config: AirloopConfig, previous_rows: list[int] | None = None
) -> list[gxe.Expectation]:
    """The expectations a partition must meet, derived only from `config.dataset`.

    Each carries its check name and severity in `meta`, so the verdict can be read back from
    GX's result. `previous_rows` (row counts of the partitions before this one) bounds growth.
    """
    dataset = config.dataset
    warn = set(dataset.warn_on)
    expectations: list[gxe.Expectation] = []
    for name, spec in dataset.columns.items():
        expectations.extend(_column_expectations(name, spec))
    table = [
        (
            "row_count",
            gxe.ExpectTableRowCountToBeBetween(min_value=dataset.min_rows, max_value=dataset.max_rows),
        ),
        (
            "extra_columns",
            gxe.ExpectTableColumnsToMatchSet(column_set=list(dataset.columns), exact_match=True),
        ),
    ]
    if dataset.keys:
        table.append(("unique_keys", gxe.ExpectCompoundColumnsToBeUnique(column_list=list(dataset.keys))))
    if dataset.max_row_growth and previous_rows:
        ceiling = int(median(previous_rows) * dataset.max_row_growth)
        table.append(("row_growth", gxe.ExpectTableRowCountToBeBetween(min_value=0, max_value=ceiling)))
    expectations.extend(_tagged(e, check, check in warn) for check, e in table)
    return expectations


def _column_expectations(name: str, spec: ColumnSpec) -> list[gxe.Expectation]:
    checks: list[tuple[str, gxe.Expectation]] = [
        ("exists", gxe.ExpectColumnToExist(column=name)),
        ("type", gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=_type_list(spec))),
    ]
    if not spec.nullable:
        checks.append(("not_null", gxe.ExpectColumnValuesToNotBeNull(column=name)))
    elif not spec.all_null_ok:
        # At least one value: a column that arrives all-null is broken upstream, not "nullable".
        checks.append(("not_null", gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=1e-9)))
    if spec.min is not None or spec.max is not None:
        checks.append(
            ("range", gxe.ExpectColumnValuesToBeBetween(column=name, min_value=spec.min, max_value=spec.max))
        )
    if spec.allowed is not None:
        checks.append(("allowed", gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(spec.allowed))))
    if spec.mean is not None:
        spread = spec.mean.within_std * spec.mean.std
        low, high = spec.mean.reference - spread, spec.mean.reference + spread
        checks.append(("mean", gxe.ExpectColumnMeanToBeBetween(column=name, min_value=low, max_value=high)))
    return [_tagged(e, check, check in spec.warn_on) for check, e in checks]


def _tagged(expectation: gxe.Expectation, check: str, warning: bool) -> gxe.Expectation:
    expectation.meta = {"airloop_check": check, "severity": "warning" if warning else "error"}
    return expectation


def _type_list(spec: ColumnSpec) -> list[str]:
    # CSV readers turn an int column holding nulls into float64, so a nullable int column
    # may arrive as floats; its integrality is then not checked.
    if spec.type == "int" and spec.nullable:
        return _TYPE_LISTS["float"]
    return _TYPE_LISTS[spec.type]


def validate_frame(
    frame: pd.DataFrame,
    config: AirloopConfig,
    partition: str,
    result_path: Path,
    previous_rows: list[int] | None = None,
    today: datetime | None = None,
    docs_site: Path | None = None,
) -> ValidationOutcome:
    """Run the config's expectations on `frame` and write GX's result JSON to `result_path`.

    Never raises for bad data: the outcome says what failed (errors) and what only warned.
    Quarantine is the caller's business.
    """
    result, context = _validate(
        _checkable(frame), build_expectations(config, previous_rows), name=config.name
    )
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result.to_json_dict(), indent=2))
    docs = _data_docs_page(context, result, config.name, partition, docs_site) if docs_site else None
    found = _failures(result, set(config.dataset.columns))
    date_problem = _partition_date_problem(config, partition, today or datetime.now(UTC))
    if date_problem is not None:
        severity = "warning" if "partition_date" in config.dataset.warn_on else "error"
        found.append(
            {"expectation": "partition_date", "column": None, "details": date_problem, "severity": severity}
        )
    errors = [f for f in found if f["severity"] == "error"]
    return ValidationOutcome(
        partition=partition,
        success=not errors,
        rows=len(frame),
        failures=errors,
        result_path=str(result_path),
        warnings=[f for f in found if f["severity"] == "warning"],
        docs_path=docs,
    )


def _partition_date_problem(config: AirloopConfig, partition: str, today: datetime) -> str | None:
    spec = config.dataset.partition
    if spec.kind != "date" or spec.date_format is None:
        return None
    try:
        dated = datetime.strptime(partition, spec.date_format).replace(tzinfo=UTC)
    except ValueError:
        return f"partition name {partition!r} does not match the date format {spec.date_format!r}"
    if dated > today:
        return f"partition {partition!r} is dated in the future (today is {today:%Y-%m-%d})"
    return None


def _checkable(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with pandas string-extension columns as object, the rest untouched (not copied).

    GX matches extension dtypes by equality with one default instance, so pyarrow-backed strings
    (which Parquet round-trips) would fail a str type check; as object they are checked per value.
    """
    strings = [c for c, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype)]
    return frame.astype({c: object for c in strings}) if strings else frame


def _validate(
    frame: pd.DataFrame, expectations: list[gxe.Expectation], name: str
) -> tuple[ExpectationSuiteValidationResult, AbstractDataContext]:
    """Pass/fail for every expectation first (cheap); counts and examples only for failures.

    GX's SUMMARY format collects unexpected values for every expectation, which costs
    more than the checks themselves on large partitions; most partitions pass everything.
    Returns the combined result and the (ephemeral) context it ran in.
    """
    context = _ephemeral_context()
    verdicts = _run_suite(context, frame, expectations, name, {"result_format": "BOOLEAN_ONLY"})
    failed = {_key(r.expectation_config) for r in verdicts.results if not r.success}
    if not failed:
        return verdicts, context
    retry = [_copy(e) for e in expectations if _key(e.configuration) in failed]
    detailed = _run_suite(context, frame, retry, f"{name}-details", RESULT_FORMAT)
    by_config = {_key(r.expectation_config): r for r in detailed.results}
    verdicts.results = [by_config.get(_key(r.expectation_config), r) for r in verdicts.results]
    return verdicts, context


def _key(configuration: Any) -> str:
    """What an expectation checks (its type and arguments), whatever suite it sits in."""
    # Results add the batch they ran on to the arguments: not part of what was checked.
    kwargs = {k: v for k, v in configuration.kwargs.items() if k != "batch_id"}
    return json.dumps({"type": configuration.type, "kwargs": kwargs}, sort_keys=True, default=str)


def _copy(expectation: gxe.Expectation) -> gxe.Expectation:
    # A suite takes ownership of its expectations (it sets their ids): give the second suite copies.
    return expectation.copy(update={"id": None}, deep=True)


def _ephemeral_context() -> AbstractDataContext:
    # A fresh ephemeral context per partition: nothing leaks between runs.
    context = gx.get_context(mode="ephemeral")
    # Progress bars are noise in task logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _run_suite(
    context: AbstractDataContext,
    frame: pd.DataFrame,
    expectations: list[gxe.Expectation],
    name: str,
    result_format: dict[str, Any],
) -> ExpectationSuiteValidationResult:
    batch_definition = (
        context.data_sources.add_pandas(name)
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe(name)
    )
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
    )
    return definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)


def _data_docs_page(
    context: AbstractDataContext,
    result: ExpectationSuiteValidationResult,
    suite: str,
    partition: str,
    site: Path,
) -> str:
    """Render `result` into the Data Docs site at `site`; returns the page's path.

    Each partition's page stays on disk; the task log, the outcome and the UI's button name
    it. No index page: GX's index build deletes every page whose result is not in the
    context's store, and this context is ephemeral, so it would keep only the newest page.
    """
    site_config: Any = {
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)},
    }
    context.add_data_docs_site(site_name="airloop", site_config=site_config)
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite),
        run_id=RunIdentifier(run_name=partition, run_time=datetime.now(UTC)),
        batch_identifier=partition,
    )
    context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=["airloop"], resource_identifiers=[key], build_index=False)
    url = context.get_docs_sites_urls(resource_identifier=key, site_name="airloop")[0]["site_url"]
    return str(url).removeprefix("file://")


def _failures(result: ExpectationSuiteValidationResult, declared: set[str]) -> list[dict[str, Any]]:
    """One entry per failed expectation, leaving out checks of columns already reported missing."""
    failed = [r for r in result.results if not r.success]
    missing = {_column(r) for r in failed if _expectation_type(r) == COLUMN_EXISTS}
    found = []
    for r in failed:
        if _expectation_type(r) != COLUMN_EXISTS and _column(r) in missing:
            continue
        details = _details(r)
        if _expectation_type(r) == MATCH_SET:
            extra = sorted(set((r.result or {}).get("observed_value") or []) - declared)
            if not extra:
                continue  # only missing columns, each already reported
            details = f"columns not declared in the config: {extra}"
        meta = (r.expectation_config.meta if r.expectation_config else None) or {}
        found.append(
            {
                "expectation": _expectation_type(r),
                "column": _column(r),
                "details": details,
                "check": meta.get("airloop_check"),
                "severity": meta.get("severity", "error"),
            }
        )
    return found


def _expectation_type(result: ExpectationValidationResult) -> str:
    config = result.expectation_config
    return config.type if config else "unknown"


def _column(result: ExpectationValidationResult) -> str | None:
    config = result.expectation_config
    return config.kwargs.get("column") if config else None


def _details(result: ExpectationValidationResult) -> str:
    error = _exception_message(result.exception_info or {})
    if error is not None:
        return f"could not be evaluated: {error}"
    outcome = result.result or {}
    if "unexpected_count" in outcome:
        counts = f"{outcome['unexpected_count']} of {outcome.get('element_count')} values unexpected"
        examples = _examples(outcome.get("partial_unexpected_list") or [])
        return f"{counts}, e.g. {examples}" if examples else counts
    if "observed_value" in outcome:
        return f"observed {outcome['observed_value']}"
    return "column is missing" if _expectation_type(result) == COLUMN_EXISTS else "failed"


def _examples(values: list[Any]) -> list[Any]:
    # Nulls say nothing (the not-null check already counts them); repeats say nothing new.
    examples: list[Any] = []
    for value in values:
        if not (pd.api.types.is_scalar(value) and pd.isna(value)) and value not in examples:
            examples.append(value)
    return examples


def _exception_message(info: dict[str, Any]) -> str | None:
    # GX reports an error raised while validating flat, and errors raised computing a metric
    # keyed by the metric's id (where "raised_exception" may be the string "True").
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and str(entry.get("raised_exception")) == "True":
            lines = str(entry.get("exception_message") or "").strip().splitlines()
            return lines[-1] if lines else "error"
    return None


def validate_partition(
    landed_file: Path, config: AirloopConfig, paths: StatePaths, partition: str
) -> ValidationOutcome:
    """Validate a landed file; on success return the outcome and leave the file where it is.

    The result is written to `reports/validation/<partition>.json`. A file that fails, or cannot
    be read at all (empty, corrupt, wrong encoding), is moved to `quarantine/<partition>/` with a
    copy of its result, and `PartitionRejected` is raised naming what failed and where it went.
    """
    landed_file = Path(landed_file)
    quarantine_dir = paths.quarantine / safe_key(partition)
    _check_landed(landed_file, quarantine_dir, partition)
    outcome = _validate_file(landed_file, config, paths, partition)
    if outcome.success:
        return outcome
    _quarantine(landed_file, Path(outcome.result_path), quarantine_dir)
    raise PartitionRejected(_rejection_message(outcome, quarantine_dir), outcome)


def _validate_file(path: Path, config: AirloopConfig, paths: StatePaths, partition: str) -> ValidationOutcome:
    """Read and validate one file; a file that cannot even be read fails as `readable_file`."""
    result_path = paths.report_dir("validation") / f"{safe_key(partition)}.json"
    try:
        frame = read_table(path)
    except Exception as error:  # noqa: BLE001 - anything that stops a read is a rejection
        return _unreadable(path, partition, result_path, error)
    return validate_frame(
        frame,
        config,
        partition,
        result_path,
        _previous_rows(paths, partition),
        docs_site=data_docs_site(paths),
    )


def data_docs_site(paths: StatePaths) -> Path:
    return paths.reports / "data_docs"


def _previous_rows(paths: StatePaths, partition: str) -> list[int]:
    """Row counts of the partitions accepted before this one (from Parquet metadata, not data)."""
    import pyarrow.parquet as pq

    from airloop.data.ingest import partition_path, validated_partitions

    earlier = [p for p in validated_partitions(paths) if p < partition]
    return [pq.read_metadata(partition_path(paths, p)).num_rows for p in earlier]


def _check_landed(landed_file: Path, quarantine_dir: Path, partition: str) -> None:
    if landed_file.exists():
        return
    # A retried task finds its file already quarantined: it converges to the same rejection.
    if (quarantine_dir / landed_file.name).exists():
        raise PartitionRejected(
            f"partition {partition!r} was already rejected and quarantined in {quarantine_dir}"
        )
    raise FileNotFoundError(f"landed file not found: {landed_file}")


def _unreadable(landed_file: Path, partition: str, result_path: Path, error: Exception) -> ValidationOutcome:
    failure = {
        "expectation": READABLE_FILE,
        "column": None,
        "details": f"{type(error).__name__}: {error}".strip()[:500],
        "check": READABLE_FILE,
        "severity": "error",
    }
    # Not a GX result (GX never saw a frame), but the same place and a similar shape.
    record = {
        "success": False,
        "file": str(landed_file),
        "partition": partition,
        "results": [failure],
    }
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(record, indent=2))
    return ValidationOutcome(partition, False, 0, [failure], str(result_path))


def _quarantine(landed_file: Path, result_path: Path, quarantine_dir: Path) -> None:
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    file_target = quarantine_dir / landed_file.name
    result_target = quarantine_dir / f"{landed_file.name}.validation.json"
    _keep_previous(file_target)
    _keep_previous(result_target)
    shutil.move(str(landed_file), file_target)
    shutil.copy2(result_path, result_target)


def _keep_previous(path: Path) -> None:
    # A partition rejected before (then re-landed) must not overwrite the earlier evidence.
    if not path.exists():
        return
    n = 1
    while (older := path.with_name(f"{path.name}.{n}")).exists():
        n += 1
    path.rename(older)


def _rejection_message(outcome: ValidationOutcome, quarantine_dir: Path) -> str:
    reasons = [_reason(f) for f in outcome.failures[:_MAX_REASONS]]
    if len(outcome.failures) > _MAX_REASONS:
        reasons.append(f"... {len(outcome.failures) - _MAX_REASONS} more in {outcome.result_path}")
    return (
        f"partition {outcome.partition!r} rejected, {len(outcome.failures)} failed check(s): "
        f"{'; '.join(reasons)}. Quarantined in {quarantine_dir}"
    )


def _reason(failure: dict[str, Any]) -> str:
    where = f" on column {failure['column']!r}" if failure["column"] is not None else ""
    return f"{failure['expectation']}{where} ({failure['details']})"


def revalidate_quarantined(partition: str, config: AirloopConfig, paths: StatePaths) -> ValidationOutcome:
    """Validate a quarantined partition again, after a fix to the file or to the config.

    If it now passes, the file goes back to the landing directory (atomically) for
    ingest_data to take, and the quarantine folder, with the earlier results, is kept under
    quarantine/_released/. If it still fails, it stays where it is.
    """
    kept = paths.quarantine / safe_key(partition)
    candidates = sorted(p for p in kept.glob(config.dataset.source.pattern) if p.is_file())
    if not candidates:
        raise FileNotFoundError(f"no quarantined file for partition {partition!r} in {kept}")
    quarantined = candidates[-1]
    outcome = _validate_file(quarantined, config, paths, partition)
    if outcome.success:
        paths.landing.mkdir(parents=True, exist_ok=True)
        staging = paths.landing / f".{quarantined.name}.tmp"
        shutil.copy2(quarantined, staging)
        os.replace(staging, paths.landing / quarantined.name)
        released = paths.quarantine / "_released" / f"{safe_key(partition)}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        released.parent.mkdir(parents=True, exist_ok=True)
        kept.rename(released)
    return outcome
