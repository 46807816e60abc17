"""Values a model never saw the like of: numbers outside the range of its training data.

(Categories it never saw are counted by the drift check itself: `unseen_shares`.)
"""

from __future__ import annotations

import pandas as pd

from airloop.config import AirloopConfig
from airloop.monitoring.reference import ReferenceProfile, column_kinds, compared_frame


def out_of_range_shares(
    reference: ReferenceProfile, current: pd.DataFrame, config: AirloopConfig
) -> dict[str, float]:
    """Per numeric (and date) compared column: the share of the current non-null values
    below the reference's smallest or above its largest; 0.0 when all lie within."""
    compared = compared_frame(current, "current", config)
    shares = {}
    for column, kind in column_kinds(config).items():
        counts = reference.columns.get(column)
        values = compared[column].dropna()
        if kind != "numerical" or counts is None or not counts.distinct or values.empty:
            continue
        low, high = float(counts.values[0]), float(counts.values[-1])
        shares[column] = float(((values < low) | (values > high)).mean())
    return shares
