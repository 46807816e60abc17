"""`airloop serve` behind HAProxy: a promotion and a rollback under wrk load refuse no request,
a canary's callers stay with one model, a shadow gets a copy of the traffic and answers
nobody. Real bento servers, a real HAProxy, the real registry; no Airflow."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airloop.ops.stack import free_port
from airloop.packaging.champion_server import (
    SHADOW,
    ServerSpec,
    Wanted,
    desired_servers,
    live_routes,
    serve_champions,
    wait_until_warm,
)
from airloop.packaging.serving import post_json
from airloop.registry.rollout import RolloutState, end_canary, end_shadow, set_canary, set_shadow
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import CHAMPION, promote_champion, roll_back_champion
from tests.load import finish_wrk, start_wrk
from tests.unit.test_packaging import Registered, registered  # noqa: F401  (a fixture)
from tests.waiting import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")


def test_the_champion_takes_what_the_canary_does_not_and_earlier_versions_stay_warm() -> None:
    assert desired_servers(RolloutState()) == []
    state = RolloutState(champion="3", previous_champion="2", challenger="4", canary="4", canary_percent=25)
    assert desired_servers(state) == [
        Wanted(ServerSpec("3"), 75),
        Wanted(ServerSpec("4"), 25),
        Wanted(ServerSpec("2"), 0),
    ]
    # Promoted: the challenger is the champion, one server of it.
    assert desired_servers(RolloutState(champion="4", previous_champion="3", challenger="4")) == [
        Wanted(ServerSpec("4"), 100),
        Wanted(ServerSpec("3"), 0),
    ]


def test_a_shadow_runs_unrouted_and_the_champion_copies_its_sample_to_it() -> None:
    state = RolloutState(champion="3", challenger="4", shadow="4", shadow_sample=0.1)
    assert desired_servers(state) == [
        Wanted(ServerSpec("3", mirror_to="4", mirror_sample=0.1), 100),
        Wanted(ServerSpec("4"), 0),
        Wanted(ServerSpec("4", role=SHADOW), None),
    ]


@pytest.fixture(scope="module")
def serving(registered: Registered) -> Iterator[str]:  # noqa: F811
    """`airloop serve`'s loop for the flights model (in a thread, polling every 0.5 s), its
    champion the first version; yields the model's URL, HAProxy's frontend."""
    reg = registered
    client, name = tracking_client(reg.paths), reg.config.model.registered_name
    client.set_registered_model_alias(name, CHAMPION, reg.versions[0])
    stop, failed = threading.Event(), []
    port = free_port()

    def serve() -> None:
        try:
            serve_champions([reg.config], reg.paths, "127.0.0.1", port, 0.5, should_stop=stop.is_set)
        except BaseException as error:
            failed.append(error)
            raise

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: failed or wait_until_warm(reg.paths, reg.config.name, reg.versions[1], 1), 240)
        assert not failed, failed
        yield url
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not thread.is_alive() and live_routes(reg.paths) is None


def _records(reg: Registered, count: int) -> list[dict[str, Any]]:
    frame = pd.concat([reg.eval_frame] * (count // len(reg.eval_frame) + 1)).head(count)
    return json.loads(frame.to_json(orient="records"))


def _version(url: str, record: dict[str, Any]) -> str | None:
    try:
        return str(post_json(f"{url}/predict_one", {"record": record}, 5)["model_version"])
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


class _Watch:
    """Which version answers, every 0.1 s, in a thread of its own."""

    def __init__(self, url: str, record: dict[str, Any]) -> None:
        self.seen: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, record), daemon=True)
        self._thread.start()

    def _run(self, url: str, record: dict[str, Any]) -> None:
        while not self._stop.is_set():
            self.seen.append((time.monotonic(), _version(url, record)))
            time.sleep(0.1)

    def flipped_to(self, version: str, after: float, timeout: float = 30) -> float:
        """Seconds from `after` until `version` answered (and kept answering)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [(t, v) for t, v in self.seen if t >= after]
            flips = [
                t
                for i, (t, v) in enumerate(later)
                if v == version and all(w == version for _, w in later[i:])
            ]
            if flips and later[-1][0] - flips[0] > 1:
                return flips[0] - after
            time.sleep(0.2)
        raise AssertionError(f"v{version} never answered for good: {self.seen[-20:]}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_a_promotion_and_a_rollback_under_load_refuse_no_request_and_flip_within_5_s(
    registered: Registered,  # noqa: F811
    serving: str,
    tmp_path: Path,
) -> None:
    reg, (first, second) = registered, registered.versions
    client, name = tracking_client(reg.paths), reg.config.model.registered_name
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text("\n".join(json.dumps({"record": r}) for r in _records(reg, 200)) + "\n")
    load = start_wrk(serving, "/predict_one", bodies, 24, 16, tmp_path)
    watch = _Watch(serving, _records(reg, 1)[0])
    try:
        time.sleep(4)
        moved = time.monotonic()
        promote_champion(client, name, second, first)
        promoted_in = watch.flipped_to(second, moved)
        time.sleep(3)
        moved = time.monotonic()
        roll_back_champion(client, name)
        rolled_back_in = watch.flipped_to(first, moved)
    finally:
        watch.stop()
        result = finish_wrk(load)
    assert result["requests"] > 1000
    assert result["non_2xx"] == 0 and result["socket_errors"] == "none", result
    assert None not in {v for _, v in watch.seen}, "a probe request was refused"
    assert promoted_in < 5 and rolled_back_in < 5, (promoted_in, rolled_back_in)


def test_a_canary_gets_its_share_and_each_caller_stays_with_one_model(
    registered: Registered,  # noqa: F811
    serving: str,
) -> None:
    reg, (first, second) = registered, registered.versions
    client, name = tracking_client(reg.paths), reg.config.model.registered_name
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == first
    set_canary(client, name, second, 30)
    try:
        wait_for(lambda: _weights(reg) == {first: 70, second: 30}, 60)
        records = [{**r, "inference_id": uuid.uuid4().hex} for r in _records(reg, 400)]
        answered = [_version(serving, r) for r in records]
        again = [_version(serving, r) for r in records]
        # By header, too: a caller's own key.
        keyed = {
            key: {_keyed_version(serving, records[0], key) for _ in range(3)} for key in map(str, range(40))
        }
    finally:
        end_canary(client, name)
    assert answered == again, "the same inference id went to another model"
    share = answered.count(second) / len(answered)
    assert 0.15 < share < 0.45, share
    assert all(len(versions) == 1 for versions in keyed.values())
    wait_for(lambda: _weights(reg) == {first: 100}, 60)
    assert {_version(serving, r) for r in records[:50]} == {first}


def _keyed_version(url: str, record: dict[str, Any], key: str) -> str:
    import urllib.request

    request = urllib.request.Request(
        f"{url}/predict_one",
        data=json.dumps({"record": record}).encode(),
        headers={"Content-Type": "application/json", "X-Airloop-Key": key},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(json.load(response)["model_version"])


def _weights(reg: Registered) -> dict[str, int]:
    routes = live_routes(reg.paths) or {}
    servers = routes.get(reg.config.name, {}).get("servers", [])
    return {s["version"]: s["weight"] for s in servers if s["weight"]}


def test_a_shadow_answers_nobody_and_logs_a_copy_of_the_traffic_as_shadow(
    registered: Registered,  # noqa: F811
    serving: str,
) -> None:
    reg, (first, second) = registered, registered.versions
    client, name = tracking_client(reg.paths), reg.config.model.registered_name
    set_shadow(client, name, second, 1.0)
    try:
        wait_for(lambda: _mirroring(reg) == second, 240)
        records = [{**r, "inference_id": uuid.uuid4().hex} for r in _records(reg, 60)]
        answered = post_json(f"{serving}/predict", {"records": records[:30]})
        answered += [post_json(f"{serving}/predict_one", {"record": r}) for r in records[30:]]
        ids = {r["inference_id"] for r in records}
        log = reg.paths.for_model(reg.config.name).prediction_log
        wait_for(lambda: ids <= set(_logged(log, "shadow")["inference_id"]), 30)
        shadow = _logged(log, "shadow")
    finally:
        end_shadow(client, name)
    assert {a["model_version"] for a in answered} == {first}
    assert set(shadow[shadow["inference_id"].isin(ids)]["model_version"]) == {second}
    served = _logged(log, "served")
    assert set(served[served["inference_id"].isin(ids)]["model_version"]) == {first}
    wait_for(lambda: _mirroring(reg) is None, 120)


def _mirroring(reg: Registered) -> str | None:
    routes = live_routes(reg.paths) or {}
    for server in routes.get(reg.config.name, {}).get("servers", []):
        if server["weight"] and server["mirror_to"]:
            return str(server["mirror_to"])
    return None


def _logged(root: Path, role: str) -> pd.DataFrame:
    files = [f for f in root.rglob("*.parquet") if not f.name.startswith(".")] if root.exists() else []
    if not files:
        return pd.DataFrame(columns=["inference_id", "model_version", "role"])
    frame = pd.concat([pd.read_parquet(f, columns=["inference_id", "model_version", "role"]) for f in files])
    return frame[frame["role"] == role]


def _rollout_config(reg: Registered, **rollout: Any) -> Any:
    from airloop.config import parse_config

    data = reg.config.model_dump(mode="json")
    # Prometheus scrapes every 5 s: a step must span a few scrapes to be measured. A p95
    # from the latency histogram jumps a bucket (10 to 25 ms) on a busy 2-core machine:
    # these tests judge on errors and labels, test_rollout_judge on latency.
    data["rollout"] = {"strategy": "canary", "steps": [50, 100], "bake_minutes": 0.3, "min_requests": 40,
                       "max_latency_factor": 4, **rollout}  # fmt: skip
    return parse_config(data, "the rollout test's config")


class _Traffic:
    """Records with fresh inference ids sent to `url` from a thread until stopped; what was
    answered, by inference id."""

    def __init__(self, url: str, records: list[dict[str, Any]]) -> None:
        self.answers: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, records), daemon=True)
        self._thread.start()

    def _run(self, url: str, records: list[dict[str, Any]]) -> None:
        for record in records:
            if self._stop.is_set():
                return
            answer = post_json(f"{url}/predict_one", {"record": record}, 10)
            self.answers[answer["inference_id"]] = str(answer["model_version"])
            time.sleep(0.02)

    def stop(self) -> dict[str, str]:
        self._stop.set()
        self._thread.join()
        return self.answers


def _judged_until_decided(judge: Callable[[], dict[str, Any]], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (judged := judge())["verdict"]["action"] == "wait":
        assert time.monotonic() < deadline, judged
        time.sleep(2)
    return judged


def test_a_healthy_canary_advances_on_its_measured_traffic_and_is_promoted(
    registered: Registered,  # noqa: F811
    serving: str,
) -> None:
    from airloop.registry.ledger import read_ledger
    from airloop.rollout.steps import (
        finish,
        judge_canary_step,
        plan_rollout,
        rollout_record,
        start_canary_step,
    )

    reg, (first, second) = registered, registered.versions
    client, name = tracking_client(reg.paths), reg.config.model.registered_name
    config, paths = _rollout_config(reg), reg.paths.for_model(reg.config.name)
    plan = plan_rollout(config, paths, second, "canary-advances")
    assert (plan["champion"], plan["strategy"], plan["warm"]) == (first, "canary", True)
    step = start_canary_step(config, paths, plan, 50, "a tester")
    wait_for(lambda: _weights(reg) == {first: 50, second: 50}, 60)
    traffic = _Traffic(serving, [{**r, "inference_id": uuid.uuid4().hex} for r in _records(reg, 5000)])
    try:
        judged = _judged_until_decided(lambda: judge_canary_step(config, paths, plan, step))
    finally:
        answered = traffic.stop()
    assert judged["verdict"]["action"] == "advance", (judged["verdict"], judged["evidence"])
    assert judged["evidence"]["canary"]["requests"] >= 40 and judged["evidence"]["canary"]["errors"] == 0
    assert set(answered.values()) == {first, second}
    outcome = finish(config, paths, plan, "a tester")
    assert outcome["version"] == second
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == second
    wait_for(lambda: _weights(reg) == {second: 100}, 30)
    moves = [(e["action"], e["version"], e["actor"]) for e in read_ledger(paths)]
    assert moves[-2:] == [("canary_started", second, "a tester"), ("promoted", second, "a tester")]
    assert "| 50% |" in rollout_record(paths, "canary-advances").with_suffix(".md").read_text()
    roll_back_champion(client, name)  # the next test starts from the first version again
    wait_for(lambda: _weights(reg) == {first: 100}, 30)


def test_a_canary_worse_on_labelled_live_traffic_is_rolled_back(
    registered: Registered,  # noqa: F811
    serving: str,
) -> None:
    """A challenger trained on shuffled labels: it errs on nothing and is as fast, but once
    the labels of its callers join, the gate's bootstrap finds it worse, and back it goes."""
    from xgboost import XGBClassifier

    from airloop.data.frames import feature_frame
    from airloop.data.labels import labels
    from airloop.production.labels_join import join_pending_labels, labels_landing
    from airloop.registry.ledger import read_ledger
    from airloop.rollout.steps import judge_canary_step, plan_rollout, roll_back, start_canary_step
    from tests.unit.test_packaging import _pipeline, _tracking, register_pipeline

    reg, first = registered, registered.versions[0]
    client, name = tracking_client(reg.paths), reg.config.model.registered_name
    x, y = feature_frame(reg.train, reg.config), labels(reg.train, reg.config)
    with _tracking(reg.paths.tracking_uri()):
        shuffled = y.sample(frac=1, random_state=1).to_numpy()
        degraded = register_pipeline(
            reg.config,
            _pipeline(reg.config, XGBClassifier(n_estimators=20)).fit(x, shuffled),
            x,
            reg.experiment,
        )
    config, paths = _rollout_config(reg, min_labelled=150), reg.paths.for_model(reg.config.name)
    plan = plan_rollout(config, paths, degraded, "canary-degraded")
    step = start_canary_step(config, paths, plan, 50, "a tester")
    wait_for(lambda: _weights(reg) == {first: 50, degraded: 50}, 60)
    rows = reg.train.head(700).reset_index(drop=True)
    records = json.loads(feature_frame(rows, reg.config).to_json(orient="records"))
    ids = [uuid.uuid4().hex for _ in records]
    answered = _Traffic(serving, [{**r, "inference_id": i} for r, i in zip(records, ids, strict=True)])
    time.sleep(20)  # the bake, and the log's flush
    answered.stop()
    target = reg.config.dataset.target.column
    landed = labels_landing(config, paths) / "canary-labels.csv"
    landed.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"inference_id": ids, target: rows[target], "labelled_at": "2026-12-01T00:00:00"}).to_csv(
        landed, index=False
    )
    assert join_pending_labels(config, paths)["joined"] > 300
    judged = _judged_until_decided(lambda: judge_canary_step(config, paths, plan, step))
    assert judged["verdict"]["action"] == "roll_back", judged
    assert "live roc_auc" in judged["verdict"]["reason"]
    live = judged["evidence"]["live"]
    assert live["canary"] < live["champion"] - 0.1 and live["gain_interval"][1] < 0
    details = roll_back(config, paths, plan, judged["verdict"]["reason"], "a tester")
    assert details["outcome"] == "rolled_back"
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == first
    wait_for(lambda: _weights(reg) == {first: 100}, 30)
    assert read_ledger(paths)[-1]["action"] == "canary_rolled_back"


def test_a_shadow_rollout_is_judged_on_the_answers_it_shadowed_then_promoted(
    registered: Registered,  # noqa: F811
    serving: str,
) -> None:
    from airloop.registry.ledger import read_ledger
    from airloop.rollout.steps import finish, judge_shadow_step, plan_rollout, start_shadow

    reg, (first, second) = registered, registered.versions
    client, name = tracking_client(reg.paths), reg.config.model.registered_name
    config = _rollout_config(reg, strategy="shadow", shadow_sample=0.5)
    paths = reg.paths.for_model(reg.config.name)
    plan = plan_rollout(config, paths, second, "shadow-rollout")
    assert (plan["champion"], plan["strategy"]) == (first, "shadow")
    step = start_shadow(config, paths, plan, "a tester")
    wait_for(lambda: _mirroring(reg) == second, 240)
    traffic = _Traffic(serving, [{**r, "inference_id": uuid.uuid4().hex} for r in _records(reg, 5000)])
    try:
        judged = _judged_until_decided(lambda: judge_shadow_step(config, paths, plan, step))
    finally:
        answered = traffic.stop()
    assert set(answered.values()) == {first}, "a shadow answers nobody"
    assert judged["verdict"]["action"] == "advance", (judged["verdict"], judged["evidence"])
    shadowed = judged["shadow"]
    assert 40 <= shadowed["pairs"] < len(answered), "about half the requests, sampled by id"
    assert shadowed["latency_ms"]["challenger"]["p50"] is not None
    finish(config, paths, plan, "a tester")
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == second
    wait_for(lambda: _weights(reg) == {second: 100} and _mirroring(reg) is None, 120)
    assert [e["action"] for e in read_ledger(paths)][-2:] == ["shadow_started", "promoted"]
    roll_back_champion(client, name)
    wait_for(lambda: _weights(reg) == {first: 100}, 30)
