"""Landing a demo partition the way a producer should: under a dot-name, then renamed, so
the landing sensor never sees a half-written file."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def land_frame(frame: pd.DataFrame, landing: Path, partition: str) -> Path:
    """Write `frame` as `<landing>/<partition>.csv`, atomically."""
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / f"{partition}.csv"
    staging = landing / f".{target.name}.tmp"
    frame.to_csv(staging, index=False)
    os.replace(staging, target)
    return target
