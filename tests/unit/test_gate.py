"""The promotion gate and the retraining policy: pure decisions."""

from __future__ import annotations

from airloop.config import GateConfig, RetrainingConfig
from airloop.evaluation.gate import compare_to_champion
from airloop.training.policy import should_retrain

AUC_GATE = GateConfig(metric="roc_auc", min_improvement=0.0, min_baseline_margin=0.02)


def test_first_model_only_has_to_beat_the_baseline() -> None:
    decision = compare_to_champion(AUC_GATE, {"roc_auc": 0.7}, {"roc_auc": 0.5}, None)
    assert decision.promote and decision.champion is None
    assert "first model" in decision.reason


def test_a_model_no_better_than_the_baseline_is_refused() -> None:
    decision = compare_to_champion(AUC_GATE, {"roc_auc": 0.51}, {"roc_auc": 0.5}, None)
    assert not decision.promote
    assert "naive baseline" in decision.reason and "0.5100" in decision.reason


def test_candidate_must_beat_the_champion() -> None:
    worse = compare_to_champion(AUC_GATE, {"roc_auc": 0.80}, {"roc_auc": 0.5}, {"roc_auc": 0.82}, "3")
    tie = compare_to_champion(AUC_GATE, {"roc_auc": 0.82}, {"roc_auc": 0.5}, {"roc_auc": 0.82}, "3")
    better = compare_to_champion(AUC_GATE, {"roc_auc": 0.85}, {"roc_auc": 0.5}, {"roc_auc": 0.82}, "3")
    assert (worse.promote, tie.promote, better.promote) == (False, False, True)
    assert "champion v3" in worse.reason


def test_margin_and_direction_for_lower_is_better_metrics() -> None:
    gate = GateConfig(metric="log_loss", min_improvement=0.01, min_baseline_margin=0.0)
    small = compare_to_champion(gate, {"log_loss": 0.395}, {"log_loss": 0.6}, {"log_loss": 0.40}, "1")
    enough = compare_to_champion(gate, {"log_loss": 0.38}, {"log_loss": 0.6}, {"log_loss": 0.40}, "1")
    assert not small.promote and enough.promote


def test_retraining_policy() -> None:
    drift_only = RetrainingConfig(on_new_data=False, on_drift=True)
    assert should_retrain(drift_only, {"new_data"}, has_champion=False).retrain
    assert not should_retrain(drift_only, {"new_data"}, has_champion=True).retrain
    assert should_retrain(drift_only, {"drift", "new_data"}, has_champion=True).retrain
    assert should_retrain(drift_only, {"manual"}, has_champion=True).retrain
    never_on_drift = RetrainingConfig(on_new_data=True, on_drift=False)
    assert not should_retrain(never_on_drift, {"drift"}, has_champion=True).retrain
    assert should_retrain(never_on_drift, {"new_data"}, has_champion=True).retrain
