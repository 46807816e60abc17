"""Dates written in a config (bounds, `since`), read one way by the config and by validation.

Standard library only: configs are loaded while Airflow parses the DAG file, where pandas
must not be imported.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any


def date_bound(value: Any, fmt: str | None) -> datetime:
    """`value` as a naive UTC datetime: text in `fmt` when given, else ISO 8601 (2013-01-05,
    2013-01-05 12:00, 20130105, with or without an offset); a date or datetime as it is.
    Raises ValueError or TypeError when it does not read."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif not isinstance(value, str):
        raise TypeError(f"{value!r} is not a date")
    elif fmt is not None:
        moment = datetime.strptime(value, fmt)
    else:
        moment = datetime.fromisoformat(value)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
