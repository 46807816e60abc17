"""The training entrypoint: fit a candidate on a training window and log it to MLflow.

It reads a request file and writes a result file, so it runs the same way in-process, as a
local subprocess, or in a container (`airloop train --request ...`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from airloop.config import AirloopConfig, parse_config
from airloop.data.frames import feature_frame, labelled_rows, labels
from airloop.evaluation.metrics import model_scores, score_all
from airloop.paths import StatePaths
from airloop.tracking import config_hash, environment_tags, package_versions, use_tracking
from airloop.training.models import build_pipeline

# Passing requirements explicitly skips MLflow's inference, which costs seconds per model.
_SERVING_PACKAGES = ("scikit-learn", "xgboost", "pandas", "numpy", "skops")
# What a run records of its environment, to be reproduced later.
_RECORDED_PACKAGES = (*_SERVING_PACKAGES, "mlflow", "dvc", "great-expectations", "evidently", "bentoml")


@dataclass(frozen=True)
class TrainRequest:
    """Everything a training process needs, so a container needs no config file of its own."""

    config: dict
    train_path: str
    eval_path: str
    tags: dict[str, str]

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> TrainRequest:
        return cls(**json.loads(path.read_text()))


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    seconds: float

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> TrainResult:
        return cls(**json.loads(path.read_text()))


def train_candidate(request: TrainRequest, paths: StatePaths) -> TrainResult:
    """Fit the configured pipeline, score it on the evaluation set, and log everything to MLflow."""
    import mlflow
    from mlflow.models import infer_signature

    started = time.monotonic()
    config = parse_config(request.config, "the training request")
    use_tracking(config, paths)
    train = labelled_rows(pd.read_parquet(request.train_path), config)
    evaluation = pd.read_parquet(request.eval_path)
    features, target = feature_frame(train, config), labels(train, config)

    pipeline = build_pipeline(config)
    with mlflow.start_run(tags={**request.tags, "airloop.config_hash": config_hash(config)}) as run:
        mlflow.log_params(
            {
                "family": config.model.family,
                "seed": config.model.seed,
                "train_rows": len(train),
                **config.model.params,
            }
        )
        mlflow.set_tags(environment_tags())
        mlflow.log_dict(package_versions(_RECORDED_PACKAGES), "environment/packages.json")
        pipeline.fit(features, target)
        eval_rows = labelled_rows(evaluation, config)
        y_eval = labels(eval_rows, config).to_numpy()
        scores = model_scores(pipeline, feature_frame(eval_rows, config), config)
        metrics = score_all(y_eval, scores, config)
        mlflow.log_metrics({f"eval_{name}": value for name, value in metrics.items()})
        for name, figure in _figures(config, pipeline, y_eval, scores).items():
            mlflow.log_figure(figure, f"plots/{name}.png")
        example = features.head(5)
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            pip_requirements=[f"{pkg}=={version(pkg)}" for pkg in _SERVING_PACKAGES],
            signature=infer_signature(example, pipeline.predict(example)),
            input_example=example,
            skops_trusted_types=_trusted_types(pipeline),
        )
        seconds = time.monotonic() - started
        mlflow.log_metric("train_seconds", seconds)
    return TrainResult(run.info.run_id, info.model_uri, metrics, seconds)


def _figures(config: AirloopConfig, pipeline: Any, y_eval: Any, scores: Any) -> dict[str, Any]:
    from airloop.evaluation.plots import classification_figures, feature_importance_figure, regression_figures

    classify = config.task == "binary_classification"
    figures = classification_figures(y_eval, scores) if classify else regression_figures(y_eval, scores)
    importance = feature_importance_figure(pipeline, list(config.dataset.features))
    if importance is not None:
        figures["feature_importance"] = importance
    return figures


def _trusted_types(pipeline: object) -> list[str]:
    """Types skops must be told to trust when loading this pipeline (it refuses unknown ones)."""
    import skops.io

    blob = skops.io.dumps(pipeline)
    return skops.io.get_untrusted_types(data=blob)
