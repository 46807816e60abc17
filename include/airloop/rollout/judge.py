"""The decision of one rollout step: wait, advance, or roll back (pure: evidence in, verdict out).

A canary step is judged once it has baked (`bake_minutes`) and carried `min_requests`
requests (and `min_labelled` labelled answers): its 5xx share against the champion's, its
p95 latency against the champion's, and, with labels, the gate's metric on each side's own
labelled answers with a bootstrap interval of the difference. A canary that errs is rolled
back as soon as it has carried enough requests to tell, without waiting for the bake. A
step still short of its numbers after `max_wait_minutes` is rolled back: nothing showed it
safe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from airloop.config import RolloutConfig

WAIT, ADVANCE, ROLL_BACK = "wait", "advance", "roll_back"
# Requests a canary must have answered before its errors alone may roll it back early.
EARLY_ERROR_REQUESTS = 50
# HTTP adds milliseconds of its own: a p95 within this of the champion's always passes.
LATENCY_SLACK_MS = 5.0


@dataclass(frozen=True)
class Traffic:
    """One version's requests over the step: how many, how many 5xx, their p95 latency."""

    requests: float
    errors: float
    p95_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class LiveMetric:
    """The gate metric on each side's own labelled answers over the step, and the interval
    of the canary's gain (positive: better than the champion)."""

    metric: str
    labelled: int
    canary: float | None
    champion: float | None
    gain_interval: tuple[float, float] | None


@dataclass(frozen=True)
class StepEvidence:
    minutes: float
    canary: Traffic
    champion: Traffic
    live: LiveMetric | None = None


@dataclass(frozen=True)
class Verdict:
    action: str
    reason: str
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_canary(rollout: RolloutConfig, evidence: StepEvidence) -> Verdict:
    canary, champion = evidence.canary, evidence.champion
    errors = _errors(rollout, canary, champion)
    if not errors["passed"] and canary.requests >= EARLY_ERROR_REQUESTS:
        return Verdict(ROLL_BACK, errors["detail"], [errors])
    missing = _missing(rollout, evidence)
    if missing:
        if evidence.minutes >= rollout.max_wait_minutes:
            return Verdict(ROLL_BACK, f"after {evidence.minutes:.1f} min still {missing}", [])
        return Verdict(WAIT, missing, [])
    checks = [errors, _latency(rollout, canary, champion)]
    if rollout.min_labelled and evidence.live is not None:
        checks.append(_live_metric(evidence.live))
    failed = [c for c in checks if not c["passed"]]
    if failed:
        return Verdict(ROLL_BACK, "; ".join(c["detail"] for c in failed), checks)
    return Verdict(ADVANCE, "; ".join(c["detail"] for c in checks), checks)


def _missing(rollout: RolloutConfig, evidence: StepEvidence) -> str | None:
    """What the step still lacks before it may be judged, or None."""
    lacking = []
    if evidence.minutes < rollout.bake_minutes:
        lacking.append(f"baking ({evidence.minutes:.1f} of {rollout.bake_minutes:g} min)")
    if evidence.canary.requests < rollout.min_requests:
        lacking.append(f"{evidence.canary.requests:.0f} of {rollout.min_requests} requests")
    labelled = evidence.live.labelled if evidence.live else 0
    if labelled < rollout.min_labelled:
        lacking.append(f"{labelled} of {rollout.min_labelled} labelled answers")
    return ", ".join(lacking) or None


def _check(name: str, passed: bool, detail: str, **numbers: Any) -> dict[str, Any]:
    return {"check": name, "passed": passed, "detail": detail, **numbers}


def _errors(rollout: RolloutConfig, canary: Traffic, champion: Traffic) -> dict[str, Any]:
    limit = champion.error_rate + rollout.max_error_rate_increase
    passed = canary.error_rate <= limit
    detail = (
        f"5xx share {canary.error_rate:.2%} vs the champion's {champion.error_rate:.2%} (at most {limit:.2%})"
    )
    return _check("error_rate", passed, detail, canary=canary.error_rate, champion=champion.error_rate)


def _latency(rollout: RolloutConfig, canary: Traffic, champion: Traffic) -> dict[str, Any]:
    if canary.p95_ms is None or champion.p95_ms is None:
        return _check("latency", True, "p95 latency not measured on both sides")
    limit = max(rollout.max_latency_factor * champion.p95_ms, champion.p95_ms + LATENCY_SLACK_MS)
    passed = canary.p95_ms <= limit
    detail = f"p95 {canary.p95_ms:.1f} ms vs the champion's {champion.p95_ms:.1f} ms (at most {limit:.1f})"
    return _check("latency", passed, detail, canary=canary.p95_ms, champion=champion.p95_ms)


def _live_metric(live: LiveMetric) -> dict[str, Any]:
    """Rolled back only when the canary is worse with the gate's confidence: the whole
    interval of its gain lies below zero."""
    if live.canary is None or live.champion is None or live.gain_interval is None:
        return _check("live_metric", True, f"live {live.metric} not measurable on both sides yet")
    low, high = live.gain_interval
    passed = not high < 0
    detail = (
        f"live {live.metric} {live.canary:.4f} vs the champion's {live.champion:.4f} on "
        f"{live.labelled} labelled answers, gain interval [{low:+.4f}, {high:+.4f}]"
    )
    numbers = {"canary": live.canary, "champion": live.champion, "interval": [low, high]}
    return _check("live_metric", passed, detail, **numbers)


def judge_shadow(rollout: RolloutConfig, minutes: float, pairs: int, live_gate: dict[str, Any]) -> Verdict:
    """A shadow is judged once it has baked and answered `min_requests` of the champion's
    requests; with `min_labelled`, by the gate's paired bootstrap on the labelled pairs (the
    challenger must pass the gate as at promotion), else on having answered them at all."""
    labelled = int(live_gate.get("rows") or 0)
    lacking = []
    if minutes < rollout.bake_minutes:
        lacking.append(f"baking ({minutes:.1f} of {rollout.bake_minutes:g} min)")
    if pairs < rollout.min_requests:
        lacking.append(f"{pairs} of {rollout.min_requests} paired answers")
    if labelled < rollout.min_labelled:
        lacking.append(f"{labelled} of {rollout.min_labelled} labelled pairs")
    if rollout.min_labelled and not lacking and live_gate.get("passed") is None:
        lacking.append(f"no verdict on the labelled pairs yet ({live_gate.get('reason')})")
    if lacking:
        if minutes >= rollout.max_wait_minutes:
            return Verdict(ROLL_BACK, f"after {minutes:.1f} min still {', '.join(lacking)}")
        return Verdict(WAIT, ", ".join(lacking))
    check = _check("live_gate", live_gate.get("passed") is not False, str(live_gate.get("reason") or ""))
    if not rollout.min_labelled:
        return Verdict(ADVANCE, f"answered {pairs} of the champion's requests alongside it", [check])
    on = f"the gate on {labelled} labelled pairs: {live_gate['reason']}"
    if live_gate["passed"]:
        return Verdict(ADVANCE, f"passes {on}", [check])
    return Verdict(ROLL_BACK, f"fails {on}", [check])
