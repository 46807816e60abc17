"""The watermark logic of continuous training's decision, with no scheduler: which asset
events a decision answers (all since the last decision, none twice), per model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from airloop.orchestration.assets import ModelAssets
from airloop.orchestration.signals import HANDLED, mark_decided, pending_signals, run_triggers

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class Event:
    id: int
    timestamp: datetime
    extra: dict | None = None


class Events(list):
    """What `context["inlet_events"][asset]` is: the asset's events, oldest first, with
    `after(timestamp)` (inclusive, as Airflow's accessor filters timestamp >= it)."""

    def after(self, timestamp: str) -> Events:
        since = datetime.fromisoformat(timestamp)
        return Events(e for e in self if e.timestamp >= since)


class StateStore(dict):
    """What `context["asset_state_store"]` is: per asset, get/set of small JSON values."""

    class _One(dict):
        def set(self, key, value) -> None:
            self[key] = value

    def __getitem__(self, asset):
        return self.setdefault(asset.uri, self._One())


ASSETS = ModelAssets.of("flights")


def _events(*spec: tuple[int, int]) -> Events:
    return Events(Event(i, T0 + timedelta(minutes=m), {"partition": f"p{i}"}) for i, m in spec)


def test_without_a_watermark_every_event_is_pending() -> None:
    inlets = {ASSETS.validated_data: _events((1, 0), (2, 1)), ASSETS.drift_detected: _events((3, 2))}
    found = pending_signals(StateStore(), inlets, ASSETS.triggers)
    assert [(s["asset"], s["id"]) for s in found] == [
        ("flights.validated_data", 1), ("flights.validated_data", 2), ("flights.drift_detected", 3),
    ]  # fmt: skip
    assert found[0]["extra"] == {"partition": "p1"} and found[0]["timestamp"] == T0.isoformat()


def test_after_a_decision_only_newer_events_are_pending_and_the_mark_itself_is_not() -> None:
    store = StateStore()
    first = {ASSETS.validated_data: _events((1, 0), (2, 1)), ASSETS.drift_detected: Events()}
    mark_decided(store, pending_signals(store, first, ASSETS.triggers), ASSETS.triggers)
    assert store[ASSETS.validated_data][HANDLED] == {
        "id": 2,
        "timestamp": (T0 + timedelta(minutes=1)).isoformat(),
    }
    assert HANDLED not in store[ASSETS.drift_detected]

    # Event 4 shares event 2's timestamp: `after` keeps both, the id drops the one decided.
    later = {
        ASSETS.validated_data: _events((1, 0), (2, 1), (4, 1), (5, 3)),
        ASSETS.drift_detected: _events((6, 4)),
    }
    found = pending_signals(store, later, ASSETS.triggers)
    assert [s["id"] for s in found] == [4, 5, 6]


def test_a_storm_of_events_is_answered_by_one_decision_and_then_nothing_is_pending() -> None:
    store = StateStore()
    storm = {ASSETS.validated_data: Events(), ASSETS.drift_detected: _events(*((i, i) for i in range(1, 21)))}
    signals = pending_signals(store, storm, ASSETS.triggers)
    assert len(signals) == 20 and run_triggers(signals, "asset_triggered") == ["drift"]
    mark_decided(store, signals, ASSETS.triggers)
    assert pending_signals(store, storm, ASSETS.triggers) == []


def test_watermarks_are_per_model() -> None:
    store, weather = StateStore(), ModelAssets.of("weather")
    mark_decided(
        store,
        pending_signals(
            store, {ASSETS.validated_data: _events((1, 0)), ASSETS.drift_detected: Events()}, ASSETS.triggers
        ),
        ASSETS.triggers,
    )
    inlets = {weather.validated_data: _events((1, 0)), weather.drift_detected: Events()}
    assert [s["asset"] for s in pending_signals(store, inlets, weather.triggers)] == [
        "weather.validated_data"
    ]


def test_what_a_run_answers_is_its_signals_plus_how_it_was_started() -> None:
    new_data = {"asset": "flights.validated_data", "extra": {}}
    drop = {"asset": "flights.drift_detected", "extra": {"signals": ["performance_drop"]}}
    assert run_triggers([new_data], "asset_triggered") == ["new_data"]
    assert run_triggers([], "manual") == ["manual"]
    assert run_triggers([new_data], "scheduled") == ["new_data", "schedule"]
    assert "performance_drop" in run_triggers([drop], "asset_triggered")
