"""Proposing a config's `dataset:` section from a sample, checked against a year of real flights."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from airloop.config import parse_config
from airloop.data.frames import read_table
from airloop.data.profile import profile_yaml, propose_columns, propose_keys, propose_row_bounds
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
    many = pd.DataFrame({"c": ["a", "b", "c", "a", "b", "c"]})

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
            "at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
            "source": ["web", "web", "web"],
            "odd: name": [1.5, 2.5, None],
        }
    ).to_parquet(path)

    text = profile_yaml(path)

    assert "# at: dtype datetime64[ns] fits no config type" in text
    assert "# source: constant in the sample (web)" in text
    columns = yaml.safe_load(text)["dataset"]["columns"]
    assert columns["at"] == {"type": "str", "nullable": False}
    assert columns["odd: name"]["nullable"] is True
    assert propose_columns(pd.DataFrame({"mixed": ["a", 1, "b"]}))["mixed"] == {
        "type": "str",
        "nullable": False,
    }


def test_an_empty_file_has_nothing_to_profile(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("a,b\n")

    with pytest.raises(ValueError, match="no rows"):
        profile_yaml(path)
