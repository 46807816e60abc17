"""The BentoML service that serves one registered model version to HTTP clients.

Nothing here names a dataset. What the service serves is decided when the bento is built
(`airloop.packaging.bento.build_bento`) and passed as BentoML template arguments
(`bentoml.use_arguments`). BentoML stores them in the bento's `bento.yaml` and hands them
back to this module every time the bento is served, so a served bento always loads the
exact model version it was built for (`bentoml get <bento tag>` shows them under `args`):

    model_tag         BentoML model holding the MLflow model, e.g. "flights-late-arrival:v3"
    registered_name   MLflow registered model name, e.g. "flights-late-arrival"
    registry_version  MLflow registry version, e.g. "3"
    task              "binary_classification" or "regression"
    features          {column: "int" | "float" | "str" | "bool"}, in the model's column order
    nullable          the features that may be null
    categories        {column: [values]}: the values a categorical may take (those the
                      config allows, else those seen in training); others get a 400
    max_batch         the most records one request may carry

The bento holds this file alone (not the airloop package), so it imports nothing from
airloop. For development, serve it straight from source with the arguments in a YAML file:
`bentoml serve service.py:TabularModel --arg-file args.yaml`.

API: POST /predict {"records": [{feature: value, ...}, ...]} returns, per record,
{"prediction", "score", "model_name", "model_version"}; POST /predict_one {"record": {...}}
returns one. A request that does not fit the schema (a missing or extra field, a wrong
type, NaN or infinity, an unknown category, more than max_batch records) gets a 400 that
names the field. /readyz answers once the model is loaded; /metrics is Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import bentoml
import numpy as np
import pandas as pd
from bentoml._internal.server.http import traffic
from pydantic import BaseModel, ConfigDict, Field, create_model

# Where build_bento puts the MLflow model inside the BentoML model.
MLFLOW_MODEL_FOLDER = "mlflow_model"


class ServeArgs(BaseModel):
    """The template arguments build_bento passes; validated when the bento is loaded."""

    # pydantic reserves the "model_" prefix unless told otherwise; model_tag is ours.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_tag: str
    registered_name: str
    registry_version: str
    task: Literal["binary_classification", "regression"]
    features: dict[str, Literal["int", "float", "str", "bool"]] = Field(min_length=1)
    nullable: list[str] = Field(default_factory=list)
    categories: dict[str, list[str]] = Field(default_factory=dict)
    max_batch: int = Field(default=1000, ge=1)


class Prediction(BaseModel):
    """One record's answer."""

    model_config = ConfigDict(protected_namespaces=())

    # The 0/1 label (score >= 0.5) for binary classification, the value for regression.
    prediction: int | float
    # P(label == 1) for binary classification; None for regression.
    score: float | None
    model_name: str
    model_version: str


_PYTHON_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
CATEGORICAL_TYPES = ("str", "bool")


def record_model(args: ServeArgs) -> type[BaseModel]:
    """A pydantic model of one input record.

    Every feature is required, except nullable ones, which default to null; unknown keys
    are rejected.
    """
    fields: dict[str, Any] = {}
    for position, (name, kind) in enumerate(args.features.items()):
        python_type: Any = _PYTHON_TYPES[kind]
        if kind == "str" and args.categories.get(name):
            python_type = Literal[tuple(args.categories[name])]
        # Columns are fields by alias: a column may be named anything ("copy", "arr delay"),
        # which would clash with BaseModel's attributes or not be an identifier.
        if name in args.nullable:
            fields[f"feature_{position}"] = (python_type | None, Field(default=None, alias=name))
        else:
            fields[f"feature_{position}"] = (python_type, Field(alias=name))
    # NaN and infinity are not values any feature was trained on.
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    return create_model("Record", __config__=config, **fields)


def feature_frame(records: list[dict[str, Any]], args: ServeArgs) -> pd.DataFrame:
    """Records as the model's input frame, typed as training typed them.

    Mirrors `airloop.data.frames.feature_frame` on CSV data: categoricals become strings,
    nullable numerics float64.
    """
    frame = pd.DataFrame.from_records(records, columns=list(args.features))
    for name, kind in args.features.items():
        if kind in CATEGORICAL_TYPES:
            # A JSON null arrives as None, which would become "None"; training read the
            # CSV's empty cell as NaN, which became "nan".
            column = frame[name]
            frame[name] = column.where(column.notna(), float("nan")).astype(str)
        elif name in args.nullable:
            frame[name] = frame[name].astype("float64")
    return frame


def compiled_inputs(pipeline: Any, args: ServeArgs) -> Callable[[list[dict[str, Any]]], np.ndarray] | None:
    """The pipeline's fitted preprocessing as plain Python and NumPy, or None if it can't be.

    sklearn's ColumnTransformer spends milliseconds per call checking and selecting pandas
    columns, several times what the model itself takes on a small batch. For a
    ColumnTransformer of ordinal codes, passthrough and standard scaling (the tree and MLP
    families), this builds the same float64 matrix straight from the records, with the same
    string keys `feature_frame` gives categoricals. Anything else (one-hot encoding, a
    remainder) returns None and is served through the pipeline. The packaging skew check
    holds either path to the MLflow model's predictions.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder, StandardScaler

    prep = pipeline.steps[0][1] if len(pipeline.steps) == 2 else None
    if not isinstance(prep, ColumnTransformer):
        return None
    blocks: list[Callable[[list[dict[str, Any]]], np.ndarray]] = []
    for _, transformer, columns in prep.transformers_:
        if transformer == "drop":
            continue
        names = list(columns)
        if _is_passthrough(transformer) and all(args.features.get(c) in ("int", "float") for c in names):
            blocks.append(_numbers(names))
        elif isinstance(transformer, StandardScaler):
            mean = transformer.mean_ if transformer.with_mean else 0.0
            scale = transformer.scale_ if transformer.with_std else 1.0
            blocks.append(_scaled(_numbers(names), mean, scale))
        elif isinstance(transformer, OrdinalEncoder) and transformer.handle_unknown == "use_encoded_value":
            codes = [{str(v): float(i) for i, v in enumerate(values)} for values in transformer.categories_]
            if any(len(c) != len(v) for c, v in zip(codes, transformer.categories_, strict=True)):
                return None  # a category that is not a plain string (a NaN) is not a dict key
            blocks.append(_codes(names, codes, float(transformer.unknown_value)))
        else:
            return None
    return lambda rows: np.hstack([block(rows) for block in blocks])


def _is_passthrough(transformer: Any) -> bool:
    from sklearn.preprocessing import FunctionTransformer

    # A fitted ColumnTransformer holds "passthrough" as an identity FunctionTransformer.
    if isinstance(transformer, FunctionTransformer):
        return transformer.func is None and transformer.inverse_func is None
    return bool(transformer == "passthrough")


def _numbers(names: list[str]) -> Callable[[list[dict[str, Any]]], np.ndarray]:
    return lambda rows: np.array([[r[n] for n in names] for r in rows], dtype="float64")


def _scaled(
    numbers: Callable[[list[dict[str, Any]]], np.ndarray], mean: Any, scale: Any
) -> Callable[[list[dict[str, Any]]], np.ndarray]:
    return lambda rows: (numbers(rows) - mean) / scale


def _codes(
    names: list[str], codes: list[dict[str, float]], unknown: float
) -> Callable[[list[dict[str, Any]]], np.ndarray]:
    def encode(rows: list[dict[str, Any]]) -> np.ndarray:
        # The keys feature_frame gives: a null is "nan", anything else its str().
        return np.array(
            [[c.get("nan" if r[n] is None else str(r[n]), unknown) for n, c in zip(names, codes, strict=True)]
             for r in rows],
            dtype="float64",
        )  # fmt: skip

    return encode


ARGS = bentoml.use_arguments(ServeArgs)

if TYPE_CHECKING:
    Record = BaseModel
else:
    # A module-level name: BentoML resolves the API's annotations in this module's globals.
    Record = record_model(ARGS)


class RequestTimeout:
    """BentoML's `traffic.timeout` (a 504 for a request not answered in time), with its timer
    cancelled once the request is answered.

    BentoML's own never cancels it: every request's context stayed alive for the whole
    timeout, ~300k objects under load at 60 s, and each full GC pause took 300-400 ms (the
    p99). The server builds its middleware from `traffic.TimeoutMiddleware` when it starts.
    """

    def __init__(self, app: Any, timeout: float) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        import asyncio

        answering = False

        async def answer(message: dict) -> None:
            nonlocal answering
            answering = True
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, answer))
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            if not answering:
                timed_out = True
                handler.cancel()

        timer = asyncio.get_running_loop().call_later(self.timeout, expire)
        try:
            await handler
        except asyncio.CancelledError:
            if not timed_out:
                raise
            body = f'{{"error": "not able to process the request in {self.timeout} seconds"}}'.encode()
            await send({"type": "http.response.start", "status": 504,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
        finally:
            timer.cancel()


# One worker process per core: a worker's event loop, not the model, is the bottleneck.
# No per-request access log line: it cost ~7% of a worker; /metrics counts requests.
@bentoml.service(workers="cpu_count", traffic={"timeout": 30}, logging={"access": {"enabled": False}})
class TabularModel:
    """Serves the MLflow sklearn pipeline stored in the BentoML model `ARGS.model_tag`."""

    # An exact tag: the bento records this model and `bentoml serve` loads that one.
    bento_model = bentoml.models.BentoModel(ARGS.model_tag)

    def __init__(self) -> None:
        # Imported here, not at module level: importing the module (which `bentoml build`
        # does) stays fast; only serving workers pay for mlflow.
        import os

        # One thread per model call: a server's parallelism is its requests, and OpenMP's
        # thread pool costs more than it saves on batches this small.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import mlflow.sklearn

        pipeline = mlflow.sklearn.load_model(self.bento_model.path_of(MLFLOW_MODEL_FOLDER))
        encode = compiled_inputs(pipeline, ARGS)
        # The model step on matrices built from the records, else the whole pipeline on frames.
        self.inputs: Callable[[list[dict[str, Any]]], Any]
        if encode is not None:
            self.inputs, self.model = encode, pipeline.steps[-1][1]
        else:
            self.inputs, self.model = (lambda rows: feature_frame(rows, ARGS)), pipeline
        # Set by the first scored request, once startup's objects all exist.
        self.warm = False

    # Adaptive batching: concurrent requests are scored together, one matrix and one model
    # call per batch (in process, a batch of 50 costs about what 1.3 single records do).
    # Requests that would wait past max_latency_ms are shed with a 503; at 300 ms about 1%
    # were under wrk -c32 on 2 cores, at 1000 none (benchmarks/RESULTS.md). Batches of at
    # most 32 kept p99 under 100 ms there; a bigger request is split into batches.
    @bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=1000)
    def predict(self, records: Annotated[list[Record], Field(max_length=ARGS.max_batch)]) -> list[Prediction]:
        """Score records; answers come back in the order the records were sent."""
        return self._score(records)

    @bentoml.api
    def predict_one(self, record: Record) -> Prediction:
        """Score one record."""
        return self._score([record])[0]

    def _score(self, records: list[Any]) -> list[Prediction]:
        if not records:
            return []
        if not self.warm:
            import gc

            # Everything loaded so far (mlflow, sklearn, the model) lives as long as the
            # worker: out of the collector's sight, a full GC scans requests, not libraries.
            gc.freeze()
            self.warm = True
        inputs = self.inputs([r.model_dump(by_alias=True) for r in records])
        values: list[int | float]
        scores: list[float | None]
        if ARGS.task == "binary_classification":
            probabilities = [float(p) for p in self.model.predict_proba(inputs)[:, 1]]
            values, scores = [int(p >= 0.5) for p in probabilities], list(probabilities)
        else:
            values = [float(v) for v in self.model.predict(inputs)]
            scores = [None] * len(values)
        return [
            Prediction(
                prediction=value,
                score=score,
                model_name=ARGS.registered_name,
                model_version=ARGS.registry_version,
            )
            for value, score in zip(values, scores, strict=True)
        ]


traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[misc,assignment]

# BentoML works out a response's media type from the output's JSON schema on every request
# (a fifth of a worker's time under load, measured with py-spy); ours is always JSON.
# (@bentoml.service makes TabularModel a bentoml Service, which mypy does not see.)
for _method in TabularModel.apis.values():  # type: ignore[attr-defined]
    _method.output_spec.media_type = "application/json"
