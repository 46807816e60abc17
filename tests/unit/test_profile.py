"""Proposing a config from sample partitions, checked against a year of real flights."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from airloop.cli import main
from airloop.config import parse_config
from airloop.data.frames import read_table
from airloop.data.profile import (
    profile_yaml,
    propose_columns,
    propose_keys,
    propose_partition,
    propose_row_bounds,
    propose_target,
)
from airloop.data.validation import validate_frame
from airloop.demo.flights import flights, land_month, month_partition
from airloop.paths import PROJECT_ROOT

MONTHS = range(1, 13)


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Every month of 2013 written as CSV, as the demo lands them."""
    landing = tmp_path_factory.mktemp("landing")
    return {month: land_month(month, landing) for month in MONTHS}


def test_a_tiny_frame_gives_exactly_the_expected_proposal() -> None:
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "size": [0.5, 1.5, None, 2.0, 2.5, 10.5],
            "ratio": [0.12, 0.15, 0.13, 0.18, 0.11, 0.14],
            "offset": [-3, -1, -2, -5, -4, -1],
            "colour": ["red", "blue", "red", "blue", None, "red"],
            "code": ["007", "012", "007", "012", "007", "012"],
            "boxed": pd.Series([10, 20, 30, 40, 50, 60], dtype=object),
            "flag": [True, False, True, True, False, True],
            "region": ["north"] * 6,
            "year": [2013] * 6,
            "empty": [np.nan] * 6,
        }
    )

    assert propose_columns(frame) == {
        # Widened by half the spread, not below zero for a non-negative column, rounded outward.
        "id": {
            "type": "int",
            "nullable": False,
            "min": 0,
            "max": 9,
            "mean": {"reference": 3.5, "std": 1.871, "within_std": 3.0},
        },
        "size": {
            "type": "float",
            "nullable": True,
            "min": 0,
            "max": 16,
            "mean": {"reference": 3.4, "std": 4.037, "within_std": 3.0},
        },
        # Rounded to the hundredths the reach (0.035) calls for.
        "ratio": {
            "type": "float",
            "nullable": False,
            "min": 0.07,
            "max": 0.22,
            "mean": {"reference": 0.1383, "std": 0.02483, "within_std": 3.0},
        },
        # Not above zero for a non-positive column.
        "offset": {
            "type": "int",
            "nullable": False,
            "min": -7,
            "max": 0,
            "mean": {"reference": -2.667, "std": 1.633, "within_std": 3.0},
        },
        "colour": {"type": "str", "nullable": True, "allowed": ["blue", "red"]},
        # Strings that look like numbers stay strings.
        "code": {"type": "str", "nullable": False, "allowed": ["007", "012"]},
        # An object column of numbers is typed by its values.
        "boxed": {
            "type": "int",
            "nullable": False,
            "min": 0,
            "max": 90,
            "mean": {"reference": 35.0, "std": 18.71, "within_std": 3.0},
        },
        "flag": {"type": "bool", "nullable": False},
        # Constants say nothing of their range or set: only a sign.
        "region": {"type": "str", "nullable": False},
        "year": {"type": "int", "nullable": False, "min": 0},
        "empty": {"type": "float", "nullable": True, "all_null_ok": True},
    }


def test_options_reach_the_proposal() -> None:
    frame = pd.DataFrame({"x": [0.0, 10.0], "c": ["a", "b"]})
    # Three values need at least nine rows: no more values than the square root of the rows.
    many = pd.DataFrame({"c": ["a", "b", "c"] * 3})

    assert propose_columns(frame, within_std=0.5, range_margin=0)["x"] == {
        "type": "float",
        "nullable": False,
        "min": 0,
        "max": 10,
        "mean": {"reference": 5.0, "std": 7.071, "within_std": 0.5},
    }
    assert "allowed" not in propose_columns(many, max_categories=2)["c"]
    assert propose_columns(many, max_categories=3)["c"]["allowed"] == ["a", "b", "c"]
    # Values that never repeat are identifiers, not categories.
    assert "allowed" not in propose_columns(frame)["c"]
    assert "allowed" not in propose_columns(many.head(6), max_categories=3)["c"]


def test_row_bounds_are_half_and_three_times_the_sample_in_round_numbers() -> None:
    assert propose_row_bounds(27_004) == {"min_rows": 13_000, "max_rows": 82_000}
    assert propose_row_bounds(7) == {"min_rows": 3, "max_rows": 21}
    assert propose_row_bounds(1) == {"min_rows": 1, "max_rows": 3}


def test_keys_are_the_fewest_columns_unique_together() -> None:
    pairs = pd.DataFrame({"a": [1, 1, 2, 2], "b": ["x", "y", "x", "y"], "v": [0.1, 0.2, 0.3, 0.4]})
    single = pairs.assign(id=["p", "q", "r", "s"])

    # Floats are measurements, not identifiers, however unique.
    assert propose_keys(pairs) == ["a", "b"]
    assert propose_keys(single) == ["id"]
    assert propose_keys(pairs, max_columns=1) == []
    assert propose_keys(pd.concat([pairs, pairs])) == []
    assert propose_keys(pairs.iloc[:0]) == []


def test_keys_prefer_the_weaker_claim() -> None:
    # (item, day) and (item, hour) are both unique here, but an hour determines its day: if
    # (item, day) is unique so is (item, hour), never the other way round.
    frame = pd.DataFrame(
        {
            "item": ["A", "B", "A", "B"],
            "day": [1, 1, 2, 2],
            "hour": ["1T08", "1T09", "2T08", "2T08"],
        }
    )

    assert propose_keys(frame) == ["item", "hour"]


def test_keys_found_in_a_month_of_flights_are_unique_and_quick_to_find_in_a_year() -> None:
    year = flights()
    january = year[year["month"] == 1]

    keys = propose_keys(january)
    started = time.perf_counter()
    year_keys = propose_keys(year)
    elapsed = time.perf_counter() - started

    assert 0 < len(keys) <= 4
    assert not january.duplicated(keys).any()
    assert not year.duplicated(year_keys).any()
    assert elapsed < 10, f"{elapsed:.1f}s for {len(year)} rows"


def test_a_proposal_from_january_accepts_every_month_of_2013(landed: dict[int, Path], tmp_path: Path) -> None:
    text = profile_yaml(landed[1])
    proposal = yaml.safe_load(text)["dataset"]
    flights_config = yaml.safe_load((PROJECT_ROOT / "configs" / "flights.yaml").read_text())
    required = {k: flights_config["dataset"][k] for k in ("source", "partition", "target", "features")}
    config = parse_config({**flights_config, "dataset": {**proposal, **required}}, "proposal")

    rejected = {}
    for month, path in landed.items():
        partition = month_partition(month)
        outcome = validate_frame(read_table(path), config, partition, tmp_path / f"{partition}.json")
        if not outcome.success:
            rejected[partition] = outcome.failures
    assert not rejected, yaml.safe_dump(rejected, sort_keys=False)
    assert list(config.dataset.keys) and len(config.dataset.columns) == 19


def test_the_yaml_round_trips_and_says_what_it_is(landed: dict[int, Path]) -> None:
    text = profile_yaml(landed[1])
    frame = read_table(landed[1])

    dataset = yaml.safe_load(text)["dataset"]
    assert dataset["columns"] == propose_columns(frame)
    assert dataset["keys"] == propose_keys(frame)
    assert {k: dataset[k] for k in ("min_rows", "max_rows")} == propose_row_bounds(len(frame))
    header = text.split("\ndataset:")[0]
    assert all(line.startswith("#") for line in header.splitlines())
    assert "proposal" in header and str(landed[1]) in header


def test_columns_no_config_type_fits_are_flagged(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame(
        {
            "took": pd.to_timedelta([1, 2, 3], unit="s"),
            "source": ["web", "web", "web"],
            "odd: name": [1.5, 2.5, None],
        }
    ).to_parquet(path)

    text = profile_yaml(path)

    assert "# took: dtype timedelta64[ns] fits no config type" in text
    assert "# source: constant in the files (web)" in text
    columns = yaml.safe_load(text)["dataset"]["columns"]
    # The type check would reject it: it only warns, and the note says why.
    assert columns["took"] == {"type": "str", "nullable": False, "warn_on": ["type"]}
    assert columns["odd: name"]["nullable"] is True
    assert propose_columns(pd.DataFrame({"mixed": ["a", 1, "b"]}))["mixed"] == {
        "type": "str",
        "nullable": False,
        "warn_on": ["type"],
    }


def test_an_empty_file_has_nothing_to_profile(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("a,b\n")

    with pytest.raises(ValueError, match="no rows"):
        profile_yaml(path)


def test_dates_are_proposed_as_dates_in_their_format_without_a_max() -> None:
    times = ["2013-01-05 10:00:00", "2013-01-05 11:30:00", "2013-01-06 00:00:00", "2013-02-01 09:00:00"]
    frame = pd.DataFrame(
        {
            "day": ["2013-01-05", "2013-03-01", "2013-01-05", "2014-12-31"],
            "at": times,
            "us": ["9/22/2009", "10/16/2009", "12/1/2009", "1/31/2010"],
            "month": ["2013-01", "2013-02", "2013-02", "2013-03"],
            "compact": ["20130105", "20130106", "20130107", "20130108"],
            "future": ["2013-01-01", "2100-01-01", "2013-06-01", "2020-01-01"],
        }
    )
    columns = propose_columns(frame)

    # The earliest date widened by half the spread, down to its year's start; later ones are
    # what later partitions hold, so no max.
    assert columns["day"] == {"type": "date", "nullable": False, "format": "%Y-%m-%d", "min": "2012-01-01"}
    assert columns["at"] == {
        "type": "datetime",
        "nullable": False,
        "format": "%Y-%m-%d %H:%M:%S",
        "min": "2012-01-01 00:00:00",
    }
    # Bounds are written in the column's own format.
    assert columns["us"] == {"type": "date", "nullable": False, "format": "%m/%d/%Y", "min": "01/01/2009"}
    assert columns["month"] == {"type": "date", "nullable": False, "format": "%Y-%m", "min": "2012-01"}
    assert columns["compact"] == {"type": "date", "nullable": False, "format": "%Y%m%d", "min": "20130101"}
    assert columns["future"]["future_ok"] is True
    for spec in columns.values():
        assert "allowed" not in spec and "mean" not in spec and "max" not in spec


def test_numbers_codes_and_sloppy_text_are_not_dates() -> None:
    frame = pd.DataFrame(
        {
            "number": [20130105, 20130106, 20130107],
            "zip": ["02134", "10001", "94105"],
            "code": ["1234-56", "2013-13", "2013-00"],
            "unpadded": ["2013-1-5", "2013-1-6", "2013-1-7"],
            "old": ["1066-10-14", "1215-06-15", "1492-10-12"],
        }
    )
    types = {name: spec["type"] for name, spec in propose_columns(frame).items()}

    assert types == {"number": "int", "zip": "str", "code": "str", "unpadded": "str", "old": "str"}


def test_datetime_columns_are_dates_and_ambiguous_text_dates_are_noted(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame(
        {
            "day": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
            "at": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:00", "2024-01-03 12:00"]),
            "either": ["01/02/2024", "03/04/2024", "05/06/2024"],
        }
    ).to_parquet(path)

    text = profile_yaml(path)
    columns = yaml.safe_load(text)["dataset"]["columns"]

    # The earliest, a day earlier (half the spread), down to the start of that year.
    assert columns["day"] == {"type": "date", "nullable": False, "min": "2023-01-01"}
    assert columns["at"] == {"type": "datetime", "nullable": False, "min": "2023-01-01 00:00:00"}
    assert columns["either"]["format"] == "%m/%d/%Y"
    assert "# either: every value also reads as %d/%m/%Y: check which format it is" in text


def test_allowed_lists_only_sets_that_look_closed() -> None:
    stable = ["a", "b", "c"] * 10
    codes = [f"c{i:02d}" for i in range(40)] * 2  # each seen twice, but 40 of them in 80 rows
    first = pd.DataFrame({"stable": stable, "growing": ["x", "y"] * 15, "codes": codes[:30]})
    second = pd.DataFrame({"stable": stable, "growing": ["x", "y", "z"] * 10, "codes": codes[30:60]})

    columns = propose_columns([first, second])

    assert columns["stable"]["allowed"] == ["a", "b", "c"]
    # A partition brought a value the one before it lacked: the next will too.
    assert "allowed" not in columns["growing"]
    assert "allowed" not in columns["codes"]
    assert "allowed" not in propose_columns(pd.DataFrame({"codes": codes}))["codes"]
    # Identifiers never.
    assert "allowed" not in propose_columns(pd.DataFrame({"id": [f"u{i}" for i in range(100)]}))["id"]


def test_a_mean_check_accepts_each_partition_it_was_made_from() -> None:
    # The reported bug: a mean of 2013.0004 rounded to 2013 beside a std of 0.0005 failed its sample.
    tiny = pd.DataFrame({"x": [2013.0, 2013.001, 2013.0002, 2013.0003, 2013.0005]})
    far = [pd.DataFrame({"y": [0.0, 1.0] * 50}), pd.DataFrame({"y": [0.0, 11.0] * 2})]

    for frames in ([tiny], far):
        name = str(frames[0].columns[0])
        mean = propose_columns(frames, within_std=3.0)[name]["mean"]
        for frame in frames:
            distance = abs(frame[name].mean() - mean["reference"])
            assert distance <= mean["within_std"] * mean["std"], (frame[name].mean(), mean)
    assert propose_columns(tiny)["x"]["mean"]["reference"] == 2013.0004
    # Widened only as far as the far partition needs.
    assert 3.0 < propose_columns(far)["y"]["mean"]["within_std"] <= 5.0


def test_several_partitions_are_profiled_as_their_union() -> None:
    january = pd.DataFrame({"month": [1] * 4, "v": [1.0, 2.0, 3.0, 4.0], "note": ["a", "b", None, "a"]})
    february = pd.DataFrame({"month": [2] * 6, "v": [5.0, None, 7.0, 8.0, 9.0, 9.5], "note": [None] * 6})
    march = february.assign(month=3).drop(columns="note")

    columns = propose_columns([january, february, march])

    # A month rises from partition to partition: no max and no mean, or April fails.
    assert columns["month"] == {"type": "int", "nullable": False, "min": 0}
    assert columns["v"]["nullable"] is True and (columns["v"]["min"], columns["v"]["max"]) == (0, 14)
    # All null in one file (a CSV reads it as floats) and missing from another: those checks warn.
    assert columns["note"] == {
        "type": "str",
        "nullable": True,
        "all_null_ok": True,
        "warn_on": ["exists"],
    }
    assert propose_row_bounds(4, 6, 6) == {"min_rows": 2, "max_rows": 18}


def test_partitions_are_dated_when_every_name_reads_as_one_date_format() -> None:
    assert propose_partition(["2013-01", "2013-02"]) == {"kind": "date", "date_format": "%Y-%m"}
    assert propose_partition(["2013-01-01"]) == {"kind": "date", "date_format": "%Y-%m-%d"}
    assert propose_partition(["20130101", "20130102"]) == {"kind": "date", "date_format": "%Y%m%d"}
    assert propose_partition(["2012", "2013"]) == {"kind": "date", "date_format": "%Y"}
    for names in (["part-1", "part-2"], ["1", "2"], ["2013-1"], ["2013-01", "2013-02-01"], ["2999-01"]):
        assert propose_partition(names) == {"kind": "key"}, names


@pytest.mark.parametrize(
    ("values", "task", "target"),
    [
        ([1.5, 2.5, 3.0, None], "regression", {}),
        ([0.0, 1.0, None, 1.0], "binary_classification", {"positive_above": 0.5}),
        ([0, 1, 1, 0], "binary_classification", {}),
        ([True, False, True, None], "binary_classification", {}),
        (["No", "No", "Yes", None], "binary_classification", {"positive": "Yes"}),
        ([1, 2, 2, 2], "binary_classification", {"positive": 1}),
        (["a", "b", "c", "a"], "multiclass_classification", {}),
        ([3, 4, 5, 4], "multiclass_classification", {}),
        (list(range(30)), "regression", {}),
    ],
)
def test_the_task_and_target_follow_the_label(values: list, task: str, target: dict) -> None:
    label = pd.Series(values, name="label", dtype=object if None in values else None)

    inferred, proposed, _ = propose_target(label)

    assert (inferred, proposed) == (task, {"column": "label", **target})


def test_a_label_no_task_fits_is_refused() -> None:
    many = pd.Series([f"v{i}" for i in range(60)], name="label")

    assert propose_target(pd.Series([1.0, 5.0, 9.0, 20.0], name="y"), "binary_classification")[1] == {
        "column": "y",
        "positive_above": 7,
    }
    for label, task in [
        (many, None),
        (pd.Series(["a", "a"], name="label"), None),
        (pd.Series(["2013-01-01", "2013-02-01"], name="label"), None),
        (pd.Series([0.5, 1.5, 2.5], name="label"), "multiclass_classification"),
        (pd.Series(["a", "b", "c"], name="label"), "binary_classification"),
        (pd.Series(["a", "b"], name="label"), "regression"),
    ]:
        with pytest.raises(ValueError, match="label"):
            propose_target(label, task)


def _landed_months(directory: Path) -> list[Path]:
    """Three monthly files with an id, a date, a constant, an all-null column and a label."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = []
    for number, month in enumerate(["2024-01", "2024-02", "2024-03"]):
        rows = 60
        frame = pd.DataFrame(
            {
                "id": np.arange(number * rows, (number + 1) * rows) + 1000,
                "day": pd.date_range(f"{month}-01", periods=rows, freq="12h").strftime("%Y-%m-%d %H:%M:%S"),
                "plan": rng.choice(["basic", "plus", "pro"], rows),
                "spend": rng.gamma(2.0, 30.0, rows).round(2),
                "source": "web",
                "unused": np.nan,
                "churned": rng.choice(["no", "no", "no", "yes"], rows),
            }
        )
        path = directory / f"{month}.csv"
        frame.to_csv(path, index=False)
        files.append(path)
    return files


def test_with_a_target_the_cli_writes_a_complete_config_that_accepts_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _landed_months(tmp_path / "Customer Churn")

    assert main(["data", "profile", str(tmp_path / "Customer Churn" / "*.csv"), "--target", "churned"]) == 0
    text = capsys.readouterr().out
    config = parse_config(yaml.safe_load(text), "the proposal")

    dataset = config.dataset
    assert (config.name, config.model.registered_name) == ("customer_churn", "customer_churn")
    assert config.task == "binary_classification" and config.gate.metric == "roc_auc"
    assert config.model.family == "xgboost"
    assert dataset.target.positive == "yes" and "rarer of the two values" in text
    assert dataset.source.pattern == "*.csv"
    assert dataset.partition.kind == "date" and dataset.partition.date_format == "%Y-%m"
    assert list(dataset.keys) == ["id"] and dataset.order_by == "day"
    assert list(dataset.features) == ["day", "plan", "spend"]
    assert "left out: id (an identifier); source (constant); unused (all null)" in text
    assert dataset.columns["day"].type == "datetime"
    assert dataset.columns["plan"].allowed == ("basic", "plus", "pro")
    assert config.gate.min_baseline_margin == 0 and not config.gate.segments
    for path in files:
        outcome = validate_frame(read_table(path), config, path.stem, tmp_path / f"{path.stem}.json")
        assert outcome.success, outcome.failures


def test_the_cli_names_the_task_and_refuses_what_it_cannot_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(f) for f in _landed_months(tmp_path / "months")]

    assert main(["data", "profile", *files, "--target", "spend", "--task", "binary_classification"]) == 0
    assert "positive_above:" in capsys.readouterr().out
    assert main(["data", "profile", *files, "--target", "spend", "--name", "Spend 2024!"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "spend_2024"
    for argv, message in [
        ([*files, "--task", "regression"], "--task needs --target"),
        ([*files, "--target", "nope"], "target 'nope' is not a column"),
        ([str(tmp_path / "none" / "*.csv")], "no file matches"),
        ([*files, str(tmp_path / "other" / "2024-01.csv")], "no such file"),
    ]:
        assert main(["data", "profile", *argv]) == 2
        assert message in capsys.readouterr().err
