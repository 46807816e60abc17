"""Landing a demo partition the way a producer should: atomically (`land_file`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from airloop.data.sources import land_file


def land_frame(frame: pd.DataFrame, landing: Path, partition: str) -> Path:
    """Write `frame` as `<landing>/<partition>.csv`."""
    return land_file(landing, f"{partition}.csv", lambda staging: frame.to_csv(staging, index=False))
