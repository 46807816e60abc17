"""Validation of keys, date and datetime columns, partition dates and label classes, against
real Great Expectations on small frames."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airloop.config import AirloopConfig, parse_config
from airloop.data.frames import read_table
from airloop.data.validation import ValidationOutcome, validate_frame

TODAY = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
METRIC = {"regression": "rmse", "binary_classification": "roc_auc", "multiclass_classification": "accuracy"}


def toy(
    columns: dict[str, Any],
    task: str = "regression",
    target: dict[str, Any] | None = None,
    **dataset: Any,
) -> AirloopConfig:
    """A config over `columns`; without `target`, a nullable float column y is the label."""
    if target is None:
        columns = {**columns, "y": {"type": "float", "nullable": True, "all_null_ok": True}}
        target = {"column": "y"}
    features = [name for name in columns if name != target["column"]]
    return parse_config(
        {
            "name": "toy",
            "task": task,
            "dataset": {"columns": columns, "target": target, "features": features, **dataset},
            "model": {"family": "sklearn_linear", "registered_name": "toy"},
            "gate": {"metric": METRIC[task]},
        }
    )


def check(
    frame: pd.DataFrame, config: AirloopConfig, tmp_path: Path, partition: str = "p", **kwargs: Any
) -> ValidationOutcome:
    if "y" in config.dataset.columns and "y" not in frame:
        frame = frame.assign(y=None)
    outcome = validate_frame(frame, config, partition, tmp_path / "r.json", today=TODAY, **kwargs)
    # Whatever failed, the outcome goes to XCom as JSON.
    assert json.loads(json.dumps(outcome.summary())) == outcome.summary()
    return outcome


def via(frame: pd.DataFrame, tmp_path: Path, suffix: str = ".csv") -> pd.DataFrame:
    """`frame` as it reads back from a landed file (CSV or Parquet)."""
    path = tmp_path / f"landed{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    return read_table(path)


def failed(outcome: ValidationOutcome) -> list[tuple[str | None, str | None]]:
    return [(f["check"], f["column"]) for f in outcome.failures]


def only_failure(outcome: ValidationOutcome) -> dict[str, Any]:
    assert len(outcome.failures) == 1, outcome.failures
    return outcome.failures[0]


# --- keys ---------------------------------------------------------------------------------


def test_a_one_column_key_repeated_fails_naming_the_key(tmp_path: Path) -> None:
    config = toy({"id": {"type": "int"}}, keys=["id"])

    outcome = check(pd.DataFrame({"id": [1, 2, 2, 3]}), config, tmp_path)

    failure = only_failure(outcome)
    assert (failure["check"], failure["column"]) == ("unique_keys", "id")
    assert failure["expectation"] == "expect_column_values_to_be_unique"
    assert failure["details"].startswith("2 of 4 values unexpected, e.g. [2]")
    assert check(pd.DataFrame({"id": [1, 2, 3]}), config, tmp_path).success


def test_compound_keys_still_fail_on_a_repeated_pair(tmp_path: Path) -> None:
    config = toy({"a": {"type": "int"}, "b": {"type": "str"}}, keys=["a", "b"])
    frame = pd.DataFrame({"a": [1, 1, 1], "b": ["x", "y", "x"]})

    assert failed(check(frame, config, tmp_path)) == [("unique_keys", None)]
    # A missing key column is reported once, as missing; the key check cannot run without it.
    assert failed(check(frame.drop(columns="b"), config, tmp_path)) == [("exists", "b")]


# --- date and datetime columns ------------------------------------------------------------


def test_dates_in_their_format_pass_and_others_fail_naming_them(tmp_path: Path) -> None:
    config = toy({"day": {"type": "date", "format": "%d/%m/%Y", "nullable": True}})
    frame = pd.DataFrame({"day": ["05/01/2013", None, "31/12/2013", "2013-01-05", "31/02/2013"]})

    failure = only_failure(check(via(frame, tmp_path), config, tmp_path))

    assert (failure["check"], failure["column"]) == ("type", "day")
    assert failure["details"] == (
        "2 of 5 values unexpected, e.g. ['2013-01-05', '31/02/2013'] (not a date in format '%d/%m/%Y')"
    )
    assert check(frame.drop(index=[3, 4]), config, tmp_path).success


def test_dates_without_a_format_pass_in_any_form_that_reads(tmp_path: Path) -> None:
    config = toy({"day": {"type": "date"}})
    good = pd.DataFrame({"day": ["2013-01-05", "2013-01-06", "Jan 7 2013", "2013/01/08"]})

    assert check(good, config, tmp_path).success
    bad = pd.DataFrame({"day": ["2013-01-05", "garbage", "2013-13-40", ""]})
    failure = only_failure(check(bad, config, tmp_path))
    assert (failure["check"], failure["column"]) == ("type", "day")
    assert "3 of 4 values unexpected" in failure["details"]
    assert "'garbage'" in failure["details"] and "not readable as a date" in failure["details"]


def test_a_null_date_fails_only_where_the_column_is_not_nullable(tmp_path: Path) -> None:
    frame = pd.DataFrame({"day": ["2013-01-05", None]})

    assert failed(check(frame, toy({"day": {"type": "date"}}), tmp_path)) == [("not_null", "day")]
    assert check(frame, toy({"day": {"type": "date", "nullable": True}}), tmp_path).success


def test_dates_out_of_range_fail_showing_them(tmp_path: Path) -> None:
    config = toy({"day": {"type": "date", "format": "%Y%m%d", "min": "20130101", "max": "20131231"}})
    # A CSV reads these dates as numbers; their digits are still read in the format.
    frame = via(pd.DataFrame({"day": ["20121231", "20130101", "20131231", "20140101"]}), tmp_path)
    assert frame["day"].dtype == "int64"

    failure = only_failure(check(frame, config, tmp_path))

    assert (failure["check"], failure["column"]) == ("range", "day")
    assert failure["expectation"] == "expect_column_values_to_be_between"
    assert failure["details"] == (
        "2 of 4 values unexpected, e.g. ['2012-12-31', '2014-01-01'] "
        "(dates must lie from 2013-01-01 to 2013-12-31)"
    )


def test_digit_dates_read_as_numbers_keep_their_leading_zeros(tmp_path: Path) -> None:
    config = toy({"day": {"type": "date", "format": "%d%m%Y"}})
    frame = via(pd.DataFrame({"day": ["05012013", "31122013"]}), tmp_path)
    assert frame["day"].tolist() == [5012013, 31122013]

    assert check(frame, config, tmp_path).success


def test_a_date_in_the_future_fails_unless_future_ok(tmp_path: Path) -> None:
    frame = pd.DataFrame({"day": ["2024-06-10", "2024-06-11", "2031-01-01"]})

    failure = only_failure(check(frame, toy({"day": {"type": "date"}}), tmp_path))

    assert (failure["check"], failure["column"]) == ("range", "day")
    # Today (2024-06-10) is not in the future; tomorrow is.
    assert failure["details"].startswith("2 of 3 values unexpected, e.g. ['2024-06-11', '2031-01-01']")
    assert "in the future" in failure["details"] and "future_ok" in failure["details"]
    assert check(frame, toy({"day": {"type": "date", "future_ok": True}}), tmp_path).success


def test_the_future_check_can_be_a_warning(tmp_path: Path) -> None:
    config = toy({"day": {"type": "date", "warn_on": ["range"]}})

    outcome = check(pd.DataFrame({"day": ["2031-01-01"]}), config, tmp_path)

    assert outcome.success
    assert [(w["check"], w["column"]) for w in outcome.warnings] == [("range", "day")]


def test_iso_datetimes_pass_and_future_ones_fail(tmp_path: Path) -> None:
    config = toy({"at": {"type": "datetime", "min": "2013-01-01"}})
    stamps = ["2013-01-05T10:30:00", "2013-01-05 11:00", "2013-01-05T10:30:00Z", "2013-01-05T10:30:00-05:00"]

    assert check(via(pd.DataFrame({"at": stamps}), tmp_path), config, tmp_path).success
    later = pd.DataFrame({"at": [*stamps, "2024-06-10T12:30:00", "2012-12-31T23:59:59"]})
    outcome = check(later, config, tmp_path)
    assert failed(outcome) == [("range", "at"), ("range", "at")]
    before, future = (f["details"] for f in outcome.failures)
    assert "e.g. ['2012-12-31T23:59:59']" in before and "on or after 2013-01-01" in before
    assert "e.g. ['2024-06-10T12:30:00']" in future and "in the future" in future


def test_real_timestamps_from_parquet_pass_as_dates(tmp_path: Path) -> None:
    config = toy(
        {
            "at": {"type": "datetime", "format": "%Y-%m-%d %H:%M", "max": "2013-12-31 23:59"},
            "day": {"type": "date", "nullable": True},
        }
    )
    frame = pd.DataFrame(
        {
            "at": pd.to_datetime(["2013-01-05 10:30", "2013-02-01 00:00"]).as_unit("us"),
            "day": [date(2013, 1, 5), None],
        }
    )
    landed = via(frame, tmp_path, ".parquet")
    assert pd.api.types.is_datetime64_dtype(landed["at"]) and landed["day"].dtype == object

    assert check(landed, config, tmp_path).success
    landed.loc[1, "at"] = pd.Timestamp("2014-03-01 08:15")
    failure = only_failure(check(landed, config, tmp_path))
    assert (failure["check"], failure["column"]) == ("range", "at")
    assert "e.g. ['2014-03-01T08:15:00']" in failure["details"]


def test_tz_aware_timestamps_are_compared_in_utc(tmp_path: Path) -> None:
    config = toy({"at": {"type": "datetime", "max": "2013-01-05 12:00"}})
    # 07:30 in New York is 12:30 UTC.
    frame = pd.DataFrame({"at": pd.to_datetime(["2013-01-05 07:30"]).tz_localize("America/New_York")})

    assert failed(check(frame, config, tmp_path)) == [("range", "at")]


@pytest.mark.parametrize(
    "values",
    [
        ["2013-01-05", 20130105, 3.5, True, b"2013"],
        [1, 2, 3, 4, 5],
        [True, False, True, False, True],
        ["x", "y", "z", "w", "v"],
    ],
    ids=["mixed_types", "numbers_without_a_format", "bools", "garbage"],
)
def test_a_date_column_of_wrong_things_fails_its_type_and_nothing_raises(
    values: list[Any], tmp_path: Path
) -> None:
    config = toy({"day": {"type": "date", "min": "2000-01-01"}, "n": {"type": "int"}}, keys=["day", "n"])
    frame = pd.DataFrame({"day": pd.Series(values, dtype=object), "n": range(5)})

    outcome = check(frame, config, tmp_path)

    assert failed(outcome) == [("type", "day")]
    assert (
        f"{sum(v != '2013-01-05' for v in values)} of 5 values unexpected" in outcome.failures[0]["details"]
    )


def test_a_missing_date_column_is_reported_once(tmp_path: Path) -> None:
    config = toy({"day": {"type": "date", "min": "2013-01-01"}, "n": {"type": "int"}})

    assert failed(check(pd.DataFrame({"n": [1]}), config, tmp_path)) == [("exists", "day")]


def test_an_undeclared_column_is_still_named(tmp_path: Path) -> None:
    config = toy({"day": {"type": "date"}})

    failure = only_failure(check(pd.DataFrame({"day": ["2013-01-05"], "extra": [1]}), config, tmp_path))

    assert failure["details"] == "columns not declared in the config: ['extra']"


def test_the_callers_frame_is_left_as_it_was(tmp_path: Path) -> None:
    frame = pd.DataFrame({"day": ["2013-01-05", "garbage"]})
    before = frame.copy()

    check(frame, toy({"day": {"type": "date"}}), tmp_path)

    pd.testing.assert_frame_equal(frame, before)


def test_date_checks_render_into_data_docs(tmp_path: Path) -> None:
    config = toy(
        {"day": {"type": "date", "min": "2013-01-01"}},
        partition={"kind": "date", "date_format": "%Y-%m", "column": "day"},
    )
    frame = pd.DataFrame({"day": ["2012-12-31", "2013-01-05", "2013-02-01"]})

    outcome = check(frame, config, tmp_path, partition="2013-01", docs_site=tmp_path / "docs")

    assert outcome.docs_path is not None and Path(outcome.docs_path).is_file()
    assert {f["check"] for f in outcome.failures} == {"range", "partition_date"}


# --- the partition's date column ----------------------------------------------------------


def dated(date_format: str, **column: Any) -> AirloopConfig:
    return toy(
        {"at": {"type": "datetime", **column}},
        partition={"kind": "date", "date_format": date_format, "column": "at"},
    )


@pytest.mark.parametrize(
    ("date_format", "partition", "first", "last", "after"),
    [
        ("%Y-%m", "2013-01", "2013-01-01 00:00", "2013-01-31 23:59", "2013-02-01 00:00"),
        ("%Y-%m-%d", "2013-01-05", "2013-01-05 00:00", "2013-01-05 23:59", "2013-01-06 00:00"),
        ("%Y", "2013", "2013-01-01 00:00", "2013-12-31 23:59", "2014-01-01 00:00"),
        ("%Y-%m-%dT%H", "2013-01-05T10", "2013-01-05 10:00", "2013-01-05 10:59", "2013-01-05 11:00"),
    ],
    ids=["month", "day", "year", "hour"],
)
def test_rows_must_fall_in_the_period_their_partition_names(
    date_format: str, partition: str, first: str, last: str, after: str, tmp_path: Path
) -> None:
    config = dated(date_format)
    inside = pd.DataFrame({"at": [first, last]})

    assert check(inside, config, tmp_path, partition=partition).success
    before = (pd.Timestamp(first) - pd.Timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M")
    outcome = check(pd.DataFrame({"at": [before, first, after]}), config, tmp_path, partition=partition)
    failure = only_failure(outcome)
    assert (failure["check"], failure["column"]) == ("partition_date", "at")
    assert failure["details"].startswith("2 of 3 values unexpected")
    assert f"outside partition {partition!r}" in failure["details"]


def test_rows_outside_the_month_fail_and_can_warn_instead(tmp_path: Path) -> None:
    config = toy(
        {"day": {"type": "date", "format": "%Y-%m-%d"}},
        partition={"kind": "date", "date_format": "%Y-%m", "column": "day"},
    )
    frame = via(pd.DataFrame({"day": ["2013-01-01", "2013-01-31", "2013-02-01", "2012-12-31"]}), tmp_path)

    failure = only_failure(check(frame, config, tmp_path, partition="2013-01"))

    assert failure["expectation"] == "expect_column_values_to_be_between"
    assert failure["details"] == (
        "2 of 4 values unexpected, e.g. ['2013-02-01', '2012-12-31'] "
        "(outside partition '2013-01', which covers 2013-01-01 up to 2013-02-01)"
    )
    warned = config.model_copy(
        update={"dataset": config.dataset.model_copy(update={"warn_on": ("partition_date",)})}
    )
    outcome = check(frame, warned, tmp_path, partition="2013-01")
    assert outcome.success
    assert [(w["check"], w["column"]) for w in outcome.warnings] == [("partition_date", "day")]


def test_a_partition_name_that_does_not_read_is_reported_once(tmp_path: Path) -> None:
    outcome = check(pd.DataFrame({"at": ["2013-01-05"]}), dated("%Y-%m"), tmp_path, partition="january")

    assert [(f["expectation"], f["column"]) for f in outcome.failures] == [("partition_date", None)]


# --- label classes ------------------------------------------------------------------------


def test_int_labels_read_as_floats_compare_as_ints(tmp_path: Path) -> None:
    config = toy(
        {"x": {"type": "float"}, "grade": {"type": "int", "nullable": True}},
        task="multiclass_classification",
        target={"column": "grade", "classes": [1, 2, 3]},
    )
    frame = via(pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4], "grade": [1, 3, None, 3]}), tmp_path)
    assert frame["grade"].dtype == "float64"

    assert check(frame, config, tmp_path).success
    frame.loc[1, "grade"] = 4
    failure = only_failure(check(frame, config, tmp_path))
    assert (failure["check"], failure["column"]) == ("target_classes", "grade")
    assert failure["details"] == "1 of 4 values unexpected, e.g. [4.0] (labels must be one of [1, 2, 3])"


def test_text_labels_must_match_a_class_exactly(tmp_path: Path) -> None:
    config = toy(
        {"x": {"type": "float"}, "species": {"type": "str"}},
        task="multiclass_classification",
        target={"column": "species", "classes": ["setosa", "versicolor", "virginica"]},
    )
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "species": ["setosa", "Setosa", "virginica "]})

    failure = only_failure(check(frame, config, tmp_path))

    assert (failure["check"], failure["column"]) == ("target_classes", "species")
    assert "e.g. ['Setosa', 'virginica ']" in failure["details"]


def test_bool_labels_from_csv_are_their_classes(tmp_path: Path) -> None:
    config = toy(
        {"x": {"type": "float"}, "churned": {"type": "bool"}},
        task="binary_classification",
        target={"column": "churned", "classes": [True, False]},
    )
    frame = via(pd.DataFrame({"x": [1.0, 2.0, 3.0], "churned": [True, False, True]}), tmp_path)
    assert frame["churned"].dtype == "bool"

    assert check(frame, config, tmp_path).success


def test_a_label_outside_the_classes_fails_naming_it(tmp_path: Path) -> None:
    config = toy(
        {"x": {"type": "float"}, "churn": {"type": "str", "nullable": True}},
        task="binary_classification",
        target={"column": "churn", "positive": "Yes", "classes": ["Yes", "No"]},
    )
    frame = via(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "churn": ["Yes", "No", None, "Maybe"]}), tmp_path)

    failure = only_failure(check(frame, config, tmp_path))

    assert (failure["check"], failure["column"]) == ("target_classes", "churn")
    assert "'Maybe'" in failure["details"] and "['Yes', 'No']" in failure["details"]
    # Without classes, only the positive class is declared: any other label is a negative.
    no_classes = config.model_copy(
        update={
            "dataset": config.dataset.model_copy(
                update={"target": config.dataset.target.model_copy(update={"classes": None})}
            )
        }
    )
    assert check(frame, no_classes, tmp_path).success


def test_labels_outside_the_classes_can_warn(tmp_path: Path) -> None:
    config = toy(
        {"x": {"type": "float"}, "churn": {"type": "str"}},
        task="binary_classification",
        target={"column": "churn", "positive": "Yes", "classes": ["Yes", "No"]},
        warn_on=["target_classes"],
    )

    outcome = check(pd.DataFrame({"x": [1.0], "churn": ["Maybe"]}), config, tmp_path)

    assert outcome.success
    assert [(w["check"], w["column"]) for w in outcome.warnings] == [("target_classes", "churn")]
