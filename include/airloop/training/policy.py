"""Whether a continuous-training run should train at all, from what triggered it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from airloop.config import RetrainingConfig

DRIFT, NEW_DATA, MANUAL = "drift", "new_data", "manual"


@dataclass(frozen=True)
class RetrainVerdict:
    retrain: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def should_retrain(policy: RetrainingConfig, triggers: set[str], has_champion: bool) -> RetrainVerdict:
    """Decide from the run's triggers (drift / new_data / manual) and the retraining policy."""
    if not has_champion:
        return RetrainVerdict(True, "no champion yet: train the first model")
    if MANUAL in triggers:
        return RetrainVerdict(True, "triggered by a person or CI")
    if DRIFT in triggers and policy.on_drift:
        return RetrainVerdict(True, "drift detected and retraining.on_drift is on")
    if NEW_DATA in triggers and policy.on_new_data:
        return RetrainVerdict(True, "new data validated and retraining.on_new_data is on")
    return RetrainVerdict(
        False,
        f"triggers {sorted(triggers)} do not call for retraining under "
        f"the policy (on_drift={policy.on_drift}, on_new_data={policy.on_new_data})",
    )
