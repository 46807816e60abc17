"""Training/serving skew: the bento, served for real, must answer what the MLflow model answers.

Run before promotion on rows of the evaluation set: anything that differs between the two
paths (request typing, null handling, the model the bento loads) shows up as different
scores, and the version is not promoted.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from airloop.config import AirloopConfig
from airloop.data.frames import feature_frame
from airloop.data.labels import labelled_rows
from airloop.evaluation.metrics import model_scores
from airloop.packaging.serving import post_json, served_bento
from airloop.paths import StatePaths

# In score units (probabilities or target values). Not exact: float32 models (XGBoost, the
# MLP) may round differently when the server batches rows differently; a wrong model or
# transform differs by orders of magnitude more.
TOLERANCE = 1e-6


class TrainingServingSkew(RuntimeError):
    """The served bento's scores differ from the MLflow model's on the same rows."""


def check_skew(
    config: AirloopConfig, paths: StatePaths, bento: str, model_uri: str, frame: pd.DataFrame, rows: int = 200
) -> dict:
    """Serve `bento`, score `rows` rows of `frame` through it and through the MLflow model."""
    import mlflow

    sample = _servable(labelled_rows(frame, config), _bento_categories(paths, bento)).head(rows)
    # What a client sends: the raw columns as JSON (missing values as null).
    records = json.loads(sample[list(config.dataset.features)].to_json(orient="records"))
    mlflow.set_tracking_uri(paths.tracking_uri())
    expected = model_scores(mlflow.sklearn.load_model(model_uri), feature_frame(sample, config), config)
    log = paths.report_dir("skew") / f"{bento.replace(':', '-')}.log"
    with served_bento(bento, paths, log) as base:
        answers = post_json(f"{base}/predict", {"records": records})
    key = "score" if config.task == "binary_classification" else "prediction"
    served = np.array([answer[key] for answer in answers], dtype=float)
    difference = float(np.max(np.abs(served - expected))) if len(served) else 0.0
    summary = {"bento": bento, "rows": len(served), "max_abs_difference": difference}
    if len(served) != len(expected) or difference > TOLERANCE:
        raise TrainingServingSkew(
            f"bento {bento} and {model_uri} disagree on {len(sample)} evaluation rows: "
            f"largest score difference {difference:.3g} (allowed {TOLERANCE}); not promoting"
        )
    return summary


def _bento_categories(paths: StatePaths, bento: str) -> dict[str, list[str]]:
    from airloop.packaging.bento import use_bentoml_home

    use_bentoml_home(paths)
    import bentoml

    return dict(bentoml.bentos.get(bento).info.args.get("categories", {}))


def _servable(frame: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    """The rows the service accepts: the service answers a category it does not know with a
    400 by design, which is not skew."""
    keep = pd.Series(True, index=frame.index)
    for name, values in categories.items():
        keep &= frame[name].isna() | frame[name].astype(str).isin(values)
    return frame[keep]
