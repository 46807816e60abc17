"""A shadow rollout's evidence: how a challenger answered live traffic beside the champion.

A shadowed challenger answers a (sampled) copy of live requests under the same inference
ids; its answers are logged with role "shadow" and never returned. Per inference id both
answered (`shadow_pairs`), the report compares:

- agreement: the share of equal predicted classes (classification), or the mean absolute
  difference and correlation of the predicted values (regression);
- scores: quantiles of each model's score (regression: the value) and the two-sample
  Kolmogorov-Smirnov statistic between them;
- latency: p50 / p95 of each one's logged latency_ms (the time of the batch a record was in);
- once labels are joined to the champion's answers (`labelled_predictions`, keyed by
  inference id), each model's gate metric on the labelled pairs, the paired-bootstrap
  interval of the challenger's gain, and the promotion gate's own decision on that evidence
  (`compare_to_champion`; the naive baseline is the labelled pairs' own prior or mean, the
  segments `gate.segments` the log holds). Fewer labelled pairs than `drift.min_rows`, or a
  metric that cannot be computed: no verdict yet, with the reason.

Written as JSON and Markdown to `paths.shadow_report(challenger, champion)`.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airloop.config import AirloopConfig, Label
from airloop.data.labels import labelled_mask, labels
from airloop.evaluation.evidence import Evidence, paired_bootstrap_gain, segment_scores
from airloop.evaluation.gate import compare_to_champion
from airloop.evaluation.metrics import baseline_scores, metric_value
from airloop.paths import StatePaths
from airloop.production.labels_join import labelled_predictions
from airloop.production.live_performance import labelled_metric, logged_scores
from airloop.production.predictions import shadow_pairs

SIDES = ("champion", "challenger")
ANSWER_COLUMNS = ("prediction", "score", "probabilities", "latency_ms")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def shadow_report(
    config: AirloopConfig,
    paths: StatePaths,
    champion_version: str,
    challenger_version: str,
    since: datetime | None = None,
) -> dict[str, Any]:
    """Compare the champion's served answers with the challenger's shadow answers to the
    same requests since `since` (None: the whole log), write the report (JSON and Markdown)
    and return it with its `report_path` (see the module docstring for what it holds)."""
    pairs = shadow_pairs(config, paths, str(champion_version), str(challenger_version), since)
    classes = logged_class_keys(pairs) if config.task == "multiclass_classification" else None
    labelled = labelled_pairs(config, paths, pairs, str(champion_version), classes)
    report = {
        "model": config.name,
        "champion_version": str(champion_version),
        "challenger_version": str(challenger_version),
        "since": since.isoformat() if since else None,
        "generated_at": datetime.now(UTC).isoformat(),
        "pairs": len(pairs),
        "agreement": prediction_agreement(
            config.task, pairs["champion_prediction"], pairs["challenger_prediction"]
        ),
        "scores": score_distributions(config.task, pairs),
        "latency_ms": {side: p50_p95(pairs[f"{side}_latency_ms"]) for side in SIDES},
        "live_gate": live_gate(config, labelled, str(champion_version), classes),
    }
    path = paths.shadow_report(str(challenger_version), str(champion_version))
    write_shadow_report(path, report)
    return {**report, "report_path": str(path)}


def prediction_agreement(task: str, champion: pd.Series, challenger: pd.Series) -> dict[str, Any]:
    """Classification: {equal_share} of equal predicted classes; regression: {mean_abs_diff,
    correlation} of the values (None where undefined: no pairs, or a constant side)."""
    if task != "regression":
        equal = champion.astype(str).to_numpy() == challenger.astype(str).to_numpy()
        return {"equal_share": float(equal.mean()) if len(equal) else None}
    a, b = champion.to_numpy(dtype="float64"), challenger.to_numpy(dtype="float64")
    constant = len(a) < 2 or np.std(a) == 0 or np.std(b) == 0
    return {
        "mean_abs_diff": float(np.mean(np.abs(a - b))) if len(a) else None,
        "correlation": None if constant else float(np.corrcoef(a, b)[0, 1]),
    }


def score_distributions(task: str, pairs: pd.DataFrame) -> dict[str, Any]:
    """Each side's score quantiles (regression: the predicted values) and the two-sample KS
    statistic and p-value between the two (None without scores on both sides)."""
    from scipy.stats import ks_2samp

    column = "prediction" if task == "regression" else "score"
    values = {side: pairs[f"{side}_{column}"].dropna().to_numpy(dtype="float64") for side in SIDES}
    found: dict[str, Any] = {side: quantiles(values[side]) for side in SIDES}
    if not all(len(v) for v in values.values()):
        return {**found, "ks_statistic": None, "ks_pvalue": None}
    ks = ks_2samp(values["champion"], values["challenger"])
    return {**found, "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue)}


def quantiles(values: np.ndarray) -> dict[str, float | None]:
    """{p05, p25, p50, p75, p95} of `values` (None each when there are none)."""
    names = [f"p{round(q * 100):02d}" for q in QUANTILES]
    if not len(values):
        return dict.fromkeys(names)
    return {name: float(v) for name, v in zip(names, np.quantile(values, QUANTILES), strict=True)}


def p50_p95(latency_ms: pd.Series) -> dict[str, float | None]:
    values = latency_ms.dropna().to_numpy(dtype="float64")
    if not len(values):
        return {"p50": None, "p95": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": float(p50), "p95": float(p95)}


def logged_class_keys(pairs: pd.DataFrame) -> list[Label]:
    """A multiclass log's classes, as the keys of both sides' logged probabilities (sorted):
    the two models are scored in one class order, a class one of them lacks at 0."""
    keys: set[str] = set()
    for side in SIDES:
        for text in pairs[f"{side}_probabilities"].dropna():
            keys.update(json.loads(text))
    return sorted(keys)


def labelled_pairs(
    config: AirloopConfig,
    paths: StatePaths,
    pairs: pd.DataFrame,
    champion_version: str,
    classes: list[Label] | None,
) -> pd.DataFrame:
    """The pairs whose labels have been joined (to the champion's served answer), with the
    target column; the labels join never reads shadow rows, so the label is the caller's."""
    target = config.dataset.target.column
    joined = labelled_predictions(paths)
    if not len(joined) or not len(pairs):
        return pairs.iloc[0:0].assign(**{target: pd.Series(dtype=object)})
    served = joined["role"].eq("served") & joined["model_version"].astype(str).eq(champion_version)
    truth = joined.loc[served, ["inference_id", target]]
    rows = pairs.drop(columns=[target], errors="ignore").merge(truth, on="inference_id", how="inner")
    return rows[labelled_mask(rows, config, classes)].reset_index(drop=True)


def live_gate(
    config: AirloopConfig, rows: pd.DataFrame, champion_version: str, classes: list[Label] | None
) -> dict[str, Any]:
    """Both models' gate metric on the labelled pairs and, with enough of them, the gate's
    decision on the challenger: {rows, metric, champion, challenger, gain_interval, passed,
    reason, decision}; passed and decision are None while there is no verdict yet."""
    metric = config.gate.metric
    values = {side: labelled_metric(config, answers(rows, side), classes)[1] for side in SIDES}
    found: dict[str, Any] = {"rows": len(rows), "metric": metric, **values, "gain_interval": None}
    waiting = no_verdict_yet(config, len(rows), values)
    if waiting is not None:
        return {**found, "passed": None, "reason": waiting, "decision": None}
    champion, challenger = values["champion"], values["challenger"]
    assert champion is not None and challenger is not None  # (no_verdict_yet saw to it)
    evidence = live_evidence(config, rows, champion_version, champion, challenger, classes)
    decision = compare_to_champion(config.gate, evidence)
    interval = None
    if evidence.gain_interval is not None:  # (NaN: too many resamples of one class)
        interval = [float(v) if np.isfinite(v) else None for v in evidence.gain_interval]
    return {
        **found,
        "gain_interval": interval,
        "passed": decision.promote,
        "reason": decision.reason,
        "decision": decision.to_dict(),
    }


def no_verdict_yet(config: AirloopConfig, rows: int, values: dict[str, float | None]) -> str | None:
    """Why the labelled pairs cannot be judged yet (too few, or a metric undefined), or None."""
    if not rows:
        return "no labels joined to the pairs yet"
    if rows < config.drift.min_rows:
        return f"{rows} labelled pairs, fewer than drift.min_rows={config.drift.min_rows}"
    if None in values.values():
        return f"{config.gate.metric} cannot be computed on the {rows} labelled pairs"
    return None


def live_evidence(
    config: AirloopConfig,
    rows: pd.DataFrame,
    champion_version: str,
    champion: float,
    challenger: float,
    classes: list[Label] | None,
) -> Evidence:
    """The gate's evidence measured on labelled live pairs: the challenger as the candidate,
    the paired-bootstrap gain interval with `gate`'s settings, the segments the log holds."""
    gate, metric = config.gate, config.gate.metric
    truth = labels(rows, config, classes).to_numpy()
    scores = {side: logged_scores(answers(rows, side), config, classes) for side in SIDES}
    columns = tuple(c for c in gate.segments if c in rows.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (sklearn on a resample or segment of one class)
        interval = None
        if gate.bootstrap_resamples:
            interval = paired_bootstrap_gain(
                metric, truth, scores["challenger"], scores["champion"],
                gate.bootstrap_resamples, gate.confidence, config.model.seed,
            )  # fmt: skip
        segments = segment_scores(
            metric, rows, truth, scores["challenger"], scores["champion"], columns, gate.min_segment_rows
        )
    baseline = naive_metric(config, truth, classes)
    return Evidence(metric, challenger, baseline, champion, champion_version, interval, segments)


def naive_metric(config: AirloopConfig, truth: np.ndarray, classes: list[Label] | None) -> float:
    """The gate metric of the naive model (the labelled rows' class priors or mean)."""
    multiclass = len(classes) if config.task == "multiclass_classification" and classes else None
    scores = baseline_scores(truth, len(truth), multiclass)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(metric_value(config.gate.metric, truth, scores))


def answers(rows: pd.DataFrame, side: str) -> pd.DataFrame:
    """`rows` with one side's answer columns under the log's own names (prediction, score...)."""
    return rows.rename(columns={f"{side}_{c}": c for c in ANSWER_COLUMNS})


def write_shadow_report(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2, default=str))
    path.with_suffix(".md").write_text(shadow_markdown(report))


def shadow_markdown(report: dict[str, Any]) -> str:
    gate, scores = report["live_gate"], report["scores"]
    verdict = {True: "CHALLENGER PASSES", False: "CHALLENGER FAILS", None: "NO VERDICT YET"}[gate["passed"]]
    lines = [
        f"# Shadow rollout of {report['model']}: v{report['challenger_version']} "
        f"beside champion v{report['champion_version']}: {verdict}",
        "",
        f"- Pairs (requests both answered): {report['pairs']} since {report['since'] or 'the log began'}",
        f"- Agreement: {_pairs_of(report['agreement'])}",
        f"- Scores: KS statistic {_number(scores['ks_statistic'])} (p {_number(scores['ks_pvalue'])})",
        f"- Reason: {gate['reason']}",
        "",
        f"| model | {' | '.join(scores['champion'])} | p50 ms | p95 ms | {gate['metric']} |",
        f"|---|{'---:|' * (len(scores['champion']) + 3)}",
    ]
    for side in SIDES:
        quantile = " | ".join(_number(v) for v in scores[side].values())
        latency = report["latency_ms"][side]
        lines.append(
            f"| {side} v{report[f'{side}_version']} | {quantile} | {_number(latency['p50'])} "
            f"| {_number(latency['p95'])} | {_number(gate[side])} |"
        )
    lines += ["", f"Labelled pairs: {gate['rows']}"]
    if gate["gain_interval"] and None not in gate["gain_interval"]:
        low, high = gate["gain_interval"]
        lines.append(f"Paired bootstrap interval of the challenger's gain: [{low:+.4f}, {high:+.4f}]")
    if gate["decision"]:
        lines += ["", "| check | passed | detail |", "|---|---|---|"]
        lines += [
            f"| {c['name']} | {'yes' if c['passed'] else 'no'} | {c['detail']} |"
            for c in gate["decision"]["checks"]
        ]
    return "\n".join(lines) + "\n"


def _pairs_of(values: dict[str, Any]) -> str:
    return ", ".join(f"{name} {_number(value)}" for name, value in values.items())


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
