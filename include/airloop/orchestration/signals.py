"""Which asset events a continuous-training decision answers: all of them, none twice.

Airflow gives an asset-triggered run only the events up to the one that queued it: events
arriving while the run waits join its queue entry, not the run. So the decision reads the
trigger assets' events itself, after a watermark kept in each asset's state store (the
newest event a decision has taken into account), and moves the watermark once it decided.

The functions take what the task's context holds (`asset_state_store`, `inlet_events`), so
they are tested without a scheduler.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airloop.orchestration.assets import TRIGGER_OF_KIND, asset_kind
from airloop.training.policy import MANUAL, SCHEDULE, triggers_of_event

# The state-store key of the newest event a decision has taken into account.
HANDLED = "decided_through"


def pending_signals(state_store: Any, inlet_events: Any, assets: Iterable[Any]) -> list[dict]:
    """Every event on `assets` after its watermark, oldest first per asset, as small dicts."""
    signals = []
    for asset in assets:
        mark = state_store[asset].get(HANDLED) or {}
        events = inlet_events[asset]
        if mark:
            events = events.after(mark["timestamp"])  # inclusive: the ids below drop the mark itself
        signals += [
            {"asset": asset.name, "id": e.id, "timestamp": e.timestamp.isoformat(), "extra": e.extra or {}}
            for e in events
            if e.id > mark.get("id", 0)
        ]
    return signals


def mark_decided(state_store: Any, signals: list[dict], assets: Iterable[Any]) -> None:
    """Move each asset's watermark to the newest of its events in `signals`."""
    for asset in assets:
        mine = [s for s in signals if s["asset"] == asset.name]
        if mine:
            newest = max(mine, key=lambda s: s["id"])
            state_store[asset].set(HANDLED, {"id": newest["id"], "timestamp": newest["timestamp"]})


def run_triggers(signals: Sequence[Mapping[str, Any]], run_type: str) -> list[str]:
    """What a run answers: its pending signals, plus the schedule or a person/CI."""
    kinds = {
        t for s in signals for t in triggers_of_event(TRIGGER_OF_KIND[asset_kind(s["asset"])], s["extra"])
    }
    kinds |= {"manual": {MANUAL}, "scheduled": {SCHEDULE}}.get(run_type, set())
    return sorted(kinds)
