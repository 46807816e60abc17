"""The whole loop through Airflow's real scheduler, api-server, dag-processor and triggerer.

Three months of real flights are landed one at a time; nothing is called directly. While
they are, the champion is served, and before each month lands for training its rows are
sent to it and their labels joined (the demo's live traffic). Then a broken partition is
landed and must be quarantined without reaching training; and served rows with a bug
upstream, whose labels land later, must show a live performance drop that retrains.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import pytest
import requests
import yaml

from airloop.config import load_config
from airloop.data.versioning import cached_file
from airloop.demo.landing import demo_asked, demo_landings
from airloop.demo.replay import ModelReplay, replay
from airloop.demo.summary import month_rows
from airloop.ops.stack import Stack, free_port
from airloop.orchestration.pools import dvc_pool
from airloop.paths import StatePaths
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import CHAMPION
from tests import waiting
from tests.conftest import FLIGHTS_CONFIG
from tests.e2e.asset_runs import assert_drift_reached_training
from tests.e2e.ci import airloop_trigger
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e
MONTHS = [1, 2, 3]
MLFLOW_UI = "http://mlflow-ui.example.test:5000"


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    raw = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    # A low threshold makes the drift trigger certain (February's `day` alone drifts from
    # January's), so the test checks the mechanism, not this year's weather.
    raw["drift"]["share_threshold"] = 0.1
    # Two hyperparameter trials per training run: the mapped train_trial fans out for real.
    raw["model"]["search"] = {"space": {"max_depth": [4, 6]}}
    # Rollouts the tests start over REST bake for seconds, not minutes (the strategy stays
    # blue_green: the replay's promotions are switches).
    raw["rollout"] = {"steps": [50, 100], "bake_minutes": 0.3, "min_requests": 40, "max_wait_minutes": 6}
    config_path = root / "flights-e2e.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    root_paths = StatePaths(root / "state")
    paths = root_paths.for_model("flights")
    receiver = Receiver().start()
    with pytest.MonkeyPatch.context() as env:
        # Every task's notifications go to this test's webhook (the Airflow connection, from env).
        env.setenv("AIRFLOW_CONN_AIRLOOP_NOTIFY", json.dumps({"conn_type": "http", "host": receiver.url}))
        env.setenv("AIRLOOP_HOME", str(paths.home))
        env.setenv("AIRLOOP_CONFIGS", str(config_path))
        env.setenv("BENTOML_HOME", str(paths.bentoml_home))
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.setenv("AIRLOOP_MLFLOW_UI_URL", MLFLOW_UI)  # where the UI's MLflow buttons point
        stack = Stack(root_paths, str(config_path))
        flights = ModelReplay(
            load_config(config_path), config_path, paths, demo_landings("flights", MONTHS),
            asked=partial(demo_asked, "flights"),
        )  # fmt: skip
        try:
            assert replay([flights], root_paths, keep_running=True, serving_port=free_port()) == 0
            yield paths, stack, receiver
        finally:
            stack.stop()
            receiver.stop()


def champion_of(paths: StatePaths):
    """The registry's champion version (MLflow's ModelVersion) for the e2e config."""
    return tracking_client(paths).get_model_version_by_alias(load_config().model.registered_name, CHAMPION)


def wait_for(condition, timeout: float, what: str):
    """The shared wait, polling the stack's REST API every 2 s (not to load its 2 cores)."""
    return waiting.wait_for(condition, timeout, what, every=2)


def test_every_month_was_validated_and_versioned(loop) -> None:
    paths, _, _ = loop
    for month in MONTHS:
        partition = f"2013-{month:02d}"
        assert (paths.reports / "validation" / f"{partition}.json").exists()
        assert Path(f"{paths.partitions / partition}.parquet.dvc").exists()


def test_champion_carries_its_lineage(loop) -> None:
    paths, stack, _ = loop
    champion = champion_of(paths)
    data_hash = champion.tags["airloop.data_hash"]
    assert cached_file(data_hash, paths).stat().st_size > 0  # DVC restores those bytes
    run_id = champion.tags["airloop.airflow_run_id"]
    run = stack.client().request("GET", f"dags/flights__continuous_training/dagRuns/{run_id}")
    assert run["state"] == "success"


def test_training_fans_out_a_mapped_trial_per_search_point_and_registers_the_best(loop) -> None:
    paths, stack, _ = loop
    client = tracking_client(paths)
    champion = champion_of(paths)
    run_id = champion.tags["airloop.airflow_run_id"]
    instances = stack.client().task_instances("flights__continuous_training", run_id)
    trials = sorted(ti["map_index"] for ti in instances if ti["task_id"] == "train_trial")
    assert trials == [0, 1]
    assert all(ti["state"] == "success" for ti in instances if ti["task_id"] == "train_trial")
    trial_run = client.get_run(champion.run_id)
    parent = client.get_run(trial_run.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["airloop.best_run_id"] == champion.run_id


def test_a_bento_of_the_champion_exists(loop) -> None:
    paths, _, _ = loop
    champion = champion_of(paths)
    bentos = list((paths.bentoml_home / "bentos").glob(f"*/v{champion.version}/bento.yaml"))
    assert bentos, f"no bento for champion v{champion.version} under {paths.bentoml_home}"


def test_drift_triggered_a_training_run(loop) -> None:
    _, stack, _ = loop
    assert_drift_reached_training(stack.client(), "flights")


def test_a_broken_partition_is_quarantined_and_never_trained_on(loop, flights_month) -> None:
    paths, stack, receiver = loop
    broken = flights_month(4).drop(columns=["distance"])
    staging = paths.landing / ".2013-04.csv.tmp"
    broken.to_csv(staging, index=False)
    staging.rename(paths.landing / "2013-04.csv")

    quarantined = paths.quarantine / "2013-04"
    client = stack.client()
    deadline = time.monotonic() + 180
    failed = []
    while not failed and time.monotonic() < deadline:
        failed = [r for r in client.dag_runs("flights__ingest_data") if r["state"] == "failed"]
        time.sleep(2)
    assert failed, "the ingest run of the broken partition did not fail"
    assert (quarantined / "2013-04.csv").exists()
    blocked = wait_for(
        lambda: [b for b in receiver.bodies if b["event"] == "blocked_partition"], 60, "the blocked notice"
    )
    assert blocked[0]["task_id"] == "validate" and "distance" in blocked[0]["details"]["error"]
    result = next(quarantined.glob("*.json")).read_text()
    assert "distance" in result

    log = client.request(
        "GET", f"dags/flights__ingest_data/dagRuns/{failed[0]['dag_run_id']}/taskInstances/validate/logs/1"
    )
    assert "expect_column_to_exist" in str(log) and "distance" in str(log)
    assert not (paths.partitions / "2013-04.parquet").exists()
    decisions = [p.read_text() for p in (paths.reports / "decisions").glob("*.json")]
    assert not any('"eval_partition": "2013-04"' in d for d in decisions)


def test_the_gate_decision_is_in_the_evaluate_task_log(loop) -> None:
    paths, stack, _ = loop
    champion = champion_of(paths)
    run_id = champion.tags["airloop.airflow_run_id"]
    log = stack.client().request(
        "GET", f"dags/flights__continuous_training/dagRuns/{run_id}/taskInstances/evaluate_candidate/logs/1"
    )
    assert "# Promotion decision: PROMOTE" in str(log) and "| baseline | yes |" in str(log)


def test_rollback_over_rest_puts_the_previous_champion_back(loop) -> None:
    paths, stack, _ = loop
    config = load_config()
    client, name = tracking_client(paths), config.model.registered_name
    before = str(client.get_model_version_by_alias(name, CHAMPION).version)
    previous = str(client.get_model_version_by_alias(name, "previous_champion").version)
    run = stack.client().trigger("flights__rollback_champion")
    deadline = time.monotonic() + 120
    state = run["state"]
    while state not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(2)
        state = stack.client().request("GET", f"dags/flights__rollback_champion/dagRuns/{run['dag_run_id']}")[
            "state"
        ]
    assert state == "success"
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == previous
    assert str(client.get_model_version_by_alias(name, "previous_champion").version) == before


def test_the_loop_notified_the_webhook_of_drift_and_promotion(loop) -> None:
    paths, _, receiver = loop
    drift = [b for b in receiver.bodies if b["event"] == "drift"]
    assert drift and drift[0]["dag_id"] == "flights__monitor_drift" and drift[0]["details"]["signals"]
    assert "drift detected" in drift[0]["text"] and drift[0]["details"]["html_path"].endswith(".html")
    promoted = [b for b in receiver.bodies if b["event"] == "promotion"]
    assert promoted and all(b["task_id"] == "promote_champion" for b in promoted)
    registry, name = tracking_client(paths), load_config().model.registered_name
    for notice in promoted:  # each names the version its own run registered
        version = registry.get_model_version(name, notice["details"]["version"])
        assert version.tags["airloop.airflow_run_id"] == notice["run_id"]


def set_slots(client, pool: str, slots: int) -> None:
    body = {"pool": pool, "slots": slots, "include_deferred": False}
    client.request("PATCH", f"pools/{pool}", params={"update_mask": "slots"}, json=body)


def new_runs(client, dag: str, known: set[str]) -> list[str]:
    return [r["dag_run_id"] for r in client.dag_runs(dag) if r["dag_run_id"] not in known]


def decided_signals(client, dag: str, run_id: str) -> list[dict]:
    """The signals a run's decide_retraining took into account (its `signals` XCom)."""
    task = f"dags/{dag}/dagRuns/{run_id}/taskInstances/decide_retraining"
    wait_for(lambda: client.request("GET", task)["state"] == "success", 120, f"{run_id} to decide")
    return client.request("GET", f"{task}/xcomEntries/signals", params={"deserialize": True})["value"]


def storm_signals(signals: list[dict]) -> list[int]:
    return sorted(s["extra"]["storm"] for s in signals if "storm" in s["extra"])


def test_a_storm_of_drift_signals_during_a_training_run_leads_to_exactly_one_follow_up(loop) -> None:
    _, stack, _ = loop
    client = stack.client()
    dag = "flights__continuous_training"
    earlier = {run["dag_run_id"] for run in client.dag_runs(dag)}
    (asset,) = client.request("GET", "assets", params={"name_pattern": "drift_detected"})["assets"]
    # Hold a training run in flight: with no DVC slot its training set cannot be assembled.
    set_slots(client, dvc_pool("flights"), 0)
    try:
        active = client.trigger(dag)["dag_run_id"]
        decided_signals(client, dag, active)  # it has decided; the storm comes after
        storm = 5
        for signal in range(storm):
            extra = {"signals": ["data_drift"], "storm": signal}
            client.request("POST", "assets/events", json={"asset_id": asset["id"], "extra": extra})
        time.sleep(15)  # several scheduler loops: nothing may start beside the active run
        assert {r["dag_run_id"] for r in client.dag_runs(dag)} - earlier == {active}

        client.request("PATCH", f"dags/{dag}/dagRuns/{active}", json={"state": "failed"})
        (follow_up,) = wait_for(lambda: new_runs(client, dag, earlier | {active}), 120, "the follow-up run")
        # Airflow hands the run only the event that queued it; its decision takes in all five.
        assert storm_signals(decided_signals(client, dag, follow_up)) == list(range(storm))
        client.request("PATCH", f"dags/{dag}/dagRuns/{follow_up}", json={"state": "failed"})
        time.sleep(15)  # and no second follow-up
        assert new_runs(client, dag, earlier | {active}) == [follow_up]

        # The next signal starts a run that decides on it alone: none of the storm twice.
        extra = {"signals": ["data_drift"], "storm": storm}
        client.request("POST", "assets/events", json={"asset_id": asset["id"], "extra": extra})
        (after,) = wait_for(lambda: new_runs(client, dag, earlier | {active, follow_up}), 120, "the next run")
        assert storm_signals(decided_signals(client, dag, after)) == [storm]
        client.request("PATCH", f"dags/{dag}/dagRuns/{after}", json={"state": "failed"})
    finally:
        set_slots(client, dvc_pool("flights"), 1)


# -- `airloop trigger` (what CI runs) against this stack's real api-server and scheduler ---------


def test_a_bad_param_is_refused_at_the_trigger_or_fails_the_first_task(loop) -> None:
    _, stack, _ = loop
    dag = "flights__continuous_training"
    # The trigger form's own schema: a window below one partition is refused by Airflow.
    refused = airloop_trigger(stack, dag, "--conf", '{"window_partitions": 0}')
    assert refused.returncode == 2 and "window_partitions" in refused.stderr
    # The config's schema: a hyperparameter out of range fails the decision, before training.
    bad = airloop_trigger(
        stack, dag, "--conf", '{"model_params": {"max_depth": 0}}', "--wait", "--timeout", "300"
    )
    assert bad.returncode == 1, bad.stderr
    run = json.loads(bad.stdout)
    assert run["state"] == "failed" and run["failed_tasks"] == ["decide_retraining"]
    log = stack.client().request(
        "GET", f"dags/{dag}/dagRuns/{run['run_id']}/taskInstances/decide_retraining/logs/1"
    )
    assert "params.max_depth: Input should be greater than or equal to 1" in str(log)


def test_a_ci_job_triggers_waits_and_a_rerun_of_it_triggers_nothing(loop) -> None:
    _, stack, _ = loop
    client, dag = stack.client(), "flights__monitor_drift"
    before = {r["dag_run_id"] for r in client.dag_runs(dag)}
    job = {"GITHUB_RUN_ID": f"e2e{time.time_ns()}"}
    first = airloop_trigger(stack, dag, "--wait", "--timeout", "300", **job)
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)
    assert run["state"] == "success" and not run["already_triggered"]
    assert run["run_id"].startswith(f"ci__{job['GITHUB_RUN_ID']}__")

    again = airloop_trigger(stack, dag, "--wait", **job)  # the CI job, rerun
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["run_id"] == run["run_id"] and rerun["already_triggered"] and rerun["state"] == "success"
    assert "was triggered before" in again.stderr
    assert {r["dag_run_id"] for r in client.dag_runs(dag)} - before == {run["run_id"]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expired(token: str, stack: Stack) -> str:
    """`token` with its expiry moved an hour into the past, signed again with the stack's secret."""
    import jwt

    algorithm = jwt.get_unverified_header(token)["alg"]
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 3600
    return jwt.encode(claims, stack.settings()["jwt_secret"], algorithm=algorithm)


def test_the_api_refuses_no_token_a_bad_token_a_bad_payload_and_a_duplicate(loop) -> None:
    _, stack, _ = loop
    client = stack.client()
    runs = f"{client.base_url}/api/v2/dags/flights__monitor_drift/dagRuns"
    assert requests.get(runs, timeout=30).status_code == 401
    # A token past its expiry, signed with the stack's own secret: 401, "Token Expired".
    assert requests.get(runs, headers=bearer(expired(client.token(), stack)), timeout=30).status_code == 401
    # Airflow answers a token it did not sign (or cannot parse) with 403 "Invalid JWT token".
    forged = requests.get(runs, headers=bearer("not-a-token"), timeout=30)
    assert forged.status_code == 403 and "Invalid JWT token" in forged.text
    login = {"username": client.username, "password": "wrong"}
    assert requests.post(f"{client.base_url}/auth/token", json=login, timeout=30).status_code == 401

    token = bearer(client.token())
    bad = requests.post(runs, headers=token, json={"logical_date": None, "conf": [1, 2]}, timeout=30)
    assert bad.status_code == 422 and "conf" in bad.text
    body = {"logical_date": None, "dag_run_id": f"duplicate_{time.time_ns()}"}
    assert requests.post(runs, headers=token, json=body, timeout=30).status_code == 200
    assert requests.post(runs, headers=token, json=body, timeout=30).status_code == 409

    denied = airloop_trigger(stack, "flights__monitor_drift", password="wrong")
    assert denied.returncode == 5 and "not authorised" in denied.stderr
    malformed = airloop_trigger(stack, "flights__monitor_drift", "--conf", "[1, 2]")
    assert malformed.returncode == 2 and "--conf must be a JSON object" in malformed.stderr
    unknown = airloop_trigger(stack, "no_such_dag")
    assert unknown.returncode == 2 and "no DAG 'no_such_dag'" in unknown.stderr


def test_triggering_a_paused_dag_says_so_and_never_hangs(loop) -> None:
    _, stack, _ = loop
    client, dag = stack.client(), "flights__rollback_champion"
    before = {r["dag_run_id"] for r in client.dag_runs(dag)}
    client.request("PATCH", f"dags/{dag}", json={"is_paused": True})
    try:
        started = time.monotonic()
        paused = airloop_trigger(stack, dag, "--wait", "--timeout", "300")
        assert time.monotonic() - started < 60
        assert paused.returncode == 3 and f"DAG {dag} is paused" in paused.stderr
        assert {r["dag_run_id"] for r in client.dag_runs(dag)} == before  # nothing triggered
    finally:
        client.request("PATCH", f"dags/{dag}", json={"is_paused": False})


# -- the plugin: buttons on task instances, and the reports they open ----------------------------


def extra_links(client, dag: str, run_id: str, task: str, map_index: int = -1) -> dict:
    path = f"dags/{dag}/dagRuns/{run_id}/taskInstances/{task}/links"
    found = client.request("GET", path, params={"map_index": map_index})["extra_links"]
    return {name: url for name, url in found.items() if url}


def test_tasks_link_to_what_they_produced_and_the_reports_open_signed_in_only(loop) -> None:
    paths, stack, _ = loop
    client, champion = stack.client(), champion_of(paths)
    run_id, name = champion.tags["airloop.airflow_run_id"], load_config().model.registered_name

    trial = extra_links(client, "flights__continuous_training", run_id, "train_trial", map_index=0)
    assert set(trial) == {"MLflow run"} and trial["MLflow run"].startswith(f"{MLFLOW_UI}/#/runs/")
    evaluated = extra_links(client, "flights__continuous_training", run_id, "evaluate_candidate")
    assert evaluated["MLflow run"] == f"{MLFLOW_UI}/#/runs/{champion.run_id}"
    promoted = extra_links(client, "flights__continuous_training", run_id, "promote_champion")
    assert promoted["Model version"] == f"{MLFLOW_UI}/#/models/{name}/versions/{champion.version}"
    assert (
        promoted["Model card"]
        == f"/airloop/reports/models/flights/reports/model_cards/{name}-v{champion.version}.html"
    )
    assert promoted["Gate decision"].startswith("/airloop/reports/models/flights/reports/decisions/")
    assert extra_links(client, "flights__continuous_training", run_id, "passes_gate") == {}

    drift_runs = [
        r["dag_run_id"] for r in client.dag_runs("flights__monitor_drift") if r["state"] == "success"
    ]
    measured = [extra_links(client, "flights__monitor_drift", r, "measure_drift") for r in drift_runs]
    report = next(links["Drift report"] for links in measured if "Drift report" in links)
    ingests = [r["dag_run_id"] for r in client.dag_runs("flights__ingest_data") if r["state"] == "success"]
    docs = next(extra_links(client, "flights__ingest_data", r, "validate").get("Data Docs") for r in ingests)
    assert docs and docs.startswith("/airloop/reports/models/flights/reports/data_docs/")

    signed_in = bearer(client.token())
    for url, expected in [(report, "<html"), (promoted["Model card"], f"v{champion.version}"),
                          (promoted["Gate decision"], "# Promotion decision"), (docs, "<html")]:  # fmt: skip
        page = requests.get(f"{client.base_url}{url}", headers=signed_in, timeout=30)
        assert page.status_code == 200 and expected in page.text, url
        assert requests.get(f"{client.base_url}{url}", timeout=30).status_code == 401
    outside = requests.get(f"{client.base_url}/airloop/reports/..%2Fairflow%2Fairloop-stack.json",
                           headers=signed_in, timeout=30)  # fmt: skip
    assert outside.status_code == 404


def test_each_month_was_asked_live_before_training_and_the_summary_shows_it(loop) -> None:
    paths, _, _ = loop
    rows = {row["partition"]: row for row in month_rows(paths, load_config())}
    # January lands before any model exists; February and March are asked of a champion.
    assert rows["2013-01"]["live"] == "-"
    for month in ("2013-02", "2013-03"):
        assert rows[month]["live"].startswith("v") and "roc_auc 0." in rows[month]["live"], rows[month]
    assert {p.name[:7] for p in paths.labelled.glob("*.parquet")} >= {"2013-02", "2013-03"}
    assert {p.name for p in (paths.model_home / "labels" / "joined").glob("*.csv")} >= {
        "2013-02.csv",
        "2013-03.csv",
    }


def test_a_live_performance_drop_from_late_labels_retrains(loop, flights_month) -> None:
    from airloop.demo.live_traffic import land_labels, request_records, send_records, wait_logged
    from airloop.packaging.bento import bento_tag
    from airloop.packaging.serving import served_bento
    from airloop.paths import safe_key

    paths, stack, _ = loop
    config, client = load_config(), stack.client()
    champion = champion_of(paths)
    # A bug upstream: every request's dep_delay arrives as 0. The model answers confidently
    # and wrongly; nothing in a request is invalid.
    april = flights_month(4).sample(3000, random_state=1)
    records = [{**r, "dep_delay": 0.0} for r in request_records(april, config)]
    bento = bento_tag(config, champion.version)
    with served_bento(
        bento, paths, paths.reports / "bug-serve.log", prediction_log=paths.prediction_log
    ) as base:
        answers = send_records(base, records)
    assert {a["model_version"] for a in answers} == {str(champion.version)}

    # The labels land later; the join and the served check run through the scheduler, over REST.
    ids = [a["inference_id"] for a in answers]
    wait_logged(config, paths, ids)
    land_labels(paths, config, "2013-04-bug", ids, april)
    assert _run_to_end(client, "flights__join_labels") == "success"
    joined = json.loads((paths.report_dir("labels") / "2013-04-bug.csv.json").read_text())
    counts = joined["counts"]  # (a cancelled flight has no arrival delay: no label)
    assert counts["joined"] + counts["missing"] == len(ids) and counts["unmatched"] == 0, joined
    assert counts["joined"] > 0.9 * len(ids)
    check = client.trigger("flights__monitor_drift", conf={"current": "served"})
    assert _wait_run(client, "flights__monitor_drift", check["dag_run_id"]) == "success"
    summary_file = paths.report_dir("drift") / f"{safe_key('served_' + check['dag_run_id'])}.summary.json"
    summary = json.loads(summary_file.read_text())
    assert summary["current"] == "served" and "performance_drop" in summary["signals"], summary["reason"]
    assert summary["performance"]["labelled_rows"] >= counts["joined"], "the labels just joined were counted"
    assert (
        summary["performance"]["observed"] < summary["performance"]["expected"] - config.drift.max_metric_drop
    )

    # The check's drift_detected reaches continuous training: the run that decided on it
    # (one already queued takes in what arrived while it waited) retrains.
    def answered_the_check() -> list[dict]:
        found = []
        for run in client.dag_runs("flights__continuous_training"):
            if run["state"] in ("success", "failed") and any(
                signal["extra"].get("run_key") == check["dag_run_id"] for signal in _signals_of(client, run)
            ):
                found.append(run)
        return found

    (run,) = wait_for(answered_the_check, 600, "continuous training answering the live drop")
    assert run["state"] == "success"
    record = json.loads(paths.decision_record(run["dag_run_id"]).read_text())
    assert "performance_drop" in record["triggers"] and "decision" in record, "it trained and was gated"
    tasks = client.task_instances("flights__continuous_training", run["dag_run_id"])
    assert {t["state"] for t in tasks if t["task_id"] == "train_trial"} == {"success"}


def _signals_of(client, run: dict) -> list[dict]:
    """The signals a finished run's decide_retraining took into account (none if it never decided)."""
    task = f"dags/flights__continuous_training/dagRuns/{run['dag_run_id']}/taskInstances/decide_retraining"
    if client.request("GET", task)["state"] != "success":
        return []
    return client.request("GET", f"{task}/xcomEntries/signals", params={"deserialize": True})["value"]


def _run_to_end(client, dag: str) -> str:
    return _wait_run(client, dag, client.trigger(dag)["dag_run_id"])


def _wait_run(client, dag: str, run_id: str, timeout: float = 300) -> str:
    def finished() -> str | None:
        state = client.request("GET", f"dags/{dag}/dagRuns/{run_id}")["state"]
        return state if state in ("success", "failed") else None

    return wait_for(finished, timeout, f"{dag} run {run_id}")


# Safe rollout, through the scheduler and REST, with `airloop serve` (HAProxy in front)
# serving the model from this test's process.


@pytest.fixture(scope="module")
def serving(loop):
    """`airloop serve` for the e2e model (polling every 0.5 s); yields HAProxy's URL."""
    import threading

    from airloop.packaging.champion_server import serve_champions, wait_until_warm

    paths, _, _ = loop
    deployment = StatePaths(paths.home)
    stop, port = threading.Event(), free_port()
    config = load_config(paths.home.parent / "flights-e2e.yaml")
    thread = threading.Thread(
        target=serve_champions, args=([config], deployment, "127.0.0.1", port, 0.5),
        kwargs={"should_stop": stop.is_set}, daemon=True,
    )  # fmt: skip
    thread.start()
    try:
        wait_for(
            lambda: wait_until_warm(paths, "flights", str(champion_of(paths).version), 1), 240, "serving"
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(timeout=120)


class _Caller:
    """Single-record requests, each with a fresh inference id, sent from a thread until stopped."""

    def __init__(self, url: str, records: list[dict]) -> None:
        import threading
        import uuid

        from airloop.packaging.serving import post_json

        self.answers: list[dict] = []
        self._stop = threading.Event()

        def call() -> None:
            for record in records:
                if self._stop.is_set():
                    return
                self.answers.append(
                    post_json(f"{url}/predict_one", {"record": {**record, "inference_id": uuid.uuid4().hex}})
                )
                time.sleep(0.02)

        self._thread = threading.Thread(target=call, daemon=True)
        self._thread.start()

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join()
        return self.answers


def _roll_out(client, conf: dict) -> tuple[str, dict[str, str]]:
    """Trigger roll_out over REST; wait for it; (run state, {task: state})."""
    run = client.trigger("flights__roll_out", conf=conf)
    state = _wait_run(client, "flights__roll_out", run["dag_run_id"], timeout=420)
    tasks = {t["task_id"]: t["state"] for t in client.task_instances("flights__roll_out", run["dag_run_id"])}
    return state, tasks


def test_a_rollout_under_load_refuses_no_request_and_moves_every_answer(loop, serving, tmp_path) -> None:
    from airloop.demo.live_traffic import request_records
    from tests.load import finish_wrk, start_wrk

    paths, stack, _ = loop
    config, client = load_config(), stack.client()
    champion, previous = str(champion_of(paths).version), _alias(paths, "previous_champion")
    bodies = tmp_path / "bodies.jsonl"
    records = request_records(_flights_rows(5, 200), config)
    bodies.write_text("\n".join(json.dumps({"record": r}) for r in records) + "\n")
    load = start_wrk(serving, "/predict_one", bodies, 45, 8, tmp_path)
    try:
        state, tasks = _roll_out(client, {"version": previous, "strategy": "blue_green"})
    finally:
        result = finish_wrk(load)
    assert state == "success" and tasks["promote_rolled_out"] == "success", tasks
    assert str(champion_of(paths).version) == previous
    assert result["requests"] > 1000 and result["non_2xx"] == 0 and result["socket_errors"] == "none", result
    from airloop.packaging.serving import post_json

    answered = post_json(f"{serving}/predict_one", {"record": records[0]})
    assert answered["model_version"] == previous and champion != previous


def test_a_canary_that_holds_up_advances_through_its_steps_and_is_promoted(loop, serving) -> None:
    from airloop.demo.live_traffic import request_records

    paths, stack, _ = loop
    config, client = load_config(), stack.client()
    challenger = _alias(paths, "previous_champion")
    caller = _Caller(serving, request_records(_flights_rows(6, 5000), config))
    try:
        state, tasks = _roll_out(client, {"version": challenger, "strategy": "canary"})
    finally:
        answers = caller.stop()
    assert state == "success" and tasks["canary_50"] == "success" and tasks["promote_rolled_out"] == "success"
    assert tasks["shadow"] == "skipped" and tasks["blue_green"] == "skipped"
    assert str(champion_of(paths).version) == challenger
    assert {a["model_version"] for a in answers} >= {challenger}


def test_a_degraded_canary_is_rolled_back_automatically_and_people_are_told(loop, serving) -> None:
    """A challenger trained on shuffled labels is rolled out as a canary; its callers' labels
    land and are joined (over REST) while the step bakes; the step finds it worse with the
    gate's bootstrap and rolls it back: the champion keeps the traffic."""
    from airloop.demo.live_traffic import land_labels, request_records, wait_logged

    paths, stack, receiver = loop
    config, client = load_config(), stack.client()
    champion = str(champion_of(paths).version)
    degraded = _register_shuffled(paths, config)
    rows = _flights_rows(7, 900)
    records = request_records(rows, config)
    run = client.trigger(
        "flights__roll_out", conf={"version": degraded, "strategy": "canary", "min_labelled": 150}
    )
    wait_for(lambda: _alias(paths, "canary") == degraded, 240, "the canary to start")
    import uuid

    from airloop.packaging.serving import post_json

    ids = [uuid.uuid4().hex for _ in records]
    answers = [
        post_json(f"{serving}/predict_one", {"record": {**r, "inference_id": i}})
        for r, i in zip(records, ids, strict=True)
    ]
    assert {a["model_version"] for a in answers} == {champion, degraded}
    wait_logged(config, paths, ids)
    land_labels(paths, config, "2013-07-canary", ids, rows)
    assert _run_to_end(client, "flights__join_labels") == "success"
    state = _wait_run(client, "flights__roll_out", run["dag_run_id"], timeout=420)
    tasks = {t["task_id"]: t["state"] for t in client.task_instances("flights__roll_out", run["dag_run_id"])}
    assert state == "success" and tasks["canary_50"] == "skipped" and tasks["promote_rolled_out"] == "skipped"
    assert str(champion_of(paths).version) == champion and _alias(paths, "canary") is None
    told = [b for b in receiver.bodies if b["event"] == "rollback"]
    assert (
        told
        and told[-1]["details"]["version"] == degraded
        and "live roc_auc" in told[-1]["details"]["reason"]
    )
    record = (paths.report_dir("rollouts") / f"{_key(run['dag_run_id'])}.md").read_text()
    assert "rolled_back" in record and "| 50% |" in record


def test_the_ledger_holds_every_move_with_who_and_why(loop) -> None:
    import subprocess
    import sys

    paths, _, _ = loop
    from airloop.registry.ledger import read_ledger

    entries = read_ledger(paths)
    actions = [e["action"] for e in entries]
    # The replay's promotions and the REST rollback, then this module's three rollouts.
    assert actions.count("promoted") >= 2 and "rolled_back" in actions
    rollouts = ["promoted", "canary_started", "promoted", "canary_started", "canary_rolled_back"]
    assert actions[-5:] == rollouts, actions
    assert all(e["actor"] and e["reason"] and e["at"] for e in entries)
    rolled_back = entries[-1]
    assert rolled_back["from_version"] == entries[-3]["version"] and "live roc_auc" in rolled_back["reason"]
    assert rolled_back["evidence"]["rollout"].startswith("models/flights/reports/rollouts/")
    printed = subprocess.run(
        [str(Path(sys.executable).parent / "airloop"), "history", "--model", "flights"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "canary_rolled_back" in printed and "promoted" in printed


def _flights_rows(month: int, count: int):
    """`count` rows of a 2013 month of flights with a known arrival delay."""
    from airloop.demo.flights import flights

    table = flights()
    rows = table[(table["month"] == month) & table["arr_delay"].notna()]
    return rows.sample(count, random_state=month).reset_index(drop=True)


def _alias(paths: StatePaths, alias: str) -> str | None:
    from airloop.registry.rollout import rollout_state

    state = rollout_state(tracking_client(paths), load_config().model.registered_name)
    return {"previous_champion": state.previous_champion, "canary": state.canary}[alias]


def _key(run_id: str) -> str:
    from airloop.paths import safe_key

    return safe_key(run_id)


def _register_shuffled(paths: StatePaths, config) -> str:
    """A version of the model trained on shuffled labels: it answers as fast, and wrongly."""
    import mlflow
    from xgboost import XGBClassifier

    from airloop.data.frames import feature_frame
    from airloop.data.labels import labelled_rows, labels
    from tests.unit.test_packaging import _pipeline, _tracking, register_pipeline

    rows = labelled_rows(_flights_rows(4, 3000), config)
    x, y = feature_frame(rows, config), labels(rows, config)
    with _tracking(paths.tracking_uri()):
        experiment = mlflow.create_experiment("degraded-canary")
        fitted = _pipeline(config, XGBClassifier(n_estimators=20)).fit(
            x, y.sample(frac=1, random_state=3).to_numpy()
        )
        return register_pipeline(config, fitted, x, experiment)
