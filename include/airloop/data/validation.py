"""Validation of a landed partition with Great Expectations, derived only from the dataset config.

Every expectation comes from `config.dataset`: each declared column exists, has its declared
type, is not null unless nullable, stays within min/max and within its allowed values, and the
table has between `min_rows` and `max_rows` rows, unique keys and labels among the declared
classes. Date columns must read as dates (in their format, when given), lie within min/max and
not in the future, and the partition's date column within the period its name covers. The gate
fails closed: a partition that fails, or cannot even be read, is moved to
`quarantine/<partition>/` with its validation result (nothing is deleted) and `PartitionRejected`
is raised.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import pandas as pd

from airloop.config import (
    DATE_TYPES,
    AirloopConfig,
    ColumnSpec,
    ColumnType,
    DatasetConfig,
    PartitionSpec,
)
from airloop.data.date_bounds import date_bound
from airloop.data.dates import parse_dates, utc_naive
from airloop.data.frames import read_table
from airloop.data.sources import land_file
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
# A date column is checked as `_checkable` leaves it: datetime64 where every value read as a
# date, else an object column of Timestamps and the raw values that did not read.
_DATE_TYPE_LIST = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]", "Timestamp"]
_TYPE_LISTS: dict[ColumnType, list[str]] = {
    "int": _INT_TYPES,
    "float": _FLOAT_TYPES,
    # Not "object": every value is an instance of object, so it would accept anything.
    "str": ["str", "StringDtype"],
    "bool": ["bool", "BooleanDtype"],
    "date": _DATE_TYPE_LIST,
    "datetime": _DATE_TYPE_LIST,
}
# The finest field a date partition's format names decides the period its name covers
# ("%Y-%m": a month); a format naming none of these covers a year.
_PERIOD_STEPS = (
    (frozenset("SXc"), pd.DateOffset(seconds=1)),
    (frozenset("M"), pd.DateOffset(minutes=1)),
    (frozenset("HI"), pd.DateOffset(hours=1)),
    (frozenset("djaAwuUWVx"), pd.DateOffset(days=1)),
    (frozenset("mbB"), pd.DateOffset(months=1)),
)

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
    config: AirloopConfig,
    previous_rows: list[int] | None = None,
    partition: str | None = None,
    today: datetime | None = None,
) -> list[gxe.Expectation]:
    """The expectations a partition must meet, derived from `config.dataset`.

    Each carries its check name and severity in `meta` (and, for checks on a date column's
    parsed copy, the column it stands for), so the verdict can be read back from GX's result.
    `previous_rows` (row counts of the partitions before this one) bounds growth; `partition`
    (its name) bounds the dates of `dataset.partition.column`; a date after `today` (default:
    now) lies in the future. The frame checked must be `_checkable`'s.
    """
    dataset = config.dataset
    now = utc_naive(today or datetime.now(UTC))
    expectations: list[gxe.Expectation] = []
    for name, spec in dataset.columns.items():
        expectations.extend(_column_expectations(name, spec, now))
    expectations.extend(_table_expectations(dataset, previous_rows, partition))
    return expectations


def _table_expectations(
    dataset: DatasetConfig, previous_rows: list[int] | None, partition: str | None
) -> list[gxe.Expectation]:
    warn = set(dataset.warn_on)
    table: list[tuple[str, gxe.Expectation]] = [
        (
            "row_count",
            gxe.ExpectTableRowCountToBeBetween(min_value=dataset.min_rows, max_value=dataset.max_rows),
        ),
        (
            "extra_columns",
            gxe.ExpectTableColumnsToMatchSet(column_set=_checked_columns(dataset), exact_match=True),
        ),
    ]
    if dataset.keys:
        table.append(("unique_keys", _unique(dataset.keys)))
    if dataset.max_row_growth and previous_rows:
        ceiling = int(median(previous_rows) * dataset.max_row_growth)
        table.append(("row_growth", gxe.ExpectTableRowCountToBeBetween(min_value=0, max_value=ceiling)))
    found = [_tagged(e, check, check in warn) for check, e in table]
    target = dataset.target
    if target.classes is not None:
        # isin compares as the column's values are: 3.0 (an int column read as float) is 3.
        labels = gxe.ExpectColumnValuesToBeInSet(column=target.column, value_set=list(target.classes))
        note = f"labels must be one of {list(target.classes)}"
        found.append(_tagged(labels, "target_classes", "target_classes" in warn, note=note))
    period = _partition_period(dataset.partition, partition)
    if period is not None and dataset.partition.column is not None:
        column, (start, end) = dataset.partition.column, period
        within = gxe.ExpectColumnValuesToBeBetween(
            column=_parsed(column), min_value=start, max_value=end, strict_max=True
        )
        note = f"outside partition {partition!r}, which covers {_text(start)} up to {_text(end)}"
        found.append(_tagged(within, "partition_date", "partition_date" in warn, note=note, column=column))
    return found


def _unique(keys: tuple[str, ...]) -> gxe.Expectation:
    # GX's compound check refuses a single column.
    if len(keys) == 1:
        return gxe.ExpectColumnValuesToBeUnique(column=keys[0])
    return gxe.ExpectCompoundColumnsToBeUnique(column_list=list(keys))


def _column_expectations(name: str, spec: ColumnSpec, now: pd.Timestamp) -> list[gxe.Expectation]:
    warn = set(spec.warn_on)
    typed = gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=_type_list(spec))
    found = [
        _tagged(gxe.ExpectColumnToExist(column=name), "exists", "exists" in warn),
        _tagged(typed, "type", "type" in warn, note=_type_note(spec)),
    ]
    if not spec.nullable:
        found.append(_tagged(gxe.ExpectColumnValuesToNotBeNull(column=name), "not_null", "not_null" in warn))
    elif not spec.all_null_ok:
        # At least one value: a column that arrives all-null is broken upstream, not "nullable".
        some = gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=1e-9)
        found.append(_tagged(some, "not_null", "not_null" in warn))
    if spec.type in DATE_TYPES:
        return found + _date_expectations(name, spec, now)
    return found + _value_expectations(name, spec)


def _value_expectations(name: str, spec: ColumnSpec) -> list[gxe.Expectation]:
    checks: list[tuple[str, gxe.Expectation]] = []
    if spec.min is not None or spec.max is not None:
        checks.append(
            (
                "range",
                gxe.ExpectColumnValuesToBeBetween(
                    column=name, min_value=_number(spec.min), max_value=_number(spec.max)
                ),
            )
        )
    if spec.allowed is not None:
        checks.append(("allowed", gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(spec.allowed))))
    if spec.mean is not None:
        spread = spec.mean.within_std * spec.mean.std
        low, high = spec.mean.reference - spread, spec.mean.reference + spread
        checks.append(("mean", gxe.ExpectColumnMeanToBeBetween(column=name, min_value=low, max_value=high)))
    return [_tagged(e, check, check in spec.warn_on) for check, e in checks]


def _number(bound: float | str | None) -> float | None:
    # Text bounds are dates, which only date columns have (the config says so).
    return float(bound) if isinstance(bound, str) else bound


def _date_expectations(name: str, spec: ColumnSpec, now: pd.Timestamp) -> list[gxe.Expectation]:
    """Range, allowed dates and not-in-the-future, checked on the column's parsed copy."""
    parsed, warn = _parsed(name), "range" in spec.warn_on
    low = None if spec.min is None else _date_bound(spec.min, spec.format)
    high = None if spec.max is None else _date_bound(spec.max, spec.format)
    found = []
    if low is not None or high is not None:
        between = gxe.ExpectColumnValuesToBeBetween(column=parsed, min_value=low, max_value=high)
        note = f"dates must lie {_span(low, high)}"
        found.append(_tagged(between, "range", warn, note=note, column=name))
    # A max before now already refuses every future date.
    if not spec.future_ok and (high is None or high > now):
        # A date (a day) is in the future from tomorrow on; a datetime from now on.
        latest = now if spec.type == "datetime" else now.normalize() + pd.Timedelta(days=1)
        future = gxe.ExpectColumnValuesToBeBetween(
            column=parsed, max_value=latest, strict_max=spec.type == "date"
        )
        note = f"in the future (after {now:%Y-%m-%d %H:%M} UTC); set future_ok to allow"
        found.append(_tagged(future, "range", warn, note=note, column=name))
    if spec.allowed is not None:
        allowed = [_date_bound(value, spec.format, strict=False) for value in spec.allowed]
        in_set = gxe.ExpectColumnValuesToBeInSet(column=parsed, value_set=allowed)
        found.append(_tagged(in_set, "allowed", "allowed" in spec.warn_on, column=name))
    return found


def _tagged(
    expectation: gxe.Expectation,
    check: str,
    warning: bool,
    note: str | None = None,
    column: str | None = None,
) -> gxe.Expectation:
    """`expectation` with its check name and severity; `note` says what a failure means, and
    `column` names the declared column when the expectation runs on its parsed copy."""
    meta = {"airloop_check": check, "severity": "warning" if warning else "error"}
    if note is not None:
        meta["airloop_note"] = note
    if column is not None:
        meta["airloop_column"] = column
    expectation.meta = meta
    return expectation


def _type_note(spec: ColumnSpec) -> str | None:
    if spec.type not in DATE_TYPES:
        return None
    return f"not a date in format {spec.format!r}" if spec.format else "not readable as a date"


def _parsed(name: str) -> str:
    """The name of a date column's parsed copy in the checked frame."""
    return f"{name} (parsed)"


def _checked_columns(dataset: DatasetConfig) -> list[str]:
    """The columns of the checked frame: the declared ones and each date column's parsed copy."""
    dates = [_parsed(name) for name, spec in dataset.columns.items() if spec.type in DATE_TYPES]
    return [*dataset.columns, *dates]


def _date_bound(value: Any, fmt: str | None, strict: bool = True) -> Any:
    """A configured date as `date_bound` reads it; one that does not read (strict=False) stays text."""
    try:
        return pd.Timestamp(date_bound(value, fmt))
    except (ValueError, TypeError):
        if strict:
            raise
        return value


def _span(low: pd.Timestamp | None, high: pd.Timestamp | None) -> str:
    if low is None:
        return f"on or before {_text(high)}"
    return f"on or after {_text(low)}" if high is None else f"from {_text(low)} to {_text(high)}"


def _partition_period(spec: PartitionSpec, partition: str | None) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The start and (exclusive) end of the period a date partition's name covers.

    None without a partition column, or when the name does not read in the format (that is
    reported on its own).
    """
    if spec.column is None or spec.date_format is None or partition is None:
        return None
    try:
        start = utc_naive(datetime.strptime(partition, spec.date_format))
    except ValueError:
        return None
    fields = set(re.findall("%(.)", spec.date_format.replace("%%", "")))
    step = next((step for names, step in _PERIOD_STEPS if fields & names), pd.DateOffset(years=1))
    return start, start + step


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
    now = today or datetime.now(UTC)
    expectations = build_expectations(config, previous_rows, partition, now)
    result, context = _validate(_checkable(frame, config.dataset), expectations, name=config.name)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result.to_json_dict(), indent=2))
    docs = _data_docs_page(context, result, config.name, partition, docs_site) if docs_site else None
    found = _failures(result, set(_checked_columns(config.dataset)))
    date_problem = _partition_date_problem(config, partition, now)
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


def _checkable(frame: pd.DataFrame, dataset: DatasetConfig) -> pd.DataFrame:
    """`frame` as the expectations check it; the caller's frame is never changed.

    Pandas string-extension columns become object: GX matches extension dtypes by equality with
    one default instance, so pyarrow-backed strings (which Parquet round-trips) would fail a str
    type check; as object they are checked per value. Each date column becomes its values read
    as dates (the raw value where one does not read, for the type check to name), and gains a
    parsed copy (NaT where a value does not read) that range, future and partition checks
    compare: datetime64, which GX compares vectorized. A missing date column's copy is all NaT,
    so only its absence is reported.
    """
    strings = [c for c, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype)]
    checkable = frame.astype({c: object for c in strings}) if strings else frame
    dates = {name: spec for name, spec in dataset.columns.items() if spec.type in DATE_TYPES}
    if not dates:
        return checkable
    checkable = checkable.copy(deep=False)
    for name, spec in dates.items():
        if name not in checkable.columns:
            checkable[_parsed(name)] = pd.Series(pd.NaT, index=checkable.index, dtype="datetime64[ns]")
            continue
        raw = checkable[name]
        parsed = parse_dates(raw, spec.format)
        checkable[name] = _typed(raw, parsed)
        checkable[_parsed(name)] = parsed
    return checkable


def _typed(raw: pd.Series, parsed: pd.Series) -> pd.Series:
    """A date column as its type check sees it: the dates, and the raw values that did not read."""
    unread = raw.notna().to_numpy() & parsed.isna().to_numpy()
    if not unread.any():
        return parsed
    typed = parsed.astype(object).to_numpy()
    typed[unread] = raw.to_numpy(dtype=object)[unread]
    return pd.Series(typed, index=raw.index, name=raw.name, dtype=object)


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
        if _expectation_type(r) != COLUMN_EXISTS and missing & {_column(r), *_column_list(r)}:
            continue
        meta = (r.expectation_config.meta if r.expectation_config else None) or {}
        details = _details(r)
        if meta.get("airloop_note"):
            details = f"{details} ({meta['airloop_note']})"
        if _expectation_type(r) == MATCH_SET:
            extra = sorted(set((r.result or {}).get("observed_value") or []) - declared)
            if not extra:
                continue  # only missing columns, each already reported
            details = f"columns not declared in the config: {extra}"
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
    """The declared column checked (not the name of its parsed copy)."""
    config = result.expectation_config
    if config is None:
        return None
    return (config.meta or {}).get("airloop_column") or config.kwargs.get("column")


def _column_list(result: ExpectationValidationResult) -> list[str]:
    config = result.expectation_config
    return list(config.kwargs.get("column_list") or []) if config else []


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
        if pd.api.types.is_scalar(value) and pd.isna(value):
            continue
        plain = _plain(value)
        if plain not in examples:
            examples.append(plain)
    return examples


def _plain(value: Any) -> Any:
    """`value` as JSON carries it (the outcome goes to XCom): dates as ISO text, numpy scalars
    as Python ones."""
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, date):
        return _text(value)
    return value.item() if isinstance(value, np.generic) else value


def _text(moment: date | None) -> str:
    """A date as ISO text: the day alone at midnight, the full time otherwise."""
    if isinstance(moment, datetime) and (moment.time() != time() or moment.tzinfo is not None):
        return moment.isoformat()
    return moment.date().isoformat() if isinstance(moment, datetime) else str(moment)


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
    outcome = check_partition_file(landed_file, config, paths, partition)
    if outcome.success:
        return outcome
    quarantine_file(landed_file, Path(outcome.result_path), quarantine_dir)
    raise PartitionRejected(_rejection_message(outcome, quarantine_dir), outcome)


def check_partition_file(
    path: Path, config: AirloopConfig, paths: StatePaths, partition: str
) -> ValidationOutcome:
    """Every check the ingest task runs on one file (row growth against the partitions already
    accepted, Data Docs, the result under a file-safe key), without quarantining it; a file
    that cannot even be read fails as `readable_file`."""
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


def quarantine_file(landed_file: Path, result_path: Path, quarantine_dir: Path) -> None:
    """Move a rejected file and its validation result into `quarantine_dir` (kept, never deleted)."""
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
    outcome = check_partition_file(quarantined, config, paths, partition)
    if outcome.success:
        land_file(paths.landing, quarantined.name, lambda staging: shutil.copy2(quarantined, staging))
        released = paths.quarantine / "_released" / f"{safe_key(partition)}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        released.parent.mkdir(parents=True, exist_ok=True)
        kept.rename(released)
    return outcome
