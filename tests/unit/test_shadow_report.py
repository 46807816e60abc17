"""A shadow rollout's data: a challenger's answers to a copy of live traffic, logged with role
"shadow" by the real writer beside the champion's served ones, labels landed and joined by
the real labels join, and the report comparing the two (agreement, scores, latency, the
gate's decision on the labelled pairs). Served readers never see a shadow answer."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from airloop.config import AirloopConfig
from airloop.packaging import prediction_sink as sink
from airloop.paths import StatePaths
from airloop.production.labels_join import join_pending_labels, labelled_predictions
from airloop.production.predictions import compact_log, read_log, served_frame, shadow_pairs
from airloop.production.shadow_report import prediction_agreement, shadow_report
from tests.unit.test_labels_join import _land
from tests.unit.test_prediction_log import FEATURES, KEYS, _batch

ROWS = 600  # (flights' drift.min_rows is 500: enough labelled pairs for a verdict)


def _answer(
    paths: StatePaths, role: str, version: str, ids: list[str], scores: np.ndarray, latency_ms: float
) -> None:
    """`ids` answered with `scores` (P(late)) by `version` in `role`, through the real writer."""
    schema = sink.log_schema("binary_classification", FEATURES, KEYS, {}, hashing=False)
    writer = sink.PredictionLog(str(paths.prediction_log), schema, "flights-late-arrival", version, role=role)
    answered = [float(s) for s in scores]
    batch = _batch(ids)
    writer.append(
        replace(batch, latency_ms=latency_ms, scores=answered, predictions=[int(s >= 0.5) for s in answered])
    )
    writer.close()


def _ids(count: int, prefix: str = "r") -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def _late(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(ROWS) < 0.4


def _scores(late: np.ndarray, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.where(late, 0.7, 0.3) + rng.normal(0, noise, len(late)), 0.001, 0.999)


def _land_labels(paths: StatePaths, name: str, ids: list[str], late: np.ndarray) -> None:
    _land(paths, name, pd.DataFrame({"inference_id": ids, "arr_delay": np.where(late, 40.0, 0.0)}))


def test_a_server_role_comes_from_the_environment_and_nothing_else_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(sink.ROLE_ENV, raising=False)
    assert sink.role_from_env() == "served"
    monkeypatch.setenv(sink.ROLE_ENV, "shadow")
    assert sink.role_from_env() == "shadow"
    for wrong in ("batch", "canary", "Shadow"):
        monkeypatch.setenv(sink.ROLE_ENV, wrong)
        with pytest.raises(ValueError, match="AIRLOOP_ROLE"):
            sink.role_from_env()
    schema = sink.log_schema("binary_classification", FEATURES, KEYS, {}, hashing=False)
    with pytest.raises(ValueError, match="'canary' is not one of"):
        sink.PredictionLog(str(tmp_path), schema, "m", "3", role="canary")


def test_served_readers_and_the_labels_join_never_count_shadow_answers(
    config: AirloopConfig, paths: StatePaths
) -> None:
    late, served_ids = _late(), _ids(ROWS + 100)
    _answer(paths, "served", "3", served_ids, np.full(ROWS + 100, 0.8), 2.0)
    _answer(paths, "shadow", "4", served_ids[:ROWS], np.full(ROWS, 0.2), 5.0)

    log = read_log(config, paths)
    assert len(log) == ROWS + 100 and set(log["role"]) == {"served"} and set(log["model_version"]) == {"3"}
    assert (served_frame(log)["score"] == 0.8).all()
    assert len(read_log(config, paths, roles=("shadow",))) == ROWS

    _land_labels(paths, "day-1.csv", served_ids[:ROWS], late)
    (report,) = join_pending_labels(config, paths)["reports"]
    assert report["counts"]["joined"] == ROWS and report["counts"]["unmatched"] == 0
    labelled = labelled_predictions(paths)
    assert len(labelled) == ROWS and set(labelled["role"]) == {"served"} and (labelled["score"] == 0.8).all()

    # Compacting the hour keeps both answers of every request: they are (id, role) apart.
    assert compact_log(config, paths, now=datetime.now(UTC) + timedelta(hours=2))["files"] == 2
    assert len(shadow_pairs(config, paths, "3", "4")) == ROWS
    assert len(read_log(config, paths)) == ROWS + 100


def test_agreement_scores_and_latency_before_any_label_and_no_verdict_yet(
    config: AirloopConfig, paths: StatePaths
) -> None:
    ids = _ids(ROWS)
    champion = np.linspace(0.01, 0.99, ROWS)  # (never 0.5: each flip below changes the class)
    challenger = champion.copy()
    challenger[:60] = 1 - challenger[:60]
    _answer(paths, "served", "3", [*ids, "only-served"], np.r_[champion, 0.9], 2.0)
    _answer(paths, "shadow", "4", [*ids, "only-shadow"], np.r_[challenger, 0.1], 5.0)
    _answer(paths, "shadow", "5", ids, np.full(ROWS, 0.99), 9.0)  # another challenger, elsewhere

    report = shadow_report(config, paths, "3", "4")
    assert report["pairs"] == ROWS
    assert report["agreement"] == {"equal_share": 0.9}
    assert report["latency_ms"] == {
        "champion": {"p50": 2.0, "p95": 2.0},
        "challenger": {"p50": 5.0, "p95": 5.0},
    }
    scores = report["scores"]
    assert scores["champion"]["p50"] == pytest.approx(0.5)
    # The 60 lowest scores moved to the top: the distributions differ by 60 of 600 rows.
    assert scores["ks_statistic"] == pytest.approx(0.1)
    assert scores["challenger"]["p05"] > scores["champion"]["p05"]
    gate = report["live_gate"]
    assert gate["rows"] == 0 and gate["champion"] is None and gate["gain_interval"] is None
    assert gate["passed"] is None and gate["decision"] is None and "no labels" in gate["reason"]

    path = Path(report["report_path"])
    assert path == paths.shadow_report("4", "3") and json.loads(path.read_text())["pairs"] == ROWS
    assert "NO VERDICT YET" in path.with_suffix(".md").read_text()

    _land_labels(paths, "few.csv", ids[:50], _late()[:50])
    join_pending_labels(config, paths)
    few = shadow_report(config, paths, "3", "4")["live_gate"]
    assert few["rows"] == 50 and few["champion"] is not None and few["passed"] is None
    assert "fewer than drift.min_rows=500" in few["reason"]


def test_the_gate_passes_a_better_challenger_and_fails_a_degraded_one_on_labelled_pairs(
    config: AirloopConfig, paths: StatePaths
) -> None:
    ids, late = _ids(ROWS), _late()
    champion = _scores(late, 0.35, seed=1)
    _answer(paths, "served", "3", ids, champion, 2.0)
    _answer(paths, "shadow", "4", ids, _scores(late, 0.1, seed=2), 3.0)
    _answer(paths, "shadow", "5", ids, _scores(late, 1.0, seed=3), 3.0)
    _land_labels(paths, "day-1.csv", ids, late)
    join_pending_labels(config, paths)

    better = shadow_report(config, paths, "3", "4")
    gate = better["live_gate"]
    assert gate["rows"] == ROWS and gate["metric"] == "roc_auc"
    assert gate["champion"] == pytest.approx(roc_auc_score(late, champion))
    assert gate["challenger"] > gate["champion"] and gate["gain_interval"][0] > 0
    assert gate["passed"] is True and gate["decision"]["champion_version"] == "3"
    assert {c["name"] for c in gate["decision"]["checks"]} == {"baseline", "champion", "segments"}
    assert "CHALLENGER PASSES" in Path(better["report_path"]).with_suffix(".md").read_text()

    degraded = shadow_report(config, paths, "3", "5")["live_gate"]
    assert degraded["champion"] == gate["champion"], "the same labelled pairs, the same champion"
    assert degraded["challenger"] < degraded["champion"] and degraded["gain_interval"][1] < 0
    assert degraded["passed"] is False and "does not improve on champion v3" in degraded["reason"]


def test_regression_agreement_is_the_mean_difference_and_correlation_of_the_values() -> None:
    champion = pd.Series([10.0, 20.0, 30.0, 40.0])
    assert prediction_agreement("regression", champion, champion + 2.5) == {
        "mean_abs_diff": 2.5,
        "correlation": pytest.approx(1.0),
    }
    flat = prediction_agreement("regression", champion, pd.Series([5.0] * 4))
    assert flat["correlation"] is None and flat["mean_abs_diff"] == 20.0
