"""`airloop`: every stage of the loop from the command line, without Airflow.

Each command calls the same function the Airflow task calls, and prints JSON. A command
about one model takes it with `--model NAME` (a model of the deployment, see
`airloop.deployment`) or `--config FILE`; a deployment with one model needs neither.
Commands about the deployment (`models`, `stack`, `serve`, `demo run`) take every model,
or only the one named.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from airloop.config import AirloopConfig, ConfigError
from airloop.deployment import Deployment, load_deployment, load_model_config, overlay_files
from airloop.paths import StatePaths

MODEL, DEPLOYMENT, NO_MODEL = "model", "deployment", "no model"


@dataclass(frozen=True)
class Selection:
    """The models a command is about: the deployment's, or the one `--model`/`--config` names."""

    configs: list[AirloopConfig]
    files: dict[str, Path]
    broken: dict[Path, str]
    # The files named on the command line (None: the deployment's, as the environment says).
    named_files: list[Path] | None = None

    def one(self) -> AirloopConfig:
        if len(self.configs) == 1 and (self.named_files or not self.broken):
            return self.configs[0]
        return Deployment({c.name: c for c in self.configs}, self.files, self.broken).only_model()

    def configs_spec(self) -> str | None:
        """What `$AIRLOOP_CONFIGS` must say for Airflow to run exactly these models."""
        return os.pathsep.join(str(f) for f in self.named_files) if self.named_files else None

    def dag_id(self, dag: str) -> str:
        """A DAG id as given, or a stage (`continuous_training`) of the one model."""
        from airloop.orchestration.naming import STAGES, dag_id

        return dag_id(self.one().name, dag) if dag in STAGES else dag


def select(model: str | None, config_file: str | None) -> Selection:
    """The models `--model` or `--config` name, else the whole deployment."""
    if config_file:
        path = Path(config_file).resolve()
        config = load_model_config(path, overlay_files())
        return Selection([config], {config.name: path}, {}, [path])
    deployment = load_deployment()
    if model:
        config = deployment.model(model)
        return Selection([config], {model: deployment.files[model]}, {}, [deployment.files[model]])
    return Selection(
        [deployment.models[name] for name in deployment.names()], deployment.files, deployment.broken
    )


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


def _run_key(prefix: str) -> str:
    return f"{prefix}__{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"


def cmd_config_check(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    _print({"config": config.name, "task": config.task, "features": list(config.dataset.features)})
    return 0


def cmd_ingest(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.pipelines.ingest_data import ingest_landed

    outcomes = ingest_landed(config, paths)
    _print(outcomes)
    return 0 if all(o["accepted"] for o in outcomes) else 1


def cmd_validate(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.data.ingest import partition_of
    from airloop.data.validation import check_partition_file

    path = Path(args.file)
    outcome = check_partition_file(path, config, paths, partition_of(path))
    _print(outcome.summary())
    return 0 if outcome.success else 1


def cmd_data_profile(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.data.profile import profile_yaml

    try:
        text = profile_yaml(args.files, target=args.target, task=args.task, name=args.name)
    except ValueError as error:
        print(f"airloop data profile: {error}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


def cmd_data_revalidate(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.data.validation import revalidate_quarantined

    outcome = revalidate_quarantined(args.partition, config, paths)
    verdict = "released to the landing directory" if outcome.success else "still fails: stays in quarantine"
    _print({"partition": args.partition, "verdict": verdict, **outcome.summary()})
    return 0 if outcome.success else 1


def cmd_data_checkout(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.data.versioning import checkout

    _print({"hash": args.hash, "written": str(checkout(args.hash, paths, Path(args.to)))})
    return 0


def cmd_train(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.training.train import TrainRequest, train_candidate

    result = train_candidate(TrainRequest.read(Path(args.request)), paths)
    result.write(Path(args.result))
    _print(asdict(result))
    return 0


def cmd_rollback(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.pipelines.rollback_champion import roll_back

    _print(roll_back(config, paths, actor=_os_user(), reason=args.reason))
    return 0


def cmd_history(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.registry.ledger import history_text, read_ledger

    entries = read_ledger(paths)
    if args.json:
        _print({"model": config.name, "ledger": str(paths.ledger), "entries": entries})
    else:
        print(f"{config.name}: {len(entries)} move(s) in {paths.ledger}\n{history_text(entries)}")
    return 0


def _os_user() -> str:
    """Who runs this command, as the OS knows them (a container's uid may have no name)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def cmd_pools(args: argparse.Namespace, selection: Selection, paths: StatePaths) -> int:
    from airloop.orchestration.pools import pools_json

    print(pools_json(c.name for c in selection.configs))
    return 0


def cmd_models(args: argparse.Namespace, selection: Selection, paths: StatePaths) -> int:
    from airloop.model_status import model_status, render_status

    statuses = [model_status(config, paths) for config in selection.configs]
    if args.json:
        _print({"models": statuses, "broken": {str(k): v for k, v in selection.broken.items()}})
    else:
        print(render_status(statuses))
        for path, error in selection.broken.items():
            print(f"\nbroken config {path}:\n{error}")
    return 1 if selection.broken else 0


def cmd_devices(args: argparse.Namespace, selection: Selection, paths: StatePaths) -> int:
    from airloop.training.devices import GpuUnavailable, cuda_available, device_name, resolve_device

    report: dict = {"cuda_available": cuda_available(), "models": {}}
    failed = False
    for config in selection.configs:
        model: dict = {"training.gpu": config.training.gpu, "family": config.model.family}
        try:
            device = resolve_device(config.training.gpu)
            model.update(device=device, name=device_name(device))
        except GpuUnavailable as error:
            model["error"], failed = str(error), True
        report["models"][config.name] = model
    _print(report)
    return 1 if failed else 0


def cmd_retrain(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.pipelines.continuous_training import run_continuous_training

    _print(run_continuous_training(config, paths, [args.trigger], _run_key("cli")))
    return 0


def cmd_drift(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.pipelines.monitor_drift import check_drift

    _print(check_drift(config, paths, _run_key("cli")))
    return 0


def cmd_score(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.production.batch_scoring import score_given_file, score_pending

    summary = score_given_file(config, paths, Path(args.file)) if args.file else score_pending(config, paths)
    _print(summary)
    return 0 if summary["status"] in ("scored", "nothing_pending") and not summary["rejected"] else 1


def cmd_demo_land(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.demo.landing import demo_landings

    landings = demo_landings(config.name, args.months)
    if landings is None:
        print(f"airloop demo: the demo has no data for model {config.name!r}", file=sys.stderr)
        return 2
    _print([str(land(paths.landing)) for _, land in landings])
    return 0


def cmd_demo_run(args: argparse.Namespace, selection: Selection, paths: StatePaths) -> int:
    from functools import partial

    from airloop.demo.landing import demo_asked, demo_landings
    from airloop.demo.replay import ModelReplay, replay

    models = [
        ModelReplay(
            config,
            selection.files[config.name],
            paths.for_model(config.name),
            landings,
            asked=partial(demo_asked, config.name),
        )
        for config in selection.configs
        if (landings := demo_landings(config.name, args.months)) is not None
    ]
    if not models:
        print(f"airloop demo: no demo data for {[c.name for c in selection.configs]}", file=sys.stderr)
        return 2
    if args.fresh and paths.home.exists():
        from airloop.ops.stack import Stack

        Stack(paths).stop()
        shutil.rmtree(paths.home)
    from airloop.ops.stack import free_ports

    # One port per model from the base port (`airloop serve`'s layout).
    port = None if args.no_traffic else (args.serve_port or free_ports(len(models)))
    return replay(models, paths, keep_running=args.keep_running, serving_port=port)


def cmd_demo_summary(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.demo.summary import month_rows, render_months

    print(render_months(month_rows(paths, config)))
    return 0


def cmd_stack(args: argparse.Namespace, selection: Selection, paths: StatePaths) -> int:
    from airloop.ops.stack import Stack, Topology

    wanted = None
    if args.action == "up" and args.executor:
        wanted = Topology(args.executor, args.database_url, args.broker_url, args.mlflow_database_url)
    try:
        stack = Stack(paths, configs=selection.configs_spec(), topology=wanted)
        stack.settings()
    except ValueError as error:
        print(f"airloop stack: {error}", file=sys.stderr)
        return 2
    if args.action == "up":
        stack.start()
        _print(stack.describe())
    elif args.action == "down":
        stack.stop()
    else:
        _print(stack.describe())
    return 0


def cmd_serve(args: argparse.Namespace, selection: Selection, paths: StatePaths) -> int:
    import signal

    from airloop.packaging.champion_server import serve_champions, serving_ports

    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: stopping.append(number))
    for name, port in serving_ports(selection.configs, args.port).items():
        print(f"airloop serve: {name} at http://{args.host}:{port} once it has a champion", flush=True)
    from airloop.ops.debian_tools import ToolNotFound

    try:
        serve_champions(
            selection.configs, paths, args.host, args.port, args.poll, should_stop=lambda: bool(stopping)
        )
    except ToolNotFound as missing:
        print(f"airloop serve: {missing}", file=sys.stderr)
        return 2
    return 0


def cmd_trigger(args: argparse.Namespace, selection: Selection, paths: StatePaths) -> int:
    from airloop.ops.trigger import (
        REFUSED,
        TriggerError,
        client_from_env,
        default_run_id,
        parse_conf,
        trigger,
    )

    try:
        conf = parse_conf(args.conf)
        run_id = args.run_id or default_run_id(conf)
        dag = selection.dag_id(args.dag)
        run = trigger(client_from_env(paths), dag, conf, run_id, args.wait, args.timeout)
    except TriggerError as error:
        print(f"airloop trigger: {error}", file=sys.stderr)
        return error.exit_code
    except ConfigError as error:  # a stage, but which model's?
        print(f"airloop trigger: {error}", file=sys.stderr)
        return REFUSED
    _print(run.to_dict())
    if run.already_triggered:
        print(f"airloop trigger: run {run.run_id} was triggered before (a rerun): not again", file=sys.stderr)
    if run.failed_tasks:
        print(
            f"airloop trigger: {run.dag_id} failed in {', '.join(run.failed_tasks)}: {run.url}",
            file=sys.stderr,
        )
    return run.exit_code


def month_numbers(text: str) -> list[int]:
    """'1-12' or '1,2,5' → month numbers."""
    months: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        months.extend(range(int(low), int(high or low) + 1))
    if not all(1 <= m <= 12 for m in months):
        raise argparse.ArgumentTypeError(f"months must lie in 1..12, got {text!r}")
    return months


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airloop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--model", help="a model of the deployment, by name (`airloop models` lists them)")
    chosen.add_argument(
        "--config", help="a model config file (the overlays of $AIRLOOP_OVERLAYS are laid over it)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="check a config file").add_subparsers(dest="action", required=True)
    config.add_parser("check").set_defaults(func=cmd_config_check)
    sub.add_parser("ingest", help="validate and version every landed file").set_defaults(func=cmd_ingest)
    validate = sub.add_parser(
        "validate", help="run the ingest task's checks on one file (it is not moved or quarantined)"
    )
    validate.add_argument("file")
    validate.set_defaults(func=cmd_validate)
    data = sub.add_parser("data", help="partitions: profile, revalidate, checkout").add_subparsers(
        dest="action", required=True
    )
    profile = data.add_parser(
        "profile",
        help="propose the dataset section of a config from partition files; with --target, a whole config",
    )
    profile.add_argument(
        "files", nargs="+", metavar="FILE", help="CSV or Parquet files, one per partition, or quoted globs"
    )
    profile.add_argument("--target", help="the column to predict: write a complete config")
    profile.add_argument(
        "--task",
        choices=["binary_classification", "multiclass_classification", "regression"],
        help="with --target (default: inferred from the target's values)",
    )
    profile.add_argument("--name", help="with --target: the config's name (default: from the files' names)")
    profile.set_defaults(func=cmd_data_profile, scope=NO_MODEL)
    revalidate = data.add_parser(
        "revalidate", help="validate a quarantined partition again; release it if it passes"
    )
    revalidate.add_argument("partition")
    revalidate.set_defaults(func=cmd_data_revalidate)
    checkout = data.add_parser("checkout", help="restore the exact bytes of a DVC hash")
    checkout.add_argument("hash")
    checkout.add_argument("--to", default=".", help="a file path, or a folder (default: here)")
    checkout.set_defaults(func=cmd_data_checkout)
    train = sub.add_parser("train", help="the training entrypoint (what runners execute)")
    train.add_argument("--request", required=True)
    train.add_argument("--result", required=True)
    train.set_defaults(func=cmd_train, scope=NO_MODEL)  # the request carries the config
    rollback = sub.add_parser("rollback", help="put previous_champion back as champion and rebuild its bento")
    rollback.add_argument(
        "--reason", default="manual rollback", help="why: kept in the model's promotion ledger"
    )
    rollback.set_defaults(func=cmd_rollback)
    history = sub.add_parser(
        "history", help="the model's promotion ledger: every alias move, who, why, when, its evidence"
    )
    # Also after the command (`airloop history --model M`); `airloop --model M history` as elsewhere.
    history.add_argument("--model", default=argparse.SUPPRESS, help="as before the command")
    history.add_argument("--json", action="store_true", help="every entry, as JSON")
    history.set_defaults(func=cmd_history)
    sub.add_parser("pools", help="every model's Airflow pools, for `airflow pools import`").set_defaults(
        func=cmd_pools, scope=DEPLOYMENT
    )
    models = sub.add_parser("models", help="each model: its champion, last decision and last drift check")
    models.add_argument("--json", action="store_true", help="everything known, as JSON")
    models.set_defaults(func=cmd_models, scope=DEPLOYMENT)
    sub.add_parser(
        "devices", help="the device each model's training would use here (GPU or CPU), from training.gpu"
    ).set_defaults(func=cmd_devices, scope=DEPLOYMENT)
    serve = sub.add_parser(
        "serve",
        help="serve every model's champion bento (or --model's), each on its own port; follow each "
        "champion when it moves",
    )
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a container")
    serve.add_argument(
        "--port", type=int, default=3000, help="the first model's port, in name order; the next gets +1, ..."
    )
    serve.add_argument("--poll", type=float, default=2, help="seconds between looks at the registry")
    serve.set_defaults(func=cmd_serve, scope=DEPLOYMENT)
    retrain = sub.add_parser("retrain", help="the whole continuous-training flow in this process")
    retrain.add_argument(
        "--trigger", default="manual", choices=["manual", "drift", "new_data", "performance_drop", "schedule"]
    )
    retrain.set_defaults(func=cmd_retrain)
    sub.add_parser(
        "drift", help="check the newest window against the champion's training data and scores"
    ).set_defaults(func=cmd_drift)
    score = sub.add_parser(
        "score", help="score every file pending in the scoring location with the champion, or FILE"
    )
    score.add_argument("file", nargs="?", help="a CSV or Parquet file (outside the location: not moved)")
    score.set_defaults(func=cmd_score)

    demo = sub.add_parser(
        "demo", help="the nycflights13 demo: flights and weather, side by side"
    ).add_subparsers(dest="action", required=True)
    land = demo.add_parser("land", help="drop months of 2013 into the model's landing directory")
    land.add_argument("months", type=month_numbers)
    land.set_defaults(func=cmd_demo_land)
    run = demo.add_parser(
        "run", help="replay months of every demo model (or --model's) through Airflow; wait for each loop"
    )
    run.add_argument("--months", type=month_numbers, default=month_numbers("1-12"))
    run.add_argument("--keep-running", action="store_true", help="leave Airflow running afterwards")
    run.add_argument("--fresh", action="store_true", help="stop Airflow and empty $AIRLOOP_HOME first")
    run.add_argument(
        "--serve-port", type=int, default=None,
        help="serve the champions from this port while replaying (default: a free one)",
    )  # fmt: skip
    run.add_argument(
        "--no-traffic", action="store_true",
        help="no live traffic: don't serve the champions, send them the next month or join its labels",
    )  # fmt: skip
    run.set_defaults(func=cmd_demo_run, scope=DEPLOYMENT)
    demo.add_parser("summary", help="one row per month: what the loop did").set_defaults(
        func=cmd_demo_summary
    )

    triggering = sub.add_parser(
        "trigger",
        help="trigger a DAG run over Airflow's REST API (as CI does); exit 0 succeeded, 1 failed, "
        "2 refused, 3 paused, 4 timed out, 5 not authorised, 6 unreachable",
    )
    triggering.add_argument(
        "dag",
        help="the DAG id, e.g. flights__continuous_training, or a stage of --model's: continuous_training",
    )
    triggering.add_argument("--conf", help="the run's conf (its params), a JSON object")
    triggering.add_argument("--run-id", help="default: the same for every attempt of one CI pipeline run")
    triggering.add_argument(
        "--wait", action="store_true", help="wait for the run to finish; exit with its state"
    )
    triggering.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)")
    triggering.set_defaults(func=cmd_trigger, scope=DEPLOYMENT)

    stack = sub.add_parser(
        "stack",
        help="Airflow on this machine (api-server, scheduler, ...); the embedded default unless "
        "`up --executor celery` (PostgreSQL, Redis, a Celery worker, an MLflow server) sets it up otherwise",
    )
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--executor", choices=["local", "celery"], help="first `up` only; default local")
    stack.add_argument("--database-url", help="Airflow's metadata database, e.g. postgresql+psycopg2://...")
    stack.add_argument("--broker-url", help="Celery's broker, e.g. redis://127.0.0.1:6379/0")
    stack.add_argument("--mlflow-database-url", help="run an MLflow server on this database")
    stack.set_defaults(func=cmd_stack, scope=DEPLOYMENT)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scope = getattr(args, "scope", MODEL)
    paths = StatePaths.from_env()
    try:
        if scope == NO_MODEL:  # profiling is how a config gets written: it must not need one
            return int(args.func(args, None, paths))
        selection = select(args.model, args.config)
        if scope == DEPLOYMENT:
            return int(args.func(args, selection, paths))
        config = selection.one()
    except ConfigError as error:
        print(f"airloop: {error}", file=sys.stderr)
        return 2
    return int(args.func(args, config, paths.for_model(config.name)))


if __name__ == "__main__":
    sys.exit(main())
