"""The promotion gate and the retraining policy: pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sklearn.metrics import roc_auc_score

from airloop.config import GateConfig, RetrainingConfig
from airloop.evaluation.evidence import Evidence, SegmentScore, paired_bootstrap_gain, weighted_metric
from airloop.evaluation.gate import compare_to_champion
from airloop.training.policy import should_retrain, triggers_of_event

AUC_GATE = GateConfig(metric="roc_auc", min_improvement=0.0, min_baseline_margin=0.02)


def decide(gate, candidate, baseline, champion=None, version=None, **evidence):
    metric = gate.metric
    return compare_to_champion(gate, Evidence(metric, candidate, baseline, champion, version, **evidence))


def test_first_model_only_has_to_beat_the_baseline() -> None:
    decision = decide(AUC_GATE, 0.7, 0.5)
    assert decision.promote and decision.champion is None
    assert "first model" in decision.reason
    assert [c.name for c in decision.checks] == ["baseline"]


def test_a_model_no_better_than_the_baseline_is_refused() -> None:
    decision = decide(AUC_GATE, 0.51, 0.5)
    assert not decision.promote
    assert "naive baseline" in decision.reason and "0.5100" in decision.reason


def test_candidate_must_beat_the_champion() -> None:
    worse = decide(AUC_GATE, 0.80, 0.5, 0.82, "3")
    tie = decide(AUC_GATE, 0.82, 0.5, 0.82, "3")
    better = decide(AUC_GATE, 0.85, 0.5, 0.82, "3")
    assert (worse.promote, tie.promote, better.promote) == (False, False, True)
    assert "champion v3" in worse.reason


def test_margin_and_direction_for_lower_is_better_metrics() -> None:
    gate = GateConfig(metric="log_loss", min_improvement=0.01, min_baseline_margin=0.0)
    assert not decide(gate, 0.395, 0.6, 0.40, "1").promote
    assert decide(gate, 0.38, 0.6, 0.40, "1").promote


def test_an_improvement_whose_interval_includes_zero_is_refused() -> None:
    unsure = decide(AUC_GATE, 0.85, 0.5, 0.82, "3", gain_interval=(-0.004, 0.05))
    sure = decide(AUC_GATE, 0.85, 0.5, 0.82, "3", gain_interval=(0.01, 0.05))
    assert not unsure.promote and "interval of the gain [-0.0040, +0.0500] includes zero" in unsure.reason
    assert sure.promote and "[+0.0100, +0.0500]" in sure.reason


def test_an_interval_that_could_not_be_computed_does_not_promote() -> None:
    nan = float("nan")
    decision = decide(AUC_GATE, 0.85, 0.5, 0.82, "3", gain_interval=(nan, nan))
    assert not decision.promote and "includes zero" in decision.reason
    y = np.zeros(50, dtype=int)  # one class: no resample has a ROC AUC
    scores = np.linspace(0, 1, 50)
    low, high = paired_bootstrap_gain("roc_auc", y, scores, scores[::-1].copy(), 50, 0.95, seed=0)
    assert np.isnan(low) and np.isnan(high)


def test_a_segment_that_regresses_beyond_the_tolerance_blocks_promotion() -> None:
    gate = GateConfig(metric="roc_auc", segments=("origin",), segment_tolerance=0.02)
    segments = [
        SegmentScore("origin", "EWR", 900, candidate=0.86, champion=0.84),
        SegmentScore("origin", "JFK", 800, candidate=0.79, champion=0.83),
    ]
    decision = decide(gate, 0.85, 0.5, 0.82, "3", segments=segments)
    assert not decision.promote
    assert "origin=JFK 0.8300 -> 0.7900 (800 rows)" in decision.reason and "EWR" not in decision.reason
    slight = [SegmentScore("origin", "JFK", 800, candidate=0.82, champion=0.83)]
    assert decide(gate, 0.85, 0.5, 0.82, "3", segments=slight).promote


def test_latency_and_size_budgets_apply_to_every_model() -> None:
    gate = GateConfig(metric="roc_auc", max_latency_ms=5, max_model_mb=10)
    slow = decide(gate, 0.7, 0.5, latency_p95_ms=7.5, model_mb=3)
    big = decide(gate, 0.7, 0.5, latency_p95_ms=1.0, model_mb=12.5)
    assert not slow.promote and "p95 one-record latency 7.50 ms over the 5.0 ms budget" in slow.reason
    assert not big.promote and "model 12.50 MB over the 10.0 MB budget" in big.reason
    assert decide(gate, 0.7, 0.5, latency_p95_ms=1.0, model_mb=3).promote


def test_paired_bootstrap_separates_a_better_model_from_an_equal_one() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    champion = y * 0.6 + rng.normal(0, 0.5, 4000)
    better = y * 0.9 + rng.normal(0, 0.5, 4000)
    low, high = paired_bootstrap_gain("roc_auc", y, better, champion, 300, 0.95, seed=1)
    assert 0 < low < high
    same_low, same_high = paired_bootstrap_gain("roc_auc", y, champion, champion.copy(), 300, 0.95, seed=1)
    assert same_low == same_high == 0.0
    # The bootstrap's fast AUC is the sample-weighted AUC.
    weights = rng.integers(0, 3, 4000).astype(float)
    fast = weighted_metric("roc_auc", y, better)(weights)
    assert abs(fast - roc_auc_score(y, better, sample_weight=weights)) < 1e-12
    log_low, _ = paired_bootstrap_gain(
        "log_loss", y, 1 / (1 + np.exp(-better)), 1 / (1 + np.exp(-champion)), 100, 0.9, 2
    )
    assert log_low > 0


def test_retraining_policy() -> None:
    drift_only = RetrainingConfig(on_new_data=False, on_drift=True)
    assert should_retrain(drift_only, {"new_data"}, has_champion=False).retrain
    assert not should_retrain(drift_only, {"new_data"}, has_champion=True).retrain
    assert should_retrain(drift_only, {"drift", "new_data"}, has_champion=True).retrain
    assert should_retrain(drift_only, {"manual"}, has_champion=True).retrain
    never_on_drift = RetrainingConfig(on_new_data=True, on_drift=False)
    assert not should_retrain(never_on_drift, {"drift"}, has_champion=True).retrain
    assert should_retrain(never_on_drift, {"new_data"}, has_champion=True).retrain
    # A run queued by signals that an earlier run's decision already took into account.
    nothing = should_retrain(never_on_drift, set(), has_champion=True)
    assert not nothing.retrain and "no signal since the last decision" in nothing.reason
    assert should_retrain(never_on_drift, set(), has_champion=False).retrain


def test_schedule_performance_drop_and_drift_cooldown() -> None:
    policy = RetrainingConfig(on_performance_drop=True, schedule="0 3 * * 1", drift_cooldown_hours=6)
    last = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    inside, after = last + timedelta(hours=5), last + timedelta(hours=7)
    held = should_retrain(policy, {"drift"}, True, last_drift_retrain=last, now=inside)
    assert not held.retrain and held.cause is None
    assert "drift_cooldown_hours=6.0 holds drift retrains until 2026-11-22T18:00:00+00:00" in held.reason
    assert should_retrain(policy, {"drift"}, True, last_drift_retrain=last, now=after).cause == "drift"
    assert should_retrain(policy, {"drift"}, True).cause == "drift"  # never retrained on drift yet
    # The cooldown holds drift alone: a performance drop, the schedule, a person still retrain.
    for trigger in ("performance_drop", "schedule", "manual"):
        verdict = should_retrain(policy, {"drift", trigger}, True, last_drift_retrain=last, now=inside)
        assert verdict.retrain and verdict.cause == trigger
    no_drop = RetrainingConfig(on_performance_drop=False, on_drift=False)
    refused = should_retrain(no_drop, {"performance_drop"}, True)
    assert not refused.retrain and "on_performance_drop=False" in refused.reason


def test_what_an_asset_event_triggers() -> None:
    assert triggers_of_event("new_data", {"anything": 1}) == {"new_data"}
    assert triggers_of_event("drift", {"signals": ["data_drift"]}) == {"drift"}
    assert triggers_of_event("drift", {"signals": ["prediction_drift", "performance_drop"]}) == {
        "drift",
        "performance_drop",
    }
    assert triggers_of_event("drift", {"signals": ["performance_drop"]}) == {"performance_drop"}
    assert triggers_of_event("drift", None) == {"drift"}  # e.g. posted over REST without a summary
