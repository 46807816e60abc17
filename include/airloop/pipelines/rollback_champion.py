"""rollback_champion: put the previous champion back in service, and its bento."""

from __future__ import annotations

from airloop.config import AirloopConfig
from airloop.locks import exclusive
from airloop.paths import StatePaths
from airloop.registry import roll_back_champion
from airloop.tracking import tracking_client


def roll_back(config: AirloopConfig, paths: StatePaths) -> dict:
    """Move `champion` back to `previous_champion` and (re)build that version's bento."""
    from airloop.packaging.bento import build_bento

    with exclusive(paths.promotion_lock):
        champion, rolled_back = roll_back_champion(tracking_client(paths), config.model.registered_name)
    bento = build_bento(config, champion.uri, champion.version, paths)
    return {"version": champion.version, "rolled_back": rolled_back.version, "bento": bento}
