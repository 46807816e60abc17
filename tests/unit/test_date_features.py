"""Date features are derived inside the model pipeline: training and serving both hand it
the raw date, in the column's format, and get the same numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airloop.config import parse_config
from airloop.data.dates import parse_dates
from airloop.data.frames import feature_frame, in_row_order
from airloop.features.date_parts import DateParts
from airloop.training.models import build_pipeline


def test_each_part_of_a_date() -> None:
    step = DateParts(
        {
            "at": (
                None,
                ("year", "month", "day", "day_of_week", "day_of_year", "hour", "days_since"),
                "2013-01-01",
            )
        }
    )
    parts = step.fit_transform(pd.DataFrame({"at": ["2013-03-04 17:30:00"]}))
    # 2013-03-04 was a Monday (0), the 63rd day of the year, 62 days and 17.5 hours after Jan 1.
    assert parts.tolist() == [[2013, 3, 4, 0, 63, 17, pytest.approx(62 + 17.5 / 24)]]
    assert list(step.get_feature_names_out()) == [
        "at_year", "at_month", "at_day", "at_day_of_week", "at_day_of_year", "at_hour", "at_days_since",
    ]  # fmt: skip


def test_an_unreadable_or_missing_date_is_nan_in_every_part() -> None:
    step = DateParts({"on": ("%d/%m/%Y", ("year", "days_since"), "1970-01-01")})
    parts = step.fit_transform(pd.DataFrame({"on": ["02/01/1970", None, "1970-01-02", "31/02/1970"]}))
    assert parts[0].tolist() == [1970, 1]
    assert np.isnan(parts[1:]).all()


def test_text_and_timestamps_of_the_same_moment_give_the_same_parts() -> None:
    text = parse_dates(["2013-01-01T05:00:00Z", "2013-01-01 07:00:00+02:00", "2013-01-01 05:00"], None)
    assert text.nunique() == 1
    stamps = pd.Series(pd.to_datetime(["2013-01-01 05:00"]))
    assert parse_dates(stamps, None).iloc[0] == text.iloc[0]


def _dated_config(family: str) -> dict:
    return {
        "name": "dated",
        "task": "regression",
        "dataset": {
            "target": {"column": "y"},
            "order_by": "on",
            "features": ["on", "x"],
            "columns": {
                "on": {"type": "date", "format": "%d/%m/%Y", "derive": ["month", "day_of_week"]},
                "x": {"type": "float"},
                "y": {"type": "float"},
            },
        },
        "model": {"family": family, "registered_name": "dated"},
        "gate": {"metric": "rmse"},
    }


@pytest.mark.parametrize("family", ["xgboost", "sklearn_hgb", "sklearn_linear", "torch_mlp"])
def test_every_family_learns_from_a_raw_date_column(family) -> None:
    config = parse_config(_dated_config(family))
    days = pd.date_range("2020-01-01", periods=400, freq="D")
    frame = pd.DataFrame(
        {
            "on": days.strftime("%d/%m/%Y"),
            "x": np.random.default_rng(0).normal(size=400),
            "y": days.month * 10.0,
        }
    )
    pipeline = build_pipeline(config)
    features = feature_frame(frame, config)
    pipeline.fit(features, frame["y"])
    # The month is the whole signal: every family finds it from the raw text alone.
    error = np.sqrt(np.mean((pipeline.predict(features) - frame["y"]) ** 2))
    assert error < frame["y"].std() / 2


def test_rows_are_ordered_by_their_date_not_its_text() -> None:
    config = parse_config(_dated_config("xgboost"))
    frame = pd.DataFrame({"on": ["02/01/2020", "01/02/2020", None, "03/01/2019"], "x": 0.0, "y": 0.0})
    assert in_row_order(frame, config)["on"].tolist() == ["03/01/2019", "02/01/2020", "01/02/2020", None]


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"type": "date", "min": "2020-13-01"}, "min: '2020-13-01' is not a date"),
        ({"type": "date", "format": "%d/%m/%Y", "max": "2020-01-31"}, "in format '%d/%m/%Y'"),
        ({"type": "date", "format": "%Y-%Q"}, "is not a strptime date format"),
        ({"type": "date", "derive": ["hour"]}, "a date has no hour; declare the column as datetime"),
        ({"type": "int", "format": "%Y"}, "only apply to date and datetime columns"),
        ({"type": "str", "min": 1}, "has no range; use allowed"),
        ({"type": "float", "min": "low"}, "is not a number"),
        ({"type": "date", "mean": {"reference": 1, "std": 1}}, "a date column has no mean check"),
    ],
)
def test_a_date_column_mistake_fails_at_config_check_naming_the_key(column, message) -> None:
    from airloop.config import ConfigError

    raw = _dated_config("xgboost")
    raw["dataset"]["columns"]["on"] = column
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert "dataset.columns.on" in str(error.value) and message in str(error.value)


def test_the_partition_date_column_must_be_a_declared_date() -> None:
    from airloop.config import ConfigError

    raw = _dated_config("xgboost")
    raw["dataset"]["partition"] = {"kind": "date", "date_format": "%Y-%m", "column": "x"}
    with pytest.raises(ConfigError, match="partition.column: 'x' must be a declared date"):
        parse_config(raw)
