"""The demo's partitions, per model, landed the way a producer should: atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import pandas as pd

from airloop.data.sources import land_file

# A partition to land: its name, and what writes its file into a landing directory.
Landing = tuple[str, Callable[[Path], object]]


def land_frame(frame: pd.DataFrame, landing: Path, partition: str) -> Path:
    """Write `frame` as `<landing>/<partition>.csv`."""
    return land_file(landing, f"{partition}.csv", lambda staging: frame.to_csv(staging, index=False))


def demo_landings(name: str, months: Sequence[int]) -> list[Landing] | None:
    """The demo's partitions for model `name`, or None when the demo has no data for it."""
    from airloop.demo import flights, weather
    from airloop.demo.flights import month_partition

    lands = {"flights": flights.land_month, "weather": weather.land_month}.get(name)
    return None if lands is None else [(month_partition(m), partial(lands, m)) for m in months]


def demo_asked(name: str, partition: str) -> pd.DataFrame:
    """The rows model `name` is asked live during `partition` ("2013-03"): that month of its
    demo table."""
    from airloop.demo import flights, weather

    frames = {"flights": flights.month_frame, "weather": weather.month_frame}
    return frames[name](int(partition.rpartition("-")[2]))
