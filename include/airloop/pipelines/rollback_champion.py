"""rollback_champion: put the previous champion back in service, and its bento."""

from __future__ import annotations

from airloop.config import AirloopConfig
from airloop.paths import StatePaths
from airloop.registry.ledger import ROLLED_BACK, read_ledger, record_move
from airloop.registry.locks import exclusive
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import (
    PREVIOUS_CHAMPION,
    current_champion,
    previous_champion,
    roll_back_champion,
)

DEFAULT_REASON = "manual rollback"


def roll_back(
    config: AirloopConfig,
    paths: StatePaths,
    *,
    actor: str = "airloop",
    reason: str = DEFAULT_REASON,
    run_key: str | None = None,
) -> dict:
    """Move `champion` back to `previous_champion` and (re)build that version's bento; record
    the move in the model's ledger as done by `actor` for `reason`.

    `run_key` is the run doing it: a retry of that run after its rollback was recorded finds
    the champion it left and returns, instead of rolling back again (which would undo it).
    """
    from airloop.packaging.bento import build_bento

    client, name = tracking_client(paths), config.model.registered_name
    with exclusive(paths.promotion_lock):
        done = _recorded(paths, run_key)
        champion_now = current_champion(client, name)
        if done and champion_now is not None and champion_now.version == done["version"]:
            return {"version": done["version"], "rolled_back": done["from_version"], **done["details"]}
        target = previous_champion(client, name)
        if target is None:
            raise RuntimeError(f"{name} has no {PREVIOUS_CHAMPION} to roll back to")
        # The bento first: if it cannot be built, no alias has moved and a retry starts over.
        bento = build_bento(config, target.uri, target.version, paths)
        champion, rolled_back = roll_back_champion(client, name)
        record_move(
            paths,
            ROLLED_BACK,
            champion.version,
            from_version=rolled_back.version,
            actor=actor,
            reason=reason or DEFAULT_REASON,
            evidence={"model_version": f"{name}/{champion.version}"},
            details={"bento": bento},
            run_key=run_key,
        )
    return {"version": champion.version, "rolled_back": rolled_back.version, "bento": bento}


def _recorded(paths: StatePaths, run_key: str | None) -> dict | None:
    """The rollback `run_key` already recorded, if any."""
    if run_key is None:
        return None
    done = [e for e in read_ledger(paths) if e.get("action") == ROLLED_BACK and e.get("run_key") == run_key]
    return done[-1] if done else None
