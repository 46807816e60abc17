"""What a rollout step is judged on, measured: each version's requests, 5xx and p95 latency
over the step (from the serving Prometheus, which scrapes every server), and the gate's
metric on each version's own labelled answers since the step began (the labels joined to
the prediction log)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from airloop.config import AirloopConfig
from airloop.rollout.judge import LiveMetric, Traffic

# A rate needs two scrapes (every 5 s) inside its window.
MIN_WINDOW_SECONDS = 15
# The window reaches this far back before the step began: a canary's counters were last
# scraped at zero up to one scrape before it, and a burst at the start must count.
SCRAPE_SLACK_SECONDS = 10


class NoPrometheus(RuntimeError):
    """No serving Prometheus: a canary's traffic cannot be measured."""


def version_traffic(prometheus: str, model: str, version: str, seconds: float) -> Traffic:
    """`version`'s scoring requests of `model` (the scrape's model label: the config name)
    over the last `seconds` (and the scrape before them)."""
    from airloop.ops.prometheus import query_value

    window = f"{max(int(seconds) + SCRAPE_SLACK_SECONDS, MIN_WINDOW_SECONDS)}s"
    chosen = f'model="{model}",version="{version}",route=~"predict|predict_one"'
    failed = f'{chosen},code=~"5.."'
    requests = query_value(prometheus, f"sum(increase(airloop_requests_total{{{chosen}}}[{window}]))")
    errors = query_value(prometheus, f"sum(increase(airloop_requests_total{{{failed}}}[{window}]))")
    p95 = query_value(
        prometheus,
        f"histogram_quantile(0.95, sum by (le) "
        f"(rate(airloop_request_latency_seconds_bucket{{{chosen}}}[{window}])))",
    )
    return Traffic(requests or 0.0, errors or 0.0, None if p95 is None else 1000 * p95)


def live_metric(
    config: AirloopConfig, labelled: pd.DataFrame, canary: str, champion: str, since: datetime, seed: int = 0
) -> LiveMetric:
    """The gate metric on each version's labelled served answers since `since`, and the
    bootstrap interval of the canary's gain (binary and regression; a multiclass model's
    live metric is left to its shadow)."""
    from airloop.data.labels import labelled_mask, labels
    from airloop.evaluation.evidence import bootstrap_gain
    from airloop.production.live_performance import labelled_metric, logged_scores

    metric = config.gate.metric
    sides = {version: _answered_since(labelled, version, since) for version in (canary, champion)}
    sides = {v: rows[labelled_mask(rows, config, None)] if len(rows) else rows for v, rows in sides.items()}
    count = len(sides[canary])
    if config.task == "multiclass_classification" or not count or not len(sides[champion]):
        return LiveMetric(metric, count, None, None, None)
    values = {v: labelled_metric(config, rows)[1] for v, rows in sides.items()}
    if values[canary] is None or values[champion] is None:
        return LiveMetric(metric, count, values[canary], values[champion], None)
    truth_and_scores = [
        (labels(rows, config).to_numpy(), logged_scores(rows, config, None))
        for rows in (sides[canary], sides[champion])
    ]
    low, high = bootstrap_gain(
        metric, truth_and_scores[0], truth_and_scores[1],
        config.gate.bootstrap_resamples or 500, config.gate.confidence, seed,
    )  # fmt: skip
    interval = None if np.isnan(low) else (low, high)
    return LiveMetric(metric, count, values[canary], values[champion], interval)


def _answered_since(labelled: pd.DataFrame, version: str, since: datetime) -> pd.DataFrame:
    if not len(labelled):
        return labelled
    served = pd.to_datetime(labelled["served_at"], utc=True)
    chosen = (
        labelled["role"].eq("served")
        & labelled["model_version"].astype(str).eq(str(version))
        & (served >= pd.Timestamp(since))
    )
    return labelled[chosen]
