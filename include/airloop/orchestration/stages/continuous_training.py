"""Continuous training: train a candidate, gate it against the champion, register, package, promote.

Triggered by the model's `validated_data` or `drift_detected` (either), on
`retraining.schedule` when set, by hand in the UI, or over the REST API. One run is active
at a time: asset events that arrive meanwhile queue a single run next, so a storm of drift
signals retrains once. None is lost: `decide_retraining` takes into account every event on
both assets since the last decision (`airloop.orchestration.signals`), not only the event
that queued its run, and lists them in its `signals` XCom. The retraining policy in the
config decides whether they call for a new model (drift, new data, a performance drop, the
schedule; a cooldown between drift-triggered retrains). Training fans out one mapped
`train_trial` per hyperparameter trial (one without `model.search`), each a subprocess
(`training.runner: local`) or a container on a GPU (`docker`); the best on validation data
is the candidate. The candidate and the current champion are scored on the same frozen
evaluation set (the newest partition); only a candidate that beats both the champion and a
naive baseline is registered (alias `challenger`), packaged as a BentoML bento and promoted
(alias `champion`, the old one kept as `previous_champion`). With `gate.require_approval`, a
person approves first (`approve_promotion`, on the UI's Required Actions page or over REST);
a rejection, or a timeout answering `gate.on_approval_timeout: reject`, skips the promotion.
"""

from __future__ import annotations

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from airloop.orchestration.wiring import ModelWiring

STAGE = "continuous_training"


def _schedule(model: ModelWiring):
    """Both trigger assets (either one), and the retraining cron when the config sets one."""
    assets = model.assets.validated_data | model.assets.drift_detected
    if model.config.retraining.schedule is None:
        return assets
    timetable = CronTriggerTimetable(model.config.retraining.schedule, timezone="UTC")
    return AssetOrTimeSchedule(timetable=timetable, assets=assets)


def build(model: ModelWiring) -> DAG:
    config, paths, champion_model = model.config, model.paths, model.assets.champion_model
    triggers_on = model.assets.triggers

    def run_config(context):
        return model.run_config(STAGE, context)

    @dag(
        **model.dag_args(STAGE, "training", __doc__),
        schedule=_schedule(model),
        params=model.run_params(STAGE),
    )
    def continuous_training():
        @task.short_circuit(inlets=list(triggers_on))
        def decide_retraining(**context) -> bool:
            from airloop.orchestration.signals import mark_decided, pending_signals, run_triggers
            from airloop.pipelines.continuous_training import decide_retraining

            store = context["asset_state_store"]
            signals = pending_signals(store, context["inlet_events"], triggers_on)
            triggers = run_triggers(signals, context["dag_run"].run_type)
            verdict = decide_retraining(run_config(context), paths, triggers, context["run_id"])
            mark_decided(store, signals, triggers_on)
            context["ti"].xcom_push(key="signals", value=signals)
            context["ti"].xcom_push(key="triggers", value=triggers)
            print(f"{len(signals)} signal(s) since the last decision; triggers {triggers}")
            print(f"retrain={verdict['retrain']}: {verdict['reason']}")
            return bool(verdict["retrain"])

        @task(pool=model.dvc_pool)
        def prepare_training_set(**context) -> dict:
            from airloop.pipelines.continuous_training import prepare_training_set

            return prepare_training_set(run_config(context), paths)

        @task
        def plan_training(window: dict, **context) -> list[dict]:
            from airloop.pipelines.continuous_training import plan_training

            return plan_training(run_config(context), paths, window, context["run_id"])

        @task(max_active_tis_per_dagrun=config.training.max_parallel_trials)
        def train_trial(trial: dict, **context) -> dict:
            from airloop.pipelines.continuous_training import train_trial

            result = train_trial(trial)
            model.show_links(context, mlflow_run=result["run_id"])
            return result

        @task
        def select_candidate(trials: list[dict], **context) -> dict:
            from airloop.pipelines.continuous_training import select_candidate

            candidate = select_candidate(run_config(context), paths, trials)
            model.show_links(context, mlflow_run=candidate["run_id"])
            return candidate

        @task
        def evaluate_candidate(window: dict, candidate: dict, **context) -> dict:
            from airloop.pipelines.continuous_training import evaluate

            triggers = context["ti"].xcom_pull(task_ids="decide_retraining", key="triggers")
            record = evaluate(run_config(context), paths, window, candidate, context["run_id"], triggers)
            path = paths.decision_record(context["run_id"])
            print(path.with_suffix(".md").read_text())  # the decision, readable in this task's log
            print(
                f"decision record: {path} (.md beside it; MLflow run {record['candidate_run_id']}: decision/)"
            )
            model.show_links(context, mlflow_run=record["candidate_run_id"], decision=path.with_suffix(".md"))
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

            registered = register(run_config(context), paths, decision, window, context["run_id"])
            card = registered["card"].removesuffix(".md") + ".html"
            version = f"{registered['name']}/{registered['version']}"
            model.show_links(context, model_version=version, model_card=card)
            return registered

        @task
        def package_model(registered: dict, window: dict, **context) -> dict:
            from airloop.pipelines.continuous_training import package

            packaged = package(run_config(context), paths, registered, window)
            model.show_links(context, model_version=f"{packaged['name']}/{packaged['version']}")
            return packaged

        @task(
            outlets=[champion_model],
            pool=model.promotion_pool,
            on_success_callback=model.notify("promotion", details_from="promote_champion"),
        )
        def promote_champion(packaged: dict, window: dict, candidate: dict, **context) -> dict:
            from airflow.exceptions import AirflowSkipException

            from airloop.pipelines.continuous_training import promote
            from airloop.registry.ledger import airflow_actor

            actor = airflow_actor(context["dag_run"])
            outcome = promote(
                run_config(context), paths, packaged, window, candidate, context["run_id"], actor
            )
            if not outcome["promoted"]:
                # Skipped, not failed: the gate refused after the champion moved; no asset event.
                raise AirflowSkipException(f"not promoted after re-evaluation: {outcome['reason']}")
            context["outlet_events"][champion_model].extra = outcome
            card = packaged["card"].removesuffix(".md") + ".html"
            decision = paths.decision_record(context["run_id"]).with_suffix(".md")
            version = f"{packaged['name']}/{outcome['version']}"
            model.show_links(context, model_version=version, model_card=card, decision=decision)
            return outcome

        @task(outlets=[model.assets.rollout_requested])
        def request_rollout(packaged: dict, **context) -> dict:
            """Hand the packaged version to roll_out (rollout.strategy canary or shadow)."""
            requested = {
                "version": packaged["version"],
                "run_key": context["run_id"],
                "strategy": run_config(context).rollout.strategy,
            }
            context["outlet_events"][model.assets.rollout_requested].extra = requested
            print(f"v{packaged['version']} goes to {model.dag_id('roll_out')} as a {requested['strategy']}")
            return requested

        window = prepare_training_set()
        decide_retraining() >> window
        trials = plan_training(window)
        if config.training.runner == "docker":
            trained = _trial_containers(model, trials)
        else:
            trained = train_trial.expand(trial=trials)
        candidate = select_candidate(trials)
        trained >> candidate
        decision = evaluate_candidate(window, candidate)
        gate = passes_gate(decision)
        registered = register_model(decision, window)
        gate >> registered
        packaged = package_model(registered, window)
        if config.rollout.strategy == "blue_green":
            handed_on = promote_champion(packaged, window, candidate)
        else:
            handed_on = request_rollout(packaged)
        if config.gate.require_approval:
            _approval(model, packaged) >> handed_on

    return continuous_training()


def _approval(model: ModelWiring, packaged):
    """A person's approval of the packaged version (Airflow's ApprovalOperator): Reject skips
    promote_champion."""
    from airloop.orchestration.approval import PromotionApproval

    return PromotionApproval(airloop_config=model.config, state_paths=model.paths, packaged=packaged)


def _trial_containers(model: ModelWiring, trials):
    """One DockerOperator per trial, running `airloop train` in the trainer image."""
    from airflow.providers.docker.operators.docker import DockerOperator

    from airloop.training.docker_runner import operator_kwargs, trial_kwargs

    shared = operator_kwargs(model.config, model.paths)
    return DockerOperator.partial(task_id="train_trial", **shared).expand_kwargs(trials.map(trial_kwargs))
