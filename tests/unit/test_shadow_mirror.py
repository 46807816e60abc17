"""The champion's copy of its traffic to a shadow: sampled by inference id, sent in batches
off the request path, bounded, and never a failure of the champion's."""

from __future__ import annotations

import time
import uuid

from airloop.ops.stack import free_port
from airloop.packaging.prediction_sink import sampled
from airloop.packaging.shadow_mirror import ShadowMirror
from tests.receivers import Receiver
from tests.waiting import wait_for


def test_the_sampled_records_reach_the_shadow_once_each_in_a_few_batches() -> None:
    shadow = Receiver().start()
    sent: list[int] = []
    try:
        mirror = ShadowMirror(shadow.url.removesuffix("/hook"), 0.5, "inference_id", on_sent=sent.append)
        ids = [uuid.uuid4().hex for _ in range(400)]
        for start in range(0, len(ids), 5):  # the worker's scored batches, as they come
            chunk = ids[start : start + 5]
            mirror.offer([{"carrier": "AA", "distance": float(n)} for n in range(len(chunk))], chunk)
        chosen = {i for i in ids if sampled(i, 0.5)}
        wait_for(lambda: sum(sent) == len(chosen), 10, "every chosen record sent", every=0.05)
        mirror.close()
    finally:
        shadow.stop()
    received = [r["inference_id"] for body in shadow.bodies for r in body["records"]]
    assert sorted(received) == sorted(chosen) and 100 < len(chosen) < 300
    assert len(shadow.bodies) <= 3, "records go in batches, not a request each"
    assert all(
        set(r) == {"carrier", "distance", "inference_id"} for body in shadow.bodies for r in body["records"]
    )


def test_a_shadow_that_is_down_costs_counted_errors_and_memory_stays_bounded() -> None:
    errors: list[BaseException] = []
    dropped: list[int] = []
    down = f"http://127.0.0.1:{free_port()}"
    mirror = ShadowMirror(
        down, 1.0, "inference_id", max_pending=100, batch_size=50, linger_seconds=0.05,
        on_error=errors.append, on_dropped=dropped.append,
    )  # fmt: skip
    started = time.monotonic()
    for _ in range(20):
        ids = [uuid.uuid4().hex for _ in range(30)]
        mirror.offer([{"x": 1.0}] * 30, ids)
    offering = time.monotonic() - started
    wait_for(lambda: errors, 10, "an error reported", every=0.05)
    mirror.close()
    assert offering < 0.5, "offering never waits on the shadow"
    assert sum(dropped) > 0 and len(mirror._pending) <= 100  # noqa: SLF001
    assert isinstance(errors[0], OSError)


def test_closing_sends_what_is_queued() -> None:
    shadow = Receiver().start()
    try:
        mirror = ShadowMirror(shadow.url.removesuffix("/hook"), 1.0, "inference_id", linger_seconds=30)
        mirror.offer([{"x": 1.0}, {"x": 2.0}], ["a", "b"])
        mirror.close()
    finally:
        shadow.stop()
    assert [r["inference_id"] for body in shadow.bodies for r in body["records"]] == ["a", "b"]
