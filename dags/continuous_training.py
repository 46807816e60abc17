"""Continuous training: train a candidate, gate it against the champion, register, package, promote.

Triggered by `validated_data` or `drift_detected` (either), by hand in the UI, or over
the REST API. The retraining policy in the config decides whether the triggers call for a
new model. Training fans out one mapped `train_trial` per hyperparameter trial (one
without `model.search`), each a subprocess (`training.runner: local`) or a container on a
GPU (`docker`); the best on validation data is the candidate. The candidate and the
current champion are scored on the same frozen evaluation set (the newest partition);
only a candidate that beats both the champion and
a naive baseline is registered (alias `challenger`), packaged as a BentoML bento and
promoted (alias `champion`, the old one kept as `previous_champion`).
"""

from __future__ import annotations

from airflow.sdk import dag, task
from airloop_wiring import (
    CHAMPION_MODEL,
    DEFAULT_ARGS,
    DRIFT_DETECTED,
    DVC_POOL,
    PROMOTION_POOL,
    START_DATE,
    TRIGGER_OF_ASSET,
    VALIDATED_DATA,
)

from airloop.config import load_config
from airloop.paths import StatePaths

CONFIG = load_config()
PATHS = StatePaths.from_env()


def _triggers(context) -> list[str]:
    """What started this run: new_data and/or drift from asset events, else manual."""
    events = context.get("triggering_asset_events") or {}
    kinds = {TRIGGER_OF_ASSET.get(asset.name, asset.name) for asset in events if events[asset]}
    return sorted(kinds) or ["manual"]


@dag(
    schedule=(VALIDATED_DATA | DRIFT_DETECTED),
    start_date=START_DATE,
    max_active_runs=1,
    catchup=False,
    tags=["airloop", "training"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
)
def continuous_training():
    @task.short_circuit
    def decide_retraining(**context) -> bool:
        from airloop.pipelines.continuous_training import decide_retraining

        verdict = decide_retraining(CONFIG, PATHS, _triggers(context), context["run_id"])
        print(f"retrain={verdict['retrain']}: {verdict['reason']}")
        return bool(verdict["retrain"])

    @task(pool=DVC_POOL)
    def prepare_training_set() -> dict:
        from airloop.pipelines.continuous_training import prepare_training_set

        return prepare_training_set(CONFIG, PATHS)

    @task
    def plan_training(window: dict, **context) -> list[dict]:
        from airloop.pipelines.continuous_training import plan_training

        return plan_training(CONFIG, PATHS, window, context["run_id"])

    @task(max_active_tis_per_dagrun=CONFIG.training.max_parallel_trials)
    def train_trial(trial: dict) -> dict:
        from airloop.pipelines.continuous_training import train_trial

        return train_trial(trial)

    @task
    def select_candidate(trials: list[dict]) -> dict:
        from airloop.pipelines.continuous_training import select_candidate

        return select_candidate(CONFIG, PATHS, trials)

    @task
    def evaluate_candidate(window: dict, candidate: dict, **context) -> dict:
        from airloop.pipelines.continuous_training import evaluate

        record = evaluate(CONFIG, PATHS, window, candidate, context["run_id"], _triggers(context))
        path = PATHS.decision_record(context["run_id"])
        print(path.with_suffix(".md").read_text())  # the decision, readable in this task's log
        print(f"decision record: {path} (.md beside it; MLflow run {record['candidate_run_id']}: decision/)")
        return {
            "candidate_run_id": record["candidate_run_id"],
            "candidate_model_uri": record["candidate_model_uri"],
            **record["decision"],
        }

    @task.short_circuit
    def passes_gate(decision: dict) -> bool:
        print(f"promote={decision['promote']}: {decision['reason']}")
        return bool(decision["promote"])

    @task
    def register_model(decision: dict, window: dict, **context) -> dict:
        from airloop.pipelines.continuous_training import register

        return register(CONFIG, PATHS, decision, window, context["run_id"])

    @task
    def package_model(model: dict, window: dict) -> dict:
        from airloop.pipelines.continuous_training import package

        return package(CONFIG, PATHS, model, window)

    @task(outlets=[CHAMPION_MODEL], pool=PROMOTION_POOL)
    def promote_champion(packaged: dict, window: dict, candidate: dict, **context) -> dict:
        from airflow.exceptions import AirflowSkipException

        from airloop.pipelines.continuous_training import promote

        outcome = promote(CONFIG, PATHS, packaged, window, candidate, context["run_id"])
        if not outcome["promoted"]:
            # Skipped, not failed: the gate refused after the champion moved; no asset event.
            raise AirflowSkipException(f"not promoted after re-evaluation: {outcome['reason']}")
        context["outlet_events"][CHAMPION_MODEL].extra = outcome
        return outcome

    window = prepare_training_set()
    decide_retraining() >> window
    trials = plan_training(window)
    if CONFIG.training.runner == "docker":
        trained = _trial_containers(trials)
    else:
        trained = train_trial.expand(trial=trials)
    candidate = select_candidate(trials)
    trained >> candidate
    decision = evaluate_candidate(window, candidate)
    gate = passes_gate(decision)
    model = register_model(decision, window)
    gate >> model
    promote_champion(package_model(model, window), window, candidate)


def _trial_containers(trials):
    """One DockerOperator per trial, running `airloop train` in the trainer image."""
    from airflow.providers.docker.operators.docker import DockerOperator

    from airloop.training.docker_runner import operator_kwargs, trial_kwargs

    shared = operator_kwargs(CONFIG, PATHS)
    return DockerOperator.partial(task_id="train_trial", **shared).expand_kwargs(trials.map(trial_kwargs))


continuous_training()
