"""The training entrypoint: fit one trial on a training window and log it to MLflow.

It reads a request file and writes a result file, so it runs the same way in-process, as a
local subprocess, or in a container (`airloop train --request ...`). The newest rows of
the training set are held out as validation data: the learning curve, early stopping and
the choice between hyperparameter trials use them; the evaluation set stays for the gate.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from airloop.config import GPU_FAMILIES, AirloopConfig, Label, parse_config
from airloop.data.frames import feature_frame
from airloop.data.labels import CLASSES_METADATA, labelled_rows, labels, predicted_classes, training_classes
from airloop.evaluation.metrics import model_scores, score_all
from airloop.paths import StatePaths
from airloop.registry.tracking import config_hash, environment_tags, package_versions, use_tracking
from airloop.training.dataset import require_columns, split_validation
from airloop.training.devices import Device, device_name, resolve_device
from airloop.training.fitting import History, fit_with_validation
from airloop.training.models import build_pipeline

# Passing requirements explicitly skips MLflow's inference, which costs seconds per model.
_SERVING_PACKAGES = ("scikit-learn", "pandas", "numpy", "skops")
_FAMILY_PACKAGES = {"xgboost": ("xgboost",), "torch_mlp": ("torch",)}
# What a run records of its environment, to be reproduced later.
_RECORDED_PACKAGES = (
    *_SERVING_PACKAGES,
    "xgboost",
    "torch",
    "mlflow",
    "dvc",
    "great-expectations",
    "evidently",
    "bentoml",
)


@dataclass(frozen=True)
class TrainRequest:
    """Everything a training process needs, so a container needs no config file of its own."""

    config: dict
    train_path: str
    eval_path: str
    tags: dict[str, str]
    # Hyperparameter search: the trial's number and the MLflow run its run is a child of.
    trial: int = 0
    parent_run_id: str | None = None

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
    # Scored on the evaluation set (what the gate compares) and on the validation rows
    # (what picks the best trial).
    metrics: dict[str, float]
    validation: dict[str, float]
    seconds: float
    trial: int = 0
    params: dict = field(default_factory=dict)
    device: str = "cpu"

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> TrainResult:
        return cls(**json.loads(path.read_text()))


@dataclass(frozen=True)
class _Rows:
    """The request's data as the trainer uses it: fit and validation rows, the evaluation set."""

    fit: pd.DataFrame
    validation: pd.DataFrame
    evaluation: pd.DataFrame
    # A multiclass model's classes (those of the fit rows); validation and evaluation rows
    # of any other class cannot be scored by it and are left out.
    classes: list[Label] | None = None

    @classmethod
    def read(cls, request: TrainRequest, config: AirloopConfig) -> _Rows:
        train = labelled_rows(pd.read_parquet(request.train_path), config)
        fit, validation = split_validation(train, config)
        evaluation = pd.read_parquet(request.eval_path)
        if config.task != "multiclass_classification":
            return cls(fit, validation, labelled_rows(evaluation, config))
        classes = training_classes(fit, config)
        if len(classes) < 2:
            raise ValueError(
                f"dataset.target: the training rows hold {len(classes)} class(es) {classes}; "
                "a multiclass model needs at least two"
            )
        return cls(
            fit,
            labelled_rows(validation, config, classes),
            labelled_rows(evaluation, config, classes),
            classes,
        )

    def xy(self, part: str, config: AirloopConfig) -> tuple[pd.DataFrame, Any]:
        rows = getattr(self, part)
        return feature_frame(rows, config), labels(rows, config, self.classes).to_numpy()


def train_candidate(request: TrainRequest, paths: StatePaths) -> TrainResult:
    """Fit the configured pipeline, score it, and log the run (and its model) to MLflow.

    Everything that can be wrong with the request (config, GPU, columns) fails before the
    data is read or a run is started.
    """
    import mlflow

    started = time.monotonic()
    config = parse_config(request.config, "the training request")
    device = resolve_device(config.training.gpu) if config.model.family in GPU_FAMILIES else "cpu"
    require_columns(request.train_path, config)
    require_columns(request.eval_path, config)
    use_tracking(config, paths)
    rows = _Rows.read(request, config)
    (fit_X, fit_y), (valid_X, valid_y) = rows.xy("fit", config), rows.xy("validation", config)
    eval_X, eval_y = rows.xy("evaluation", config)

    pipeline = build_pipeline(config, device)
    tags = {"airloop.config_hash": config_hash(config), **request.tags, "airloop.trial": str(request.trial)}
    with mlflow.start_run(tags=tags, parent_run_id=request.parent_run_id, run_name=_run_name(request)) as run:
        _log_context(request, config, device, rows)
        fit_started = time.monotonic()
        curves = fit_with_validation(pipeline, config, (fit_X, fit_y), (valid_X, valid_y))
        fit_seconds = time.monotonic() - fit_started
        _log_curves(run.info.run_id, curves)
        validation = score_all(valid_y, model_scores(pipeline, valid_X, config), config)
        scores = model_scores(pipeline, eval_X, config)
        metrics = score_all(eval_y, scores, config)
        mlflow.log_metrics({f"val_{name}": value for name, value in validation.items()})
        mlflow.log_metrics({f"eval_{name}": value for name, value in metrics.items()})
        for name, figure in _figures(config, pipeline, eval_y, scores, rows.classes).items():
            mlflow.log_figure(figure, f"plots/{name}.png")
        info = _log_model(pipeline, config, fit_X.head(5), rows.classes)
        _log_reference_profile(request, config, pipeline, rows.classes)
        seconds = time.monotonic() - started
        speed = {"fit_seconds": fit_seconds, "fit_rows_per_second": len(fit_X) / fit_seconds}
        mlflow.log_metrics({**speed, "train_seconds": seconds})
    params = dict(config.model.params)
    return TrainResult(
        run.info.run_id, info.model_uri, metrics, validation, seconds, request.trial, params, device
    )


def _log_context(request: TrainRequest, config: AirloopConfig, device: Device, rows: _Rows) -> None:
    """What the run trained with and where: params, seed, device, sizes, environment, config."""
    import mlflow

    mlflow.log_params(
        {
            "family": config.model.family,
            "seed": config.model.seed,
            "device": device,
            "train_rows": len(rows.fit),
            "validation_rows": len(rows.validation),
            **config.model.params,
        }
    )
    mlflow.set_tags({**environment_tags(), "airloop.device": device_name(device)})
    mlflow.log_dict(package_versions(_RECORDED_PACKAGES), "environment/packages.json")
    mlflow.log_dict(request.config, "config.json")


def _log_reference_profile(
    request: TrainRequest, config: AirloopConfig, model: Any, classes: list[Label] | None
) -> None:
    """The training set's drift reference (and the model's scores on it), kept with the run."""
    import tempfile

    import mlflow

    from airloop.monitoring.reference import REFERENCE_ARTIFACT, reference_profile

    train = pd.read_parquet(request.train_path)
    scores = model_scores(model, feature_frame(train, config), config)
    predictions = predicted_classes(scores, classes) if classes is not None else scores
    profile = reference_profile(train, config, predictions)
    with tempfile.TemporaryDirectory() as tmp:
        path = profile.save(Path(tmp) / Path(REFERENCE_ARTIFACT).name)
        mlflow.log_artifact(str(path), str(Path(REFERENCE_ARTIFACT).parent))


def _run_name(request: TrainRequest) -> str | None:
    return f"trial-{request.trial}" if request.parent_run_id else None


def _log_curves(run_id: str, curves: History) -> None:
    """Per-iteration (boosting round or epoch) metrics, in batches: one call per value is slow."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    points = [
        Metric(name, value, now, step) for name, values in curves.items() for step, value in enumerate(values)
    ]
    client = MlflowClient()
    for start in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[start : start + 1000])


def _log_model(
    pipeline: Any, config: AirloopConfig, example: pd.DataFrame, classes: list[Label] | None
) -> Any:
    import mlflow
    from mlflow.models import infer_signature

    packages = (*_SERVING_PACKAGES, *_FAMILY_PACKAGES.get(config.model.family, ()))
    return mlflow.sklearn.log_model(
        pipeline,
        name="model",
        # Without a local suffix ("2.13.0+cpu"): that build is not on PyPI, the version is.
        pip_requirements=[f"{pkg}=={version(pkg).split('+')[0]}" for pkg in packages],
        signature=infer_signature(example, pipeline.predict(example)),
        input_example=example,
        skops_trusted_types=_trusted_types(pipeline),
        # The network's estimator and the date-parts step are airloop code: ship it with the model.
        code_paths=[str(Path(__file__).resolve().parents[1])] if _needs_airloop(config) else None,
        # Serving answers class names, and later evaluations score in this class order.
        metadata={CLASSES_METADATA: classes} if classes is not None else None,
    )


def _needs_airloop(config: AirloopConfig) -> bool:
    return config.model.family == "torch_mlp" or bool(config.dataset.date_features())


def _figures(
    config: AirloopConfig, pipeline: Any, y_eval: Any, scores: Any, classes: list[Label] | None
) -> dict[str, Any]:
    from airloop.evaluation import plots

    if config.task == "binary_classification":
        figures = plots.classification_figures(y_eval, scores)
    elif classes is not None:
        figures = plots.multiclass_figures(y_eval, scores, [str(c) for c in classes])
    else:
        figures = plots.regression_figures(y_eval, scores)
    importance = plots.feature_importance_figure(pipeline, list(config.dataset.features))
    if importance is not None:
        figures["feature_importance"] = importance
    return figures


def _trusted_types(pipeline: object) -> list[str]:
    """Types skops must be told to trust when loading this pipeline (it refuses unknown ones)."""
    import skops.io

    blob = skops.io.dumps(pipeline)
    return skops.io.get_untrusted_types(data=blob)
