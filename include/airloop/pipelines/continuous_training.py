"""continuous_training: decide → assemble → train → evaluate and gate → register → promote → package.

Each function is one task: it takes the config, the state paths and small references from
the task before (dicts of paths, ids, metrics), and returns another small dict.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from airloop.config import AirloopConfig
from airloop.data.ingest import validated_partitions
from airloop.evaluation.records import write_record
from airloop.paths import StatePaths, safe_key
from airloop.registry import current_champion, promote_champion, register_candidate
from airloop.tracking import config_hash, tracking_client
from airloop.training.dataset import TrainingWindow, assemble_training_set
from airloop.training.policy import should_retrain
from airloop.training.runners import run_local
from airloop.training.train import TrainRequest, TrainResult


def decide_retraining(config: AirloopConfig, paths: StatePaths, triggers: list[str], run_key: str) -> dict:
    """Whether this run trains; a run that does not leaves a record saying why."""
    champion = current_champion(tracking_client(paths), config.model.registered_name)
    verdict = should_retrain(config.retraining, set(triggers), champion is not None)
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


def train(config: AirloopConfig, paths: StatePaths, window: dict, run_key: str) -> dict:
    """Train a candidate with the local runner (a subprocess running `airloop train`)."""
    training = TrainingWindow(**window)
    request = TrainRequest(
        config=config.model_dump(mode="json"),
        train_path=training.train_path,
        eval_path=training.eval_path,
        tags=_lineage_tags(config, training, run_key),
    )
    result = run_local(request, paths.runs / safe_key(run_key))
    return asdict(result)


def evaluate(
    config: AirloopConfig, paths: StatePaths, window: dict, candidate: dict, run_key: str, triggers: list[str]
) -> dict:
    """Score candidate, champion and baseline on the frozen evaluation set; keep the decision."""
    from airloop.evaluation.compare import evaluate_candidate

    return evaluate_candidate(
        config, TrainingWindow(**window), TrainResult(**candidate), paths, run_key, triggers
    )


def register(config: AirloopConfig, paths: StatePaths, record: dict, window: dict, run_key: str) -> dict:
    """Register the winning candidate (alias challenger), tagged with its lineage."""
    tags = _lineage_tags(config, TrainingWindow(**window), run_key)
    model = register_candidate(
        tracking_client(paths),
        config.model.registered_name,
        record["candidate_run_id"],
        record["candidate_model_uri"],
        tags,
    )
    return {"name": model.name, "version": model.version, "uri": model.uri}


def package(config: AirloopConfig, paths: StatePaths, model: dict) -> dict:
    """Build the BentoML bento for a registered version."""
    from airloop.packaging.bento import build_bento

    tag = build_bento(config, model["uri"], model["version"], paths)
    return {**model, "bento": tag}


def promote(config: AirloopConfig, paths: StatePaths, packaged: dict, run_key: str) -> dict:
    """Move `champion` to the packaged version and note the outcome in the decision record."""
    champion = promote_champion(tracking_client(paths), config.model.registered_name, packaged["version"])
    path = paths.decision_record(run_key)
    record = json.loads(path.read_text())
    record["promoted"] = {"version": champion.version, "bento": packaged["bento"]}
    write_record(path, record)
    return {"version": champion.version, "bento": packaged["bento"]}


def run_continuous_training(
    config: AirloopConfig, paths: StatePaths, triggers: list[str], run_key: str
) -> dict:
    """Every task above in order, in this process: what the DAG does, without Airflow."""
    verdict = decide_retraining(config, paths, triggers, run_key)
    if not verdict["retrain"]:
        return verdict
    window = prepare_training_set(config, paths)
    candidate = train(config, paths, window, run_key)
    record = evaluate(config, paths, window, candidate, run_key, triggers)
    if record["decision"]["promote"]:
        model = register(config, paths, record, window, run_key)
        record["promoted"] = promote(config, paths, package(config, paths, model), run_key)
    return record


def _lineage_tags(config: AirloopConfig, window: TrainingWindow, run_key: str) -> dict[str, str]:
    return {
        "airloop.data_hash": window.train_hash,
        "airloop.eval_hash": window.eval_hash,
        "airloop.train_partitions": ",".join(window.train_partitions),
        "airloop.eval_partition": window.eval_partition,
        "airloop.airflow_run_id": run_key,
        "airloop.config_hash": config_hash(config),
    }
