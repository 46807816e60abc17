"""Whether a continuous-training run should train at all, from what triggered it.

A run's triggers: `new_data` (a validated partition), `drift` (data or prediction drift),
`performance_drop` (the champion's metric fell on newly labelled rows), `schedule` (the
retraining cron) and `manual` (the UI, REST, CI). Storms never reach this far: the DAG
allows one active run, Airflow queues one run for every asset event that arrives
meanwhile, and that run's decision takes all of them into account at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from airloop.config import RetrainingConfig

DRIFT, NEW_DATA, MANUAL = "drift", "new_data", "manual"
PERFORMANCE_DROP, SCHEDULE = "performance_drop", "schedule"
# monitor_drift's signals that count as drift (its third, performance_drop, has its own switch).
_DRIFT_SIGNALS = {"data_drift", "prediction_drift"}


@dataclass(frozen=True)
class RetrainVerdict:
    retrain: bool
    reason: str
    # The trigger that decided it (None when not retraining).
    cause: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def triggers_of_event(kind: str, extra: dict[str, Any] | None) -> set[str]:
    """The triggers one asset event stands for.

    `kind` is what the asset means (`new_data` or `drift`); a drift event's `signals` (from
    monitor_drift) say whether it is drift, a performance drop or both. A drift event
    without signals (e.g. posted over REST) counts as drift.
    """
    if kind != DRIFT:
        return {kind}
    signals = set((extra or {}).get("signals") or [])
    triggers = {DRIFT} if signals & _DRIFT_SIGNALS or not signals else set()
    if PERFORMANCE_DROP in signals:
        triggers.add(PERFORMANCE_DROP)
    return triggers


def should_retrain(
    policy: RetrainingConfig,
    triggers: set[str],
    has_champion: bool,
    last_drift_retrain: datetime | None = None,
    now: datetime | None = None,
) -> RetrainVerdict:
    """Decide from the run's triggers and the retraining policy.

    `last_drift_retrain` is when a drift-triggered run last decided to train: drift alone
    does not retrain again within `policy.drift_cooldown_hours` of it.
    """
    if not has_champion:
        return RetrainVerdict(True, "no champion yet: train the first model", "first_model")
    if not triggers:
        return RetrainVerdict(
            False, "no signal since the last decision: an earlier run took them into account"
        )
    if MANUAL in triggers:
        return RetrainVerdict(True, "triggered by a person or CI", MANUAL)
    if SCHEDULE in triggers:
        reason = f"scheduled retraining (retraining.schedule {policy.schedule!r})"
        return RetrainVerdict(True, reason, SCHEDULE)
    if PERFORMANCE_DROP in triggers and policy.on_performance_drop:
        reason = "the champion's metric dropped on newly labelled data; retraining.on_performance_drop is on"
        return RetrainVerdict(True, reason, PERFORMANCE_DROP)
    if NEW_DATA in triggers and policy.on_new_data:
        return RetrainVerdict(True, "new data validated and retraining.on_new_data is on", NEW_DATA)
    if DRIFT in triggers and policy.on_drift:
        cooldown = timedelta(hours=policy.drift_cooldown_hours)
        if last_drift_retrain is not None and cooldown:
            resume = last_drift_retrain + cooldown
            if (now or datetime.now(resume.tzinfo)) < resume:
                return RetrainVerdict(
                    False,
                    f"drift detected, but the last drift-triggered retrain was at "
                    f"{last_drift_retrain.isoformat()}: retraining.drift_cooldown_hours="
                    f"{policy.drift_cooldown_hours} holds drift retrains until {resume.isoformat()}",
                )
        return RetrainVerdict(True, "drift detected and retraining.on_drift is on", DRIFT)
    return RetrainVerdict(
        False,
        f"triggers {sorted(triggers)} do not call for retraining under the policy "
        f"(on_drift={policy.on_drift}, on_new_data={policy.on_new_data}, "
        f"on_performance_drop={policy.on_performance_drop})",
    )
