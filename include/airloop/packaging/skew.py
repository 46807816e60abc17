"""Training/serving skew: the bento, served for real, must answer what the MLflow model answers.

Run before promotion on rows of the evaluation set: anything that differs between the two
paths (request typing, null handling, the model the bento loads) shows up as different
scores, and the version is not promoted.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from airloop.config import DATE_TYPES, AirloopConfig
from airloop.data.dates import parse_dates
from airloop.data.frames import feature_frame
from airloop.data.labels import labelled_rows
from airloop.evaluation.metrics import model_scores
from airloop.packaging.serving import post_json, served_bento
from airloop.paths import StatePaths
from airloop.registry.tracking import point_mlflow_at

# In score units (probabilities or target values). Not exact: float32 models (XGBoost, the
# MLP) may round differently when the server batches rows differently; a wrong model or
# transform differs by orders of magnitude more.
TOLERANCE = 1e-6


class TrainingServingSkew(RuntimeError):
    """The served bento's scores differ from the MLflow model's on the same rows."""


def check_skew(
    config: AirloopConfig, paths: StatePaths, bento: str, model_uri: str, frame: pd.DataFrame, rows: int = 200
) -> dict:
    """Serve `bento`, score `rows` rows of `frame` through it and through the MLflow model.

    Compared are the scores: P(1) (binary), every class's probability (multiclass, in the
    model's class order), the value (regression).
    """
    import mlflow

    args = _bento_args(paths, bento)
    sample = _servable(labelled_rows(frame, config), args).head(rows)
    records = _as_sent(sample, config)
    point_mlflow_at(paths)
    expected = model_scores(mlflow.sklearn.load_model(model_uri), feature_frame(sample, config), config)
    log = paths.report_dir("skew") / f"{bento.replace(':', '-')}.log"
    with served_bento(bento, paths, log) as base:
        answers = post_json(f"{base}/predict", {"records": records})
    served = _served_scores(answers, config, args)
    difference = float(np.max(np.abs(served - expected))) if len(served) else 0.0
    summary = {"bento": bento, "rows": len(served), "max_abs_difference": difference}
    if served.shape != expected.shape or difference > TOLERANCE:
        raise TrainingServingSkew(
            f"bento {bento} and {model_uri} disagree on {len(sample)} evaluation rows: "
            f"largest score difference {difference:.3g} (allowed {TOLERANCE}); not promoting"
        )
    return summary


def _served_scores(answers: list[dict], config: AirloopConfig, args: dict) -> np.ndarray:
    if config.task == "multiclass_classification":
        keys = [str(c) for c in args.get("classes") or []]
        return np.array([[a["probabilities"][k] for k in keys] for a in answers], dtype=float).reshape(
            -1, len(keys)
        )
    key = "score" if config.task == "binary_classification" else "prediction"
    return np.array([answer[key] for answer in answers], dtype=float)


def _bento_args(paths: StatePaths, bento: str) -> dict:
    from airloop.packaging.bento import use_bentoml_home

    use_bentoml_home(paths)
    import bentoml

    return dict(bentoml.bentos.get(bento).info.args)


def _servable(frame: pd.DataFrame, args: dict) -> pd.DataFrame:
    """The rows the service accepts. It answers a value outside a column's `allowed:` and a
    date that does not read with a 400 by design, which is not skew; a category merely
    unseen in training is served (through the model's unknown bucket), so it is kept."""
    keep = pd.Series(True, index=frame.index)
    # Bentos built before `allowed` named in "categories" every value they refused.
    for name, values in args.get("allowed", args.get("categories", {})).items():
        keep &= frame[name].isna() | frame[name].astype(str).isin(values)
    for name, fmt in _date_formats(args).items():
        keep &= frame[name].isna() | parse_dates(frame[name], fmt).notna().to_numpy()
    return frame[keep]


def _date_formats(args: dict) -> dict[str, str | None]:
    formats = args.get("date_formats", {})
    return {name: formats.get(name) for name, kind in args["features"].items() if kind in DATE_TYPES}


def _as_sent(sample: pd.DataFrame, config: AirloopConfig) -> list[dict]:
    """What a client sends: the raw columns as JSON, missing values as null, dates as text
    (in the column's format, else ISO 8601)."""
    features = sample[list(config.dataset.features)].copy()
    for name in config.dataset.date_features():
        column = features[name]
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            fmt = config.dataset.columns[name].format
            text = column.dt.strftime(fmt) if fmt else column.map(lambda t: t.isoformat(), na_action="ignore")
            features[name] = text.astype(object).where(column.notna(), None)
    return json.loads(features.to_json(orient="records"))
