"""The same replay with no orchestrator: every stage called in order in one Python process.

This is what a hand-rolled script would do, and the baseline the Airflow loop's wall time
is measured against (benchmarks/demo_timing.py).
"""

from __future__ import annotations

import time

from airloop.config import AirloopConfig
from airloop.demo.landing import demo_landings
from airloop.paths import StatePaths
from airloop.pipelines.continuous_training import run_continuous_training
from airloop.pipelines.ingest_data import ingest_landed
from airloop.pipelines.monitor_drift import check_drift


def replay_in_process(config: AirloopConfig, paths: StatePaths, months: list[int]) -> dict[str, float]:
    """Land, ingest, check drift and (re)train a demo model month by month; seconds per month."""
    timings: dict[str, float] = {}
    for partition, land in demo_landings(config.name, months) or []:
        started = time.monotonic()
        land(paths.landing)
        outcomes = ingest_landed(config, paths)
        if all(o["accepted"] for o in outcomes):
            drift = check_drift(config, paths, f"plain__{partition}__drift")
            run_continuous_training(config, paths, ["new_data"], f"plain__{partition}__new_data")
            if drift["drift_detected"]:
                run_continuous_training(config, paths, ["drift"], f"plain__{partition}__drift")
        timings[partition] = round(time.monotonic() - started, 1)
    return timings
