"""Where a model's rollout stands, kept in the MLflow registry: the one place both the
pipeline (which decides) and `airloop serve` (which routes) read.

Besides `champion`, `previous_champion` and `challenger` (airloop.registry.versions), a
version in rollout carries the alias `canary` (with the registered model's tag
`airloop.canary_percent`: the share of traffic it gets) or `shadow` (with
`airloop.shadow_sample`: the share of traffic copied to it). One rollout at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from airloop.registry.versions import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient

CANARY, SHADOW = "canary", "shadow"
CANARY_PERCENT_TAG = "airloop.canary_percent"
SHADOW_SAMPLE_TAG = "airloop.shadow_sample"


@dataclass(frozen=True)
class RolloutState:
    champion: str | None = None
    previous_champion: str | None = None
    challenger: str | None = None
    canary: str | None = None
    canary_percent: int = 0
    shadow: str | None = None
    shadow_sample: float = 0.0


def rollout_state(client: MlflowClient, name: str) -> RolloutState:
    """The model's aliases and rollout tags, read in one registry call (none: all empty)."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return RolloutState()
    aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
    tags = model.tags or {}
    canary, shadow = aliases.get(CANARY), aliases.get(SHADOW)
    return RolloutState(
        champion=aliases.get(CHAMPION),
        previous_champion=aliases.get(PREVIOUS_CHAMPION),
        challenger=aliases.get(CHALLENGER),
        canary=canary,
        canary_percent=int(tags.get(CANARY_PERCENT_TAG, 0)) if canary else 0,
        shadow=shadow,
        shadow_sample=float(tags.get(SHADOW_SAMPLE_TAG, 0)) if shadow else 0.0,
    )


def set_canary(client: MlflowClient, name: str, version: str, percent: int) -> None:
    """Give `version` `percent` of the traffic as the canary (the percentage first: a server
    that reads in between sees the old share of the new canary, never a share of nothing)."""
    if not 0 < percent <= 100:
        raise ValueError(f"a canary's share is 1-100 percent, not {percent}")
    client.set_registered_model_tag(name, CANARY_PERCENT_TAG, str(percent))
    client.set_registered_model_alias(name, CANARY, version)


def end_canary(client: MlflowClient, name: str) -> None:
    """No canary: all traffic to the champion (a retry after it is a no-op)."""
    _delete(client, name, CANARY, CANARY_PERCENT_TAG)


def set_shadow(client: MlflowClient, name: str, version: str, sample: float) -> None:
    """Copy `sample` (0-1] of the traffic to `version`; its answers are logged, never returned."""
    if not 0 < sample <= 1:
        raise ValueError(f"a shadow's sample is a share in (0, 1], not {sample}")
    client.set_registered_model_tag(name, SHADOW_SAMPLE_TAG, str(sample))
    client.set_registered_model_alias(name, SHADOW, version)


def end_shadow(client: MlflowClient, name: str) -> None:
    _delete(client, name, SHADOW, SHADOW_SAMPLE_TAG)


def _delete(client: MlflowClient, name: str, alias: str, tag: str) -> None:
    from mlflow.exceptions import MlflowException

    for remove in (lambda: client.delete_registered_model_alias(name, alias),
                   lambda: client.delete_registered_model_tag(name, tag)):  # fmt: skip
        try:
            remove()
        except MlflowException:
            pass  # already gone
