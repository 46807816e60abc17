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
from dataclasses import asdict, dataclass
from pathlib import Path
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
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

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

    def summary(self) -> dict[str, Any]:
        """A small JSON-serializable record (for XCom): never the data itself."""
        return asdict(self)


def build_expectations(config: AirloopConfig) -> list[gxe.Expectation]:
    """The expectations a partition must meet, derived only from `config.dataset`."""
    dataset = config.dataset
    expectations: list[gxe.Expectation] = []
    for name, spec in dataset.columns.items():
        expectations.extend(_column_expectations(name, spec))
    expectations.append(
        gxe.ExpectTableRowCountToBeBetween(min_value=dataset.min_rows, max_value=dataset.max_rows)
    )
    return expectations


def _column_expectations(name: str, spec: ColumnSpec) -> list[gxe.Expectation]:
    expectations: list[gxe.Expectation] = [
        gxe.ExpectColumnToExist(column=name),
        gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=_type_list(spec)),
    ]
    if not spec.nullable:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
    if spec.min is not None or spec.max is not None:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(column=name, min_value=spec.min, max_value=spec.max)
        )
    if spec.allowed is not None:
        expectations.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(spec.allowed)))
    return expectations


def _type_list(spec: ColumnSpec) -> list[str]:
    # CSV readers turn an int column holding nulls into float64, so a nullable int column
    # may arrive as floats; its integrality is then not checked.
    if spec.type == "int" and spec.nullable:
        return _TYPE_LISTS["float"]
    return _TYPE_LISTS[spec.type]


def validate_frame(
    frame: pd.DataFrame, config: AirloopConfig, partition: str, result_path: Path
) -> ValidationOutcome:
    """Run the config's expectations on `frame` and write GX's result JSON to `result_path`.

    Never raises for bad data: the outcome says what failed. Quarantine is the caller's business.
    """
    result = _run_suite(_checkable(frame), build_expectations(config), name=config.name)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result.to_json_dict(), indent=2))
    return ValidationOutcome(
        partition=partition,
        success=bool(result.success),
        rows=len(frame),
        failures=_failures(result),
        result_path=str(result_path),
    )


def _checkable(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with pandas string-extension columns as object, the rest untouched (not copied).

    GX matches extension dtypes by equality with one default instance, so pyarrow-backed strings
    (which Parquet round-trips) would fail a str type check; as object they are checked per value.
    """
    strings = [c for c, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype)]
    return frame.astype({c: object for c in strings}) if strings else frame


def _run_suite(
    frame: pd.DataFrame, expectations: list[gxe.Expectation], name: str
) -> ExpectationSuiteValidationResult:
    # A fresh ephemeral context per run: nothing is written to disk and nothing leaks between runs.
    context = gx.get_context(mode="ephemeral")
    # Progress bars are noise in task logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas(name)
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe(name)
    )
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
    )
    return definition.run(batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT)


def _failures(result: ExpectationSuiteValidationResult) -> list[dict[str, Any]]:
    """One entry per failed expectation, leaving out checks of columns already reported missing."""
    failed = [r for r in result.results if not r.success]
    missing = {_column(r) for r in failed if _expectation_type(r) == COLUMN_EXISTS}
    return [
        {"expectation": _expectation_type(r), "column": _column(r), "details": _details(r)}
        for r in failed
        if _expectation_type(r) == COLUMN_EXISTS or _column(r) not in missing
    ]


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
    result_path = paths.report_dir("validation") / f"{safe_key(partition)}.json"
    try:
        frame = read_table(landed_file)
    except Exception as error:  # noqa: BLE001 - anything that stops a read is a rejection
        outcome = _unreadable(landed_file, partition, result_path, error)
    else:
        outcome = validate_frame(frame, config, partition, result_path)
    if outcome.success:
        return outcome
    _quarantine(landed_file, result_path, quarantine_dir)
    raise PartitionRejected(_rejection_message(outcome, quarantine_dir), outcome)


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
