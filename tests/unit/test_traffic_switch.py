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
        _until(lambda: failed or wait_until_warm(reg.paths, reg.config.name, reg.versions[1], 1), 240)
        assert not failed, failed
        yield url
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not thread.is_alive() and live_routes(reg.paths) is None


def _until(condition: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


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
        _until(lambda: _weights(reg) == {first: 70, second: 30}, 60)
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
    _until(lambda: _weights(reg) == {first: 100}, 60)
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
        _until(lambda: _mirroring(reg) == second, 240)
        records = [{**r, "inference_id": uuid.uuid4().hex} for r in _records(reg, 60)]
        answered = post_json(f"{serving}/predict", {"records": records[:30]})
        answered += [post_json(f"{serving}/predict_one", {"record": r}) for r in records[30:]]
        ids = {r["inference_id"] for r in records}
        log = reg.paths.for_model(reg.config.name).prediction_log
        _until(lambda: ids <= set(_logged(log, "shadow")["inference_id"]), 30)
        shadow = _logged(log, "shadow")
    finally:
        end_shadow(client, name)
    assert {a["model_version"] for a in answered} == {first}
    assert set(shadow[shadow["inference_id"].isin(ids)]["model_version"]) == {second}
    served = _logged(log, "served")
    assert set(served[served["inference_id"].isin(ids)]["model_version"]) == {first}
    _until(lambda: _mirroring(reg) is None, 120)


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
