"""`airloop`: every stage of the loop from the command line, without Airflow.

Each command calls the same function the Airflow task calls, and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from airloop.config import AirloopConfig, ConfigError, load_config
from airloop.paths import StatePaths


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
    from airloop.data.frames import read_table
    from airloop.data.ingest import partition_of
    from airloop.data.validation import validate_frame

    path = Path(args.file)
    result_path = paths.report_dir("validation") / f"{partition_of(path)}.json"
    outcome = validate_frame(read_table(path), config, partition_of(path), result_path)
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

    _print(roll_back(config, paths))
    return 0


def cmd_pools(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.pools import pools_json

    print(pools_json())
    return 0


def cmd_devices(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.training.devices import GpuUnavailable, cuda_available, device_name, resolve_device

    report: dict = {"training.gpu": config.training.gpu, "cuda_available": cuda_available()}
    try:
        device = resolve_device(config.training.gpu)
    except GpuUnavailable as error:
        _print({**report, "error": str(error)})
        return 1
    _print({**report, "device": device, "name": device_name(device)})
    return 0


def cmd_retrain(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.pipelines.continuous_training import run_continuous_training

    _print(run_continuous_training(config, paths, [args.trigger], _run_key("cli")))
    return 0


def cmd_drift(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.pipelines.monitor_drift import check_drift

    _print(check_drift(config, paths, _run_key("cli")))
    return 0


def cmd_demo_land(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.demo.flights import land_month

    _print([str(land_month(month, paths.landing)) for month in args.months])
    return 0


def cmd_demo_run(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.demo.replay import replay

    if args.fresh and paths.home.exists():
        from airloop.stack import Stack

        Stack(paths).stop()
        shutil.rmtree(paths.home)

    return replay(config, paths, months=args.months, keep_running=args.keep_running)


def cmd_demo_summary(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.demo.summary import month_rows, render_table

    print(render_table(month_rows(paths)))
    return 0


def cmd_stack(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.stack import Stack, Topology

    wanted = None
    if args.action == "up" and args.executor:
        wanted = Topology(args.executor, args.database_url, args.broker_url, args.mlflow_database_url)
    try:
        stack = Stack(paths, topology=wanted)
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


def cmd_serve(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    import signal

    from airloop.packaging.champion_server import serve_champion

    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: stopping.append(number))
    serve_champion(config, paths, args.host, args.port, args.poll, should_stop=lambda: bool(stopping))
    return 0


def cmd_trigger(args: argparse.Namespace, config: AirloopConfig, paths: StatePaths) -> int:
    from airloop.trigger import TriggerError, client_from_env, default_run_id, parse_conf, trigger

    try:
        conf = parse_conf(args.conf)
        run_id = args.run_id or default_run_id(conf)
        run = trigger(client_from_env(paths), args.dag, conf, run_id, args.wait, args.timeout)
    except TriggerError as error:
        print(f"airloop trigger: {error}", file=sys.stderr)
        return error.exit_code
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
    parser = argparse.ArgumentParser(prog="airloop", description=__doc__)
    parser.add_argument("--config", help="config YAML (default: $AIRLOOP_CONFIG or configs/flights.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="check a config file").add_subparsers(dest="action", required=True)
    config.add_parser("check").set_defaults(func=cmd_config_check)
    sub.add_parser("ingest", help="validate and version every landed file").set_defaults(func=cmd_ingest)
    validate = sub.add_parser("validate", help="validate one file against the config's suite")
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
    profile.set_defaults(func=cmd_data_profile, needs_config=False)
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
    train.set_defaults(func=cmd_train)
    sub.add_parser(
        "rollback", help="put previous_champion back as champion and rebuild its bento"
    ).set_defaults(func=cmd_rollback)
    sub.add_parser("pools", help="the Airflow pools airloop uses, for `airflow pools import`").set_defaults(
        func=cmd_pools, needs_config=False
    )
    sub.add_parser(
        "devices", help="the device training would use here (GPU or CPU), from training.gpu"
    ).set_defaults(func=cmd_devices)
    serve = sub.add_parser("serve", help="serve the champion's bento; follow the champion when it moves")
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a container")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--poll", type=float, default=30, help="seconds between looks at the champion alias")
    serve.set_defaults(func=cmd_serve)
    retrain = sub.add_parser("retrain", help="the whole continuous-training flow in this process")
    retrain.add_argument(
        "--trigger", default="manual", choices=["manual", "drift", "new_data", "performance_drop", "schedule"]
    )
    retrain.set_defaults(func=cmd_retrain)
    sub.add_parser(
        "drift", help="check the newest window against the champion's training data and scores"
    ).set_defaults(func=cmd_drift)

    demo = sub.add_parser("demo", help="the nycflights13 demo").add_subparsers(dest="action", required=True)
    land = demo.add_parser("land", help="drop months of 2013 flights into the landing directory")
    land.add_argument("months", type=month_numbers)
    land.set_defaults(func=cmd_demo_land)
    run = demo.add_parser("run", help="replay months through a running Airflow and wait for the loop")
    run.add_argument("--months", type=month_numbers, default=month_numbers("1-12"))
    run.add_argument("--keep-running", action="store_true", help="leave Airflow running afterwards")
    run.add_argument("--fresh", action="store_true", help="stop Airflow and empty $AIRLOOP_HOME first")
    run.set_defaults(func=cmd_demo_run)
    demo.add_parser("summary", help="one row per month: what the loop did").set_defaults(
        func=cmd_demo_summary
    )

    triggering = sub.add_parser(
        "trigger",
        help="trigger a DAG run over Airflow's REST API (as CI does); exit 0 succeeded, 1 failed, "
        "2 refused, 3 paused, 4 timed out, 5 not authorised, 6 unreachable",
    )
    triggering.add_argument("dag", help="the DAG id, e.g. continuous_training")
    triggering.add_argument("--conf", help="the run's conf (its params), a JSON object")
    triggering.add_argument("--run-id", help="default: the same for every attempt of one CI pipeline run")
    triggering.add_argument(
        "--wait", action="store_true", help="wait for the run to finish; exit with its state"
    )
    triggering.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)")
    triggering.set_defaults(func=cmd_trigger, needs_config=False)

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
    stack.set_defaults(func=cmd_stack)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Profiling is how a config gets written: it must not need one.
        config = load_config(args.config) if getattr(args, "needs_config", True) else None
    except ConfigError as error:
        print(f"airloop: {error}", file=sys.stderr)
        return 2
    return int(args.func(args, config, StatePaths.from_env()))


if __name__ == "__main__":
    sys.exit(main())
