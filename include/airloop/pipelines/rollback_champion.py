"""rollback_champion: put the previous champion back in service, and its bento."""

from __future__ import annotations

from airloop.config import AirloopConfig
from airloop.paths import StatePaths
from airloop.registry.locks import exclusive
from airloop.registry.tracking import tracking_client
from airloop.registry.versions import PREVIOUS_CHAMPION, previous_champion, roll_back_champion


def roll_back(config: AirloopConfig, paths: StatePaths) -> dict:
    """Move `champion` back to `previous_champion` and (re)build that version's bento."""
    from airloop.packaging.bento import build_bento

    client, name = tracking_client(paths), config.model.registered_name
    with exclusive(paths.promotion_lock):
        target = previous_champion(client, name)
        if target is None:
            raise RuntimeError(f"{name} has no {PREVIOUS_CHAMPION} to roll back to")
        # The bento first: if it cannot be built, no alias has moved and a retry starts over.
        bento = build_bento(config, target.uri, target.version, paths)
        champion, rolled_back = roll_back_champion(client, name)
    return {"version": champion.version, "rolled_back": rolled_back.version, "bento": bento}
