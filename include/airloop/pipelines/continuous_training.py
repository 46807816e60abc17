"""continuous_training: decide → assemble → plan trials → train each → select → evaluate and gate
→ register → package → promote.

Each function is one task: it takes the config, the state paths and small references from
the task before (dicts of paths, ids, metrics), and returns another small dict.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airloop.config import GPU_FAMILIES, AirloopConfig
from airloop.data.ingest import validated_partitions
from airloop.evaluation.records import log_record, write_record
from airloop.paths import StatePaths, safe_key
from airloop.pipelines.approval import blocked_promotion
from airloop.registry.ledger import PROMOTED, record_move
from airloop.registry.locks import exclusive
from airloop.registry.model_card import write_model_card
from airloop.registry.semver import semver_tags
from airloop.registry.tracking import config_hash, tracking_client
from airloop.registry.versions import (
    LATENCY_TAG,
    ChampionChanged,
    current_champion,
    promote_champion,
    register_candidate,
)
from airloop.training.dataset import TrainingWindow, assemble_training_set, require_columns
from airloop.training.devices import resolve_device
from airloop.training.docker_runner import container_name, wants_gpu
from airloop.training.policy import DRIFT, should_retrain
from airloop.training.runners import run_local, train_command
from airloop.training.search import best_trial, parent_run, record_best, trial_params
from airloop.training.train import TrainRequest, TrainResult

# A registered-model tag: when a drift-triggered run last decided to train (the cooldown's
# clock), kept in the registry so every worker sees the same one.
LAST_DRIFT_RETRAIN_TAG = "airloop.last_drift_retrain"


def decide_retraining(config: AirloopConfig, paths: StatePaths, triggers: list[str], run_key: str) -> dict:
    """Whether this run trains; a run that does not leaves a record saying why."""
    client = tracking_client(paths)
    name = config.model.registered_name
    champion = current_champion(client, name)
    last = client.get_registered_model(name).tags.get(LAST_DRIFT_RETRAIN_TAG) if champion else None
    verdict = should_retrain(
        config.retraining, set(triggers), champion is not None, datetime.fromisoformat(last) if last else None
    )
    if verdict.cause == DRIFT:
        client.set_registered_model_tag(name, LAST_DRIFT_RETRAIN_TAG, datetime.now(UTC).isoformat())
    if not verdict.retrain:
        partitions = validated_partitions(paths)
        record = {
            "run_key": run_key,
            "triggers": sorted(triggers),
            "skipped": verdict.reason,
            "eval_partition": partitions[-1] if partitions else None,
        }
        write_record(paths.decision_record(run_key), record)
    return {**verdict.to_dict(), "triggers": sorted(triggers)}


def prepare_training_set(config: AirloopConfig, paths: StatePaths) -> dict:
    return assemble_training_set(config, paths).summary()


def plan_training(config: AirloopConfig, paths: StatePaths, window: dict, run_key: str) -> list[dict]:
    """Write one request file per trial; fail here, before any compute, on what would fail later.

    A trial is {"trial", "request", "result", "command", "container_name", "gpu"}: what either
    runner needs to train it, and where its result will be.
    """
    training = TrainingWindow(**window)
    require_columns(training.train_path, config)
    require_columns(training.eval_path, config)
    gpu = _plan_gpu(config)
    params = trial_params(config.model)
    parent = parent_run(config, paths, run_key, params) if len(params) > 1 else None
    workdir = paths.runs / safe_key(run_key)
    trials = []
    for number, trial in enumerate(params):
        data = config.model_dump(mode="json")
        data["model"]["params"] = trial
        request = TrainRequest(
            data,
            training.train_path,
            training.eval_path,
            _lineage_tags(config, training, run_key),
            trial=number,
            parent_run_id=parent,
        )
        request_path, result_path = (
            workdir / f"trial-{number}" / "request.json",
            workdir / f"trial-{number}" / "result.json",
        )
        request.write(request_path)
        trials.append(
            {
                "trial": number,
                "request": str(request_path),
                "result": str(result_path),
                "command": train_command(request_path, result_path),
                "container_name": container_name(run_key, number),
                "gpu": gpu,
            }
        )
    return trials


def _plan_gpu(config: AirloopConfig) -> bool:
    """Whether trials get a GPU; a required GPU that is missing fails the plan, loudly."""
    if config.model.family not in GPU_FAMILIES:
        return False
    if config.training.runner == "docker":
        return wants_gpu(config)
    return resolve_device(config.training.gpu) == "cuda"


def train_trial(trial: dict) -> dict:
    """Train one trial with the local runner (a subprocess running `airloop train`)."""
    return asdict(run_local(Path(trial["request"]), Path(trial["result"])))


def select_candidate(config: AirloopConfig, paths: StatePaths, trials: list[dict]) -> dict:
    """The best trial on validation data (the only one without a search) becomes the candidate."""
    results = [TrainResult.read(Path(trial["result"])) for trial in trials]
    best = best_trial(results, config.gate.metric)
    parent = TrainRequest.read(Path(trials[0]["request"])).parent_run_id
    if parent:
        record_best(paths, parent, best, config.gate.metric, len(results))
    metric = config.gate.metric
    print(f"candidate: trial {best.trial} of {len(results)}, val_{metric}={best.validation[metric]:.4f}")
    return asdict(best)


def evaluate(
    config: AirloopConfig, paths: StatePaths, window: dict, candidate: dict, run_key: str, triggers: list[str]
) -> dict:
    """Score candidate, champion and baseline on the frozen evaluation set; keep the decision."""
    from airloop.evaluation.compare import evaluate_candidate

    return evaluate_candidate(
        config, TrainingWindow(**window), TrainResult(**candidate), paths, run_key, triggers
    )


def register(config: AirloopConfig, paths: StatePaths, record: dict, window: dict, run_key: str) -> dict:
    """Register the winning candidate (alias challenger), tagged with its lineage and its
    semantic version (`airloop.registry.semver`); write its card."""
    client = tracking_client(paths)
    run_id, model_uri = record["candidate_run_id"], record["candidate_model_uri"]
    run = client.get_run(run_id).data
    tags = {
        **_lineage_tags(config, TrainingWindow(**window), run_key),
        "airloop.git_commit": run.tags.get("airloop.git_commit", "unknown"),
    }
    latency = (record.get("evidence") or {}).get("latency_p95_ms")
    if latency is not None:
        tags[LATENCY_TAG] = f"{latency:.3f}"
    # Under the lock that serializes alias moves, so two registrations of this model never
    # take the same semantic version.
    with exclusive(paths.promotion_lock):
        tags |= semver_tags(
            client, config, run_id, tags["airloop.config_hash"], tags["airloop.data_hash"], run.params
        )
        model = register_candidate(
            client, config.model.registered_name, run_id, model_uri, tags, paths.tracking_uri()
        )
    card = write_model_card(
        config, paths, model.version, json.loads(paths.decision_record(run_key).read_text())
    )
    return {"name": model.name, "version": model.version, "uri": model.uri, "card": str(card)}


def package(config: AirloopConfig, paths: StatePaths, model: dict, window: dict) -> dict:
    """Build the BentoML bento for a registered version, serve it, and check it answers as the
    MLflow model does on evaluation rows (raises TrainingServingSkew if not)."""
    import pandas as pd

    from airloop.packaging.bento import build_bento
    from airloop.packaging.skew import check_skew

    tag = build_bento(config, model["uri"], model["version"], paths)
    evaluation = pd.read_parquet(TrainingWindow(**window).eval_path)
    return {**model, "bento": tag, "skew": check_skew(config, paths, tag, model["uri"], evaluation)}


def promote(
    config: AirloopConfig,
    paths: StatePaths,
    packaged: dict,
    window: dict,
    candidate: dict,
    run_key: str,
    actor: str = "airloop",
) -> dict:
    """Move `champion` to the packaged version, one promotion at a time.

    If another run promoted since this candidate was evaluated, the candidate is evaluated
    again against the new champion and promoted only if it still passes the gate. Returns
    {"promoted": bool, ...}; the decision record says what happened either way. A promotion
    is recorded in the model's ledger (once per run), as done by `actor`.
    """
    from airloop.packaging.champion_server import wait_until_warm

    client, name, path = tracking_client(paths), config.model.registered_name, paths.decision_record(run_key)
    # Where `airloop serve` runs, it warms the new version's server first: the traffic then
    # moves within one poll of the alias, and no request waits for a model to load.
    wait_until_warm(paths, config.name, packaged["version"], timeout=120)
    with exclusive(paths.promotion_lock):
        record = json.loads(path.read_text())
        if blocked := blocked_promotion(config, record):  # gate.require_approval: rejected, timed out
            return {"promoted": False, "reason": blocked}
        try:
            champion = promote_champion(
                client, name, packaged["version"], record["decision"]["champion_version"]
            )
        except ChampionChanged as changed:
            print(changed)
            approval = record.get("approval")
            record = evaluate(config, paths, window, candidate, run_key, record["triggers"])
            record["reevaluated"] = str(changed)
            if approval:  # the answer approved this version; the new record keeps it
                record["approval"] = approval
            if not record["decision"]["promote"]:
                _keep(client, path, record)
                return {"promoted": False, "reason": record["decision"]["reason"]}
            champion = promote_champion(
                client, name, packaged["version"], record["decision"]["champion_version"]
            )
            # The card describes the decision; this one was taken against another champion.
            write_model_card(config, paths, packaged["version"], record)
        promoted = {"version": champion.version, "bento": packaged["bento"]}
        record["promoted"] = {**promoted, "skew": packaged["skew"]}
        _keep(client, path, record)
        card = packaged.get("card")
        record_move(
            paths,
            PROMOTED,
            champion.version,
            from_version=record["decision"]["champion_version"],
            actor=actor,
            reason=record["decision"]["reason"],
            evidence={
                "decision": path.with_suffix(".md"),
                "model_card": card.removesuffix(".md") + ".html" if card else None,
                "model_version": f"{name}/{champion.version}",
            },
            details={"bento": packaged["bento"], "triggers": record.get("triggers", [])},
            run_key=run_key,
        )
    return {"promoted": True, **promoted}


def _keep(client: Any, path: Path, record: dict) -> None:
    """The final record, on disk and in the candidate's MLflow run."""
    write_record(path, record)
    log_record(client, record["candidate_run_id"], path)


def run_continuous_training(
    config: AirloopConfig, paths: StatePaths, triggers: list[str], run_key: str
) -> dict:
    """Every task above in order, in this process: what the DAG does, without Airflow."""
    verdict = decide_retraining(config, paths, triggers, run_key)
    if not verdict["retrain"]:
        return verdict
    window = prepare_training_set(config, paths)
    trials = plan_training(config, paths, window, run_key)
    for trial in trials:
        train_trial(trial)
    candidate = select_candidate(config, paths, trials)
    record = evaluate(config, paths, window, candidate, run_key, triggers)
    if record["decision"]["promote"]:
        model = register(config, paths, record, window, run_key)
        promote(config, paths, package(config, paths, model, window), window, candidate, run_key)
        return dict(json.loads(paths.decision_record(run_key).read_text()))
    return record


def _lineage_tags(config: AirloopConfig, window: TrainingWindow, run_key: str) -> dict[str, str]:
    tags = {
        "airloop.data_hash": window.train_hash,
        "airloop.eval_hash": window.eval_hash,
        "airloop.train_partitions": ",".join(window.train_partitions),
        "airloop.eval_partition": window.eval_partition,
        "airloop.airflow_run_id": run_key,
        "airloop.config_hash": config_hash(config),
    }
    if window.labelled_partitions:
        # MLflow tag values are capped: the count always, the names while they fit.
        tags["airloop.labelled_partitions"] = ",".join(window.labelled_partitions)[:4000]
    return tags
