"""The promotion gate: a pure decision over evidence already measured.

A candidate is promoted only when every check passes:

- baseline: it beats the naive model (training prior / mean) by `gate.min_baseline_margin`;
- champion: its metric improves on the champion's by at least `gate.min_improvement`, and
  the paired-bootstrap interval of that gain lies above zero;
- segments: no value of a `gate.segments` column loses more than `gate.segment_tolerance`;
- latency and size: within `gate.max_latency_ms` and `gate.max_model_mb` when set.

The first model (no champion) has nothing to be compared with: baseline, latency and size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from airloop.config import GateConfig
from airloop.evaluation.evidence import Evidence, gain


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    promote: bool
    metric: str
    candidate: float
    baseline: float
    champion: float | None
    champion_version: str | None
    reason: str
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def compare_to_champion(gate: GateConfig, evidence: Evidence) -> Decision:
    """Decide whether the candidate replaces the champion (or becomes the first one)."""
    checks = [_baseline(gate, evidence)]
    if evidence.champion is not None:
        checks += [_champion(gate, evidence), _segments(gate, evidence)]
    checks += _budgets(gate, evidence)
    failed = [check for check in checks if not check.passed]
    if failed:
        reason = "; ".join(check.detail for check in failed)
    elif evidence.champion is None:
        reason = f"first model: {checks[0].detail}"
    else:
        reason = f"{checks[1].detail}; {checks[0].detail}"
    return Decision(
        not failed,
        evidence.metric,
        evidence.candidate,
        evidence.baseline,
        evidence.champion,
        evidence.champion_version,
        reason,
        checks,
    )


def _baseline(gate: GateConfig, e: Evidence) -> Check:
    margin = gain(e.metric, e.candidate, e.baseline)
    if margin < gate.min_baseline_margin:
        return Check(
            "baseline",
            False,
            f"{e.metric} {e.candidate:.4f} does not beat the naive baseline {e.baseline:.4f} "
            f"by the required {gate.min_baseline_margin}",
        )
    return Check("baseline", True, f"{e.metric} {e.candidate:.4f} beats the naive baseline {e.baseline:.4f}")


def _champion(gate: GateConfig, e: Evidence) -> Check:
    assert e.champion is not None
    improvement = gain(e.metric, e.candidate, e.champion)
    versus = f"champion v{e.champion_version} ({e.champion:.4f})"
    if improvement < gate.min_improvement or improvement <= 0:
        return Check(
            "champion",
            False,
            f"{e.metric} {e.candidate:.4f} does not improve on {versus} by more than {gate.min_improvement}",
        )
    if e.gain_interval is not None:
        low, high = e.gain_interval
        interval = f"{gate.confidence:.0%} interval of the gain [{low:+.4f}, {high:+.4f}]"
        if not low > 0:  # also when the interval could not be computed (NaN)
            return Check(
                "champion",
                False,
                f"{e.metric} {e.candidate:.4f} beats {versus} by {improvement:+.4f}, but the "
                f"{interval} includes zero",
            )
        return Check("champion", True, f"{e.metric} {e.candidate:.4f} beats {versus}, {interval}")
    return Check("champion", True, f"{e.metric} {e.candidate:.4f} beats {versus}")


def _segments(gate: GateConfig, e: Evidence) -> Check:
    worse = [s for s in e.segments if gain(e.metric, s.candidate, s.champion) < -gate.segment_tolerance]
    if worse:
        listed = ", ".join(
            f"{s.column}={s.value} {s.champion:.4f} -> {s.candidate:.4f} ({s.rows} rows)" for s in worse
        )
        return Check("segments", False, f"{e.metric} regresses beyond {gate.segment_tolerance} in {listed}")
    return Check(
        "segments", True, f"no segment of {len(e.segments)} regresses beyond {gate.segment_tolerance}"
    )


def _budgets(gate: GateConfig, e: Evidence) -> list[Check]:
    budgets = [
        ("latency", "p95 one-record latency", e.latency_p95_ms, gate.max_latency_ms, "ms"),
        ("size", "model", e.model_mb, gate.max_model_mb, "MB"),
    ]
    checks = []
    for name, what, value, limit, unit in budgets:
        if value is None or limit is None:
            continue
        within = value <= limit
        verdict = "within" if within else "over"
        checks.append(Check(name, within, f"{what} {value:.2f} {unit} {verdict} the {limit} {unit} budget"))
    return checks
