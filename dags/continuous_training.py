"""Continuous training: train a candidate, gate it against the champion, register, package, promote.

Triggered by `validated_data` or `drift_detected` (either), on `retraining.schedule` when
set, by hand in the UI, or over the REST API. One run is active at a time: asset events
that arrive meanwhile queue a single run next, so a storm of drift signals retrains once.
None is lost: `decide_retraining` takes into account every event on both assets since the
last decision (a watermark in each asset's state store), not only the event that queued
its run, and lists them in its `signals` XCom. The retraining policy in the config decides
whether they call for a new model (drift, new data, a performance drop, the schedule; a
cooldown between drift-triggered retrains). Training fans out one mapped
`train_trial` per hyperparameter trial (one without `model.search`), each a subprocess
(`training.runner: local`) or a container on a GPU (`docker`); the best on validation
data is the candidate. The candidate and the current champion are scored on the same
frozen evaluation set (the newest partition); only a candidate that beats both the
champion and a naive baseline is registered (alias `challenger`), packaged as a BentoML
bento and promoted (alias `champion`, the old one kept as `previous_champion`).
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from airloop_wiring import (
    CHAMPION_MODEL,
    DEFAULT_ARGS,
    DRIFT_DETECTED,
    DVC_POOL,
    PROMOTION_POOL,
    START_DATE,
    TRIGGER_OF_ASSET,
    VALIDATED_DATA,
    Notify,
    run_config,
    run_params,
    show_links,
)

from airloop.config import load_config
from airloop.paths import StatePaths

CONFIG = load_config()
PATHS = StatePaths.from_env()


# The newest event on a trigger asset that a decision has taken into account.
HANDLED = "decided_through"
TRIGGER_ASSETS = (VALIDATED_DATA, DRIFT_DETECTED)


def _pending_signals(context) -> list[dict]:
    """Every event on the trigger assets that no run's decision has taken into account.

    Airflow gives an asset-triggered run only the events up to the one that queued it:
    events arriving while the run waits join its queue entry, not the run. So the decision
    reads the assets' events itself, after each asset's watermark.
    """
    signals = []
    for asset in TRIGGER_ASSETS:
        mark = context["asset_state_store"][asset].get(HANDLED) or {}
        events = context["inlet_events"][asset]
        if mark:
            events = events.after(mark["timestamp"])  # inclusive: the ids below drop the mark itself
        signals += [
            {"asset": asset.name, "id": e.id, "timestamp": e.timestamp.isoformat(), "extra": e.extra or {}}
            for e in events
            if e.id > mark.get("id", 0)
        ]
    return signals


def _mark_decided(context, signals: list[dict]) -> None:
    for asset in TRIGGER_ASSETS:
        mine = [s for s in signals if s["asset"] == asset.name]
        if mine:
            newest = max(mine, key=lambda s: s["id"])
            context["asset_state_store"][asset].set(
                HANDLED, {"id": newest["id"], "timestamp": newest["timestamp"]}
            )


def _triggers(context, signals: list[dict]) -> list[str]:
    """What this run answers: the pending signals, plus the schedule or a person/CI."""
    from airloop.training.policy import MANUAL, SCHEDULE, triggers_of_event

    kinds = {t for s in signals for t in triggers_of_event(TRIGGER_OF_ASSET[s["asset"]], s["extra"])}
    kinds |= {"manual": {MANUAL}, "scheduled": {SCHEDULE}}.get(context["dag_run"].run_type, set())
    return sorted(kinds)


def _schedule():
    """Both assets (either one), and the retraining cron when the config sets one."""
    assets = VALIDATED_DATA | DRIFT_DETECTED
    if CONFIG.retraining.schedule is None:
        return assets
    timetable = CronTriggerTimetable(CONFIG.retraining.schedule, timezone="UTC")
    return AssetOrTimeSchedule(timetable=timetable, assets=assets)


@dag(
    schedule=_schedule(),
    start_date=START_DATE,
    max_active_runs=1,
    catchup=False,
    tags=["airloop", "training"],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    params=run_params("continuous_training"),
)
def continuous_training():
    @task.short_circuit(inlets=list(TRIGGER_ASSETS))
    def decide_retraining(**context) -> bool:
        from airloop.pipelines.continuous_training import decide_retraining

        signals = _pending_signals(context)
        triggers = _triggers(context, signals)
        verdict = decide_retraining(run_config(CONFIG, context), PATHS, triggers, context["run_id"])
        _mark_decided(context, signals)
        context["ti"].xcom_push(key="signals", value=signals)
        context["ti"].xcom_push(key="triggers", value=triggers)
        print(f"{len(signals)} signal(s) since the last decision; triggers {triggers}")
        print(f"retrain={verdict['retrain']}: {verdict['reason']}")
        return bool(verdict["retrain"])

    @task(pool=DVC_POOL)
    def prepare_training_set(**context) -> dict:
        from airloop.pipelines.continuous_training import prepare_training_set

        return prepare_training_set(run_config(CONFIG, context), PATHS)

    @task
    def plan_training(window: dict, **context) -> list[dict]:
        from airloop.pipelines.continuous_training import plan_training

        return plan_training(run_config(CONFIG, context), PATHS, window, context["run_id"])

    @task(max_active_tis_per_dagrun=CONFIG.training.max_parallel_trials)
    def train_trial(trial: dict, **context) -> dict:
        from airloop.pipelines.continuous_training import train_trial

        result = train_trial(trial)
        show_links(context, mlflow_run=result["run_id"])
        return result

    @task
    def select_candidate(trials: list[dict], **context) -> dict:
        from airloop.pipelines.continuous_training import select_candidate

        candidate = select_candidate(run_config(CONFIG, context), PATHS, trials)
        show_links(context, mlflow_run=candidate["run_id"])
        return candidate

    @task
    def evaluate_candidate(window: dict, candidate: dict, **context) -> dict:
        from airloop.pipelines.continuous_training import evaluate

        triggers = context["ti"].xcom_pull(task_ids="decide_retraining", key="triggers")
        record = evaluate(run_config(CONFIG, context), PATHS, window, candidate, context["run_id"], triggers)
        path = PATHS.decision_record(context["run_id"])
        print(path.with_suffix(".md").read_text())  # the decision, readable in this task's log
        print(f"decision record: {path} (.md beside it; MLflow run {record['candidate_run_id']}: decision/)")
        show_links(context, mlflow_run=record["candidate_run_id"], decision=path.with_suffix(".md"))
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

        model = register(run_config(CONFIG, context), PATHS, decision, window, context["run_id"])
        card = model["card"].removesuffix(".md") + ".html"
        show_links(context, model_version=f"{model['name']}/{model['version']}", model_card=card)
        return model

    @task
    def package_model(model: dict, window: dict, **context) -> dict:
        from airloop.pipelines.continuous_training import package

        packaged = package(run_config(CONFIG, context), PATHS, model, window)
        show_links(context, model_version=f"{packaged['name']}/{packaged['version']}")
        return packaged

    @task(
        outlets=[CHAMPION_MODEL],
        pool=PROMOTION_POOL,
        on_success_callback=Notify("promotion", details_from="promote_champion"),
    )
    def promote_champion(packaged: dict, window: dict, candidate: dict, **context) -> dict:
        from airflow.exceptions import AirflowSkipException

        from airloop.pipelines.continuous_training import promote

        outcome = promote(run_config(CONFIG, context), PATHS, packaged, window, candidate, context["run_id"])
        if not outcome["promoted"]:
            # Skipped, not failed: the gate refused after the champion moved; no asset event.
            raise AirflowSkipException(f"not promoted after re-evaluation: {outcome['reason']}")
        context["outlet_events"][CHAMPION_MODEL].extra = outcome
        card = packaged["card"].removesuffix(".md") + ".html"
        name = packaged["name"]
        show_links(context, model_version=f"{name}/{outcome['version']}", model_card=card,
                   decision=PATHS.decision_record(context["run_id"]).with_suffix(".md"))  # fmt: skip
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
