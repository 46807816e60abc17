"""The promotion gate: a pure decision over numbers already measured.

The candidate is promoted only if it beats the naive baseline by the configured margin
and, when a champion exists, the champion by the configured improvement, both measured on
the same frozen evaluation set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from airloop.config import GateConfig
from airloop.evaluation.metrics import HIGHER_IS_BETTER


@dataclass(frozen=True)
class Decision:
    promote: bool
    metric: str
    candidate: float
    baseline: float
    champion: float | None
    champion_version: str | None
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def _gain(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old`, positive when better, whatever the direction."""
    return new - old if HIGHER_IS_BETTER[metric] else old - new


def compare_to_champion(
    gate: GateConfig,
    candidate: dict[str, float],
    baseline: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None = None,
) -> Decision:
    """Decide whether the candidate replaces the champion (or becomes the first one)."""
    metric = gate.metric
    cand, base = candidate[metric], baseline[metric]
    champ = champion[metric] if champion is not None else None

    def decide(promote: bool, reason: str) -> Decision:
        return Decision(promote, metric, cand, base, champ, champion_version, reason)

    over_baseline = _gain(metric, cand, base)
    if over_baseline < gate.min_baseline_margin:
        return decide(
            False,
            f"{metric} {cand:.4f} does not beat the naive baseline {base:.4f} "
            f"by the required {gate.min_baseline_margin}",
        )
    if champ is None:
        return decide(True, f"first model: {metric} {cand:.4f} beats the naive baseline {base:.4f}")
    over_champion = _gain(metric, cand, champ)
    if over_champion < gate.min_improvement or over_champion <= 0:
        return decide(
            False,
            f"{metric} {cand:.4f} does not improve on champion v{champion_version} "
            f"({champ:.4f}) by more than {gate.min_improvement}",
        )
    return decide(
        True,
        f"{metric} {cand:.4f} beats champion v{champion_version} ({champ:.4f}) "
        f"and the naive baseline ({base:.4f})",
    )
