"""Every bad input the ingest stage meets: a clear message naming what is wrong, and nothing lost.

Each case lands a file as a writer would, validates it as the DAG does, and checks that the
partition is rejected with a message naming the check and column, that the file is kept in
quarantine with its validation result, and that nothing reached the validated partitions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from airloop.config import AirloopConfig, parse_config
from airloop.data.ingest import store_partition, validated_partitions
from airloop.data.validation import PartitionRejected, validate_partition
from airloop.training.dataset import assemble_training_set
from tests.conftest import FLIGHTS_CONFIG

ROWS = 3000


def land_frame(paths, frame: pd.DataFrame, partition: str = "2013-04") -> Path:
    paths.landing.mkdir(parents=True, exist_ok=True)
    target = paths.landing / f"{partition}.csv"
    frame.to_csv(target, index=False)
    return target


def land_bytes(paths, content: bytes, name: str = "2013-04.csv") -> Path:
    paths.landing.mkdir(parents=True, exist_ok=True)
    target = paths.landing / name
    target.write_bytes(content)
    return target


def rejected(config: AirloopConfig, paths, landed: Path) -> str:
    """Validate; assert the rejection kept everything; return the message."""
    partition = landed.stem
    with pytest.raises(PartitionRejected) as error:
        validate_partition(landed, config, paths, partition)
    kept = paths.quarantine / partition
    assert (kept / landed.name).exists(), "the rejected file must be kept"
    assert (kept / f"{landed.name}.validation.json").exists(), "with its validation result"
    assert not landed.exists() and validated_partitions(paths) == []
    return str(error.value)


def april(flights_month: Callable) -> pd.DataFrame:
    return flights_month(4, ROWS).copy()


def test_empty_file(config, paths) -> None:
    message = rejected(config, paths, land_bytes(paths, b""))
    assert "readable_file" in message


def test_header_only(config, paths, flights_month) -> None:
    message = rejected(config, paths, land_frame(paths, april(flights_month).head(0)))
    assert "expect_table_row_count_to_be_between" in message and "observed 0" in message


def test_missing_column(config, paths, flights_month) -> None:
    message = rejected(config, paths, land_frame(paths, april(flights_month).drop(columns=["distance"])))
    assert "expect_column_to_exist on column 'distance'" in message


def test_extra_column(config, paths, flights_month) -> None:
    frame = april(flights_month).assign(surprise=1)
    message = rejected(config, paths, land_frame(paths, frame))
    assert "not declared in the config: ['surprise']" in message


def test_wrong_dtype(config, paths, flights_month) -> None:
    frame = april(flights_month)
    frame["distance"] = frame["distance"].astype(object)
    frame.loc[5, "distance"] = "far"
    message = rejected(config, paths, land_frame(paths, frame))
    assert "expect_column_values_to_be_in_type_list on column 'distance'" in message


def test_all_null_column(config, paths, flights_month) -> None:
    frame = april(flights_month).assign(dep_delay=float("nan"))
    message = rejected(config, paths, land_frame(paths, frame))
    assert "expect_column_values_to_not_be_null on column 'dep_delay'" in message


def test_out_of_range_values(config, paths, flights_month) -> None:
    frame = april(flights_month)
    frame.loc[:9, "hour"] = 99
    message = rejected(config, paths, land_frame(paths, frame))
    assert "expect_column_values_to_be_between on column 'hour'" in message and "10 of" in message


def test_unknown_category(config, paths, flights_month) -> None:
    frame = april(flights_month)
    frame.loc[:2, "carrier"] = "ZZ"
    message = rejected(config, paths, land_frame(paths, frame))
    assert "expect_column_values_to_be_in_set on column 'carrier'" in message and "'ZZ'" in message


def test_duplicated_keys(config, paths, flights_month) -> None:
    frame = april(flights_month)
    frame = pd.concat([frame, frame.head(5)], ignore_index=True)
    message = rejected(config, paths, land_frame(paths, frame))
    assert "expect_compound_columns_to_be_unique" in message


def test_truncated_parquet(paths, flights_month) -> None:
    config = _with(source={"kind": "files", "pattern": "*.parquet"})
    paths.landing.mkdir(parents=True)
    whole = paths.landing / "whole.parquet"
    april(flights_month).to_parquet(whole)
    message = rejected(config, paths, land_bytes(paths, whole.read_bytes()[:2000], "2013-04.parquet"))
    assert "readable_file" in message


def test_csv_in_a_wrong_encoding(config, paths, flights_month) -> None:
    text = april(flights_month).to_csv(index=False)
    message = rejected(config, paths, land_bytes(paths, text.encode("utf-16")))
    assert "readable_file" in message and "UnicodeDecodeError" in message


def test_a_tenfold_row_count_spike(config, paths, flights_month) -> None:
    for month in (1, 2):
        store_partition(land_frame(paths, flights_month(month, ROWS), f"2013-0{month}"), paths)
    spike = pd.concat(
        [april(flights_month).assign(flight=lambda f, i=i: f["flight"] + 10_000 * i) for i in range(10)],
        ignore_index=True,
    )
    landed = land_frame(paths, spike)
    with pytest.raises(PartitionRejected, match="row_count_to_be_between") as error:
        validate_partition(landed, config, paths, "2013-04")
    assert f"observed {10 * ROWS}" in str(error.value)
    assert (paths.quarantine / "2013-04" / "2013-04.csv").exists()
    assert validated_partitions(paths) == ["2013-01", "2013-02"]


def test_a_partition_dated_in_the_future(config, paths, flights_month) -> None:
    message = rejected(config, paths, land_frame(paths, april(flights_month), "2099-01"))
    assert "partition_date" in message and "dated in the future" in message


def test_a_config_naming_a_column_the_data_lacks(paths, flights_month) -> None:
    config = _with(columns_extra={"gate": {"type": "str"}})
    message = rejected(config, paths, land_frame(paths, april(flights_month)))
    assert "expect_column_to_exist on column 'gate'" in message


def test_a_mean_far_from_the_reference(config, paths, flights_month) -> None:
    frame = april(flights_month)
    frame["dep_delay"] = frame["dep_delay"] * 60  # minutes reported as seconds
    message = rejected(config, paths, land_frame(paths, frame))
    assert "expect_column_mean_to_be_between on column 'dep_delay'" in message


def test_a_warning_is_recorded_and_the_partition_goes_on(paths, flights_month) -> None:
    config = _with(column_warn={"hour": ["range"]})
    frame = april(flights_month)
    frame.loc[:9, "hour"] = 99
    outcome = validate_partition(land_frame(paths, frame), config, paths, "2013-04")
    assert outcome.success and outcome.failures == []
    assert [(w["check"], w["column"]) for w in outcome.warnings] == [("range", "hour")]


def test_a_late_partition_is_accepted_in_its_place(config, paths, flights_month) -> None:
    for month in (3, 4, 1):  # January arrives last
        landed = land_frame(paths, flights_month(month, ROWS), f"2013-0{month}")
        validate_partition(landed, config, paths, landed.stem)
        store_partition(landed, paths)
    assert validated_partitions(paths) == ["2013-01", "2013-03", "2013-04"]
    window = assemble_training_set(config, paths)
    assert window.eval_partition == "2013-04"
    assert window.train_partitions == ["2013-01", "2013-03"]


def _with(source=None, columns_extra=None, column_warn=None) -> AirloopConfig:
    import yaml

    raw = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    if source:
        raw["dataset"]["source"] = source
    raw["dataset"]["columns"].update(columns_extra or {})
    for column, checks in (column_warn or {}).items():
        raw["dataset"]["columns"][column]["warn_on"] = checks
    return parse_config(raw, "test")


def test_every_validated_partition_gets_a_data_docs_page(config, paths, flights_month) -> None:
    outcome = validate_partition(land_frame(paths, april(flights_month)), config, paths, "2013-04")
    page = Path(outcome.docs_path)
    assert page.is_file() and page.is_relative_to(paths.reports / "data_docs")
    assert page.name == "2013-04.html" and "carrier" in page.read_text()
    frame = april(flights_month)
    frame.loc[:2, "carrier"] = "ZZ"
    landed = land_frame(paths, frame, "2013-05")
    with pytest.raises(PartitionRejected) as error:
        validate_partition(landed, config, paths, "2013-05")
    rejected_page = Path(error.value.outcome.docs_path)
    assert rejected_page.is_file() and "ZZ" in rejected_page.read_text()
    assert page.is_file(), "a later partition's page replaced an earlier one's"
