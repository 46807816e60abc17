"""The rollout steps' decisions: pure functions of the evidence."""

from __future__ import annotations

from airloop.config import RolloutConfig
from airloop.rollout.judge import (
    ADVANCE,
    ROLL_BACK,
    WAIT,
    LiveMetric,
    StepEvidence,
    Traffic,
    judge_canary,
    judge_shadow,
)

ROLLOUT = RolloutConfig(strategy="canary", min_requests=100, bake_minutes=5, max_wait_minutes=30)
HEALTHY = Traffic(requests=1000, errors=1, p95_ms=12.0)


def _canary(minutes: float = 6, canary: Traffic = HEALTHY, live: LiveMetric | None = None, **rollout) -> str:
    config = ROLLOUT.model_copy(update=rollout)
    verdict = judge_canary(config, StepEvidence(minutes, canary, HEALTHY, live))
    return verdict.action


def test_a_healthy_canary_advances_once_baked_with_enough_requests() -> None:
    assert _canary() == ADVANCE
    assert _canary(minutes=2) == WAIT
    assert _canary(canary=Traffic(40, 0, 12.0)) == WAIT


def test_a_canary_that_never_gets_enough_traffic_is_rolled_back_at_the_deadline() -> None:
    verdict = judge_canary(ROLLOUT, StepEvidence(31, Traffic(40, 0, 12.0), HEALTHY))
    assert verdict.action == ROLL_BACK and "40 of 100 requests" in verdict.reason


def test_errors_roll_back_at_once_and_slowness_once_baked() -> None:
    erring = Traffic(requests=60, errors=6, p95_ms=12.0)
    verdict = judge_canary(ROLLOUT, StepEvidence(1, erring, HEALTHY))
    assert verdict.action == ROLL_BACK and "5xx share 10.00%" in verdict.reason
    slow = Traffic(requests=1000, errors=0, p95_ms=40.0)
    assert _canary(minutes=2, canary=slow) == WAIT
    assert _canary(canary=slow) == ROLL_BACK
    # A few milliseconds more than a fast champion is HTTP's noise, not a regression.
    assert _canary(canary=Traffic(1000, 0, 16.0)) == ADVANCE


def test_with_labels_a_canary_worse_with_the_gates_confidence_is_rolled_back() -> None:
    worse = LiveMetric("roc_auc", 300, 0.61, 0.88, (-0.31, -0.22))
    level = LiveMetric("roc_auc", 300, 0.87, 0.88, (-0.04, 0.02))
    assert _canary(live=worse, min_labelled=200) == ROLL_BACK
    assert _canary(live=level, min_labelled=200) == ADVANCE
    assert _canary(live=LiveMetric("roc_auc", 50, 0.6, 0.9, None), min_labelled=200) == WAIT
    # Without min_labelled the live metric is not a check.
    assert _canary(live=worse) == ADVANCE


def test_a_shadow_is_judged_by_the_gate_on_its_labelled_pairs() -> None:
    shadow = ROLLOUT.model_copy(update={"strategy": "shadow", "min_labelled": 200})
    passed = {"rows": 400, "passed": True, "reason": "beats the champion"}
    failed = {"rows": 400, "passed": False, "reason": "does not beat the champion"}
    assert judge_shadow(shadow, 6, 500, passed).action == ADVANCE
    assert judge_shadow(shadow, 6, 500, failed).action == ROLL_BACK
    assert judge_shadow(shadow, 6, 500, {"rows": 100, "passed": None}).action == WAIT
    assert judge_shadow(shadow, 6, 50, passed).action == WAIT
    assert judge_shadow(shadow, 31, 50, passed).action == ROLL_BACK
    unlabelled = ROLLOUT.model_copy(update={"strategy": "shadow"})
    assert judge_shadow(unlabelled, 6, 500, {"rows": 0, "passed": None}).action == ADVANCE
