"""The BentoML service that serves one registered model version to HTTP clients.

Nothing here names a dataset. What the service serves is decided when the bento is built
(`airloop.packaging.bento.build_bento`) and passed as BentoML template arguments
(`bentoml.use_arguments`). BentoML stores them in the bento's `bento.yaml` and hands them
back to this module every time the bento is served, so a served bento always loads the
exact model version it was built for (`bentoml get <bento tag>` shows them under `args`):

    model_tag           BentoML model holding the MLflow model, e.g. "flights-late-arrival:v3"
    registered_name     MLflow registered model name, e.g. "flights-late-arrival"
    registry_version    MLflow registry version, e.g. "3"
    semver              its semantic version (tag airloop.semver), e.g. "1.2.0"; null for
                        a version registered without one
    task                "binary_classification", "multiclass_classification" or "regression"
    features            {column: "int" | "float" | "str" | "bool" | "date" | "datetime"}, in
                        the model's column order
    nullable            the features that may be null
    allowed             {column: [values]}: the values a str feature may take, where the config
                        declares `allowed:`; any other value gets a 400
    trained_categories  {column: [values]}: the values of each str feature the model was
                        trained on; another value (of a column without `allowed:`) is served
                        through the model's unknown-category bucket and counted in the
                        Prometheus counter airloop_unseen_categories_total{model,version,column}
    date_formats        {column: strptime format} of the date features that declare one; a
                        date feature is sent as text (ISO 8601 or any unambiguous form pandas
                        reads, where none is declared) and one that does not read gets a 400
    classes             multiclass only: the class values in the model's code order
    max_batch           the most records one request may carry
    prediction_buckets  regression: the edges predictions are counted between in Prometheus
    keys                {column: type} of the dataset keys that are not features: a record
                        may carry them, to be logged (labels can be joined by them)
    pii                 {column: "hash" | "drop"}: how the prediction log keeps personal data
    log                 the prediction log's settings (config serving.log)

The bento holds this file alone (not the airloop package), so it imports nothing from
airloop (the model itself may: a model with date features ships airloop as MLflow code).
For development, serve it straight from source with the arguments in a YAML file:
`bentoml serve service.py:TabularModel --arg-file args.yaml`.

API: POST /predict {"records": [{feature: value, ...}, ...]} returns, per record,
{"prediction", "score", "model_name", "model_version", "model_semver", "inference_id"}
(model_semver: the semantic version, null for a version registered without one); POST
/predict_one {"record": {...}} returns one. A record may carry its own "inference_id"
(else one is made; "airloop_inference_id" where a column has that name) and the dataset's
keys. Binary: prediction 0/1, score P(1). Regression: prediction the value, score null.
Multiclass: prediction the likeliest class (its own JSON type), score its probability, and
"probabilities" {class as text: probability} of every class. Both routes
share adaptive batching: concurrent requests are scored together. A request that does not
fit the schema (a missing or extra field, a wrong type, NaN or infinity, a value outside a
column's `allowed:`, a date that does not read, more than max_batch records) gets a 400 that
names the field. /readyz answers once the model is loaded; /metrics is Prometheus.

Every answer is written to the prediction log (`prediction_sink`: asynchronous, bounded,
never failing a request) where the server's environment names one ($AIRLOOP_PREDICTION_LOG).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import bentoml
import numpy as np
import pandas as pd
from bentoml._internal.server.http import traffic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator

try:  # in a bento, the log's writer is shipped beside this file
    import prediction_sink as sink  # type: ignore[import-not-found,unused-ignore]
    import shadow_mirror  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # imported from the airloop package
    from airloop.packaging import prediction_sink as sink
    from airloop.packaging import shadow_mirror

# Where build_bento puts the MLflow model inside the BentoML model.
MLFLOW_MODEL_FOLDER = "mlflow_model"
# Values of a str feature the model never saw in training, served through its unknown bucket.
UNSEEN_CATEGORIES = "airloop_unseen_categories"
DATE_TYPES = ("date", "datetime")
CATEGORICAL_TYPES = ("str", "bool")
# Adaptive batching, for both routes. Requests that would wait past MAX_LATENCY_MS are shed
# with a 503; at 300 ms about 1% were under wrk -c32 on 2 cores, at 1000 none
# (benchmarks/RESULTS.md). Batches of at most 32 kept p99 under 100 ms there; a bigger
# request is split into batches.
MAX_BATCH_SIZE = 32
MAX_LATENCY_MS = 1000


class LogArgs(BaseModel):
    """The prediction log's settings (the config's serving.log); where it is written is the
    server's environment ($AIRLOOP_PREDICTION_LOG), unless `location` names object storage."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    sample_rate: float = Field(default=1.0, gt=0, le=1)
    flush_seconds: float = Field(default=1.0, gt=0)
    max_pending: int = Field(default=100_000, ge=1)
    location: str | None = None


class ServeArgs(BaseModel):
    """The template arguments build_bento passes; validated when the bento is loaded."""

    # pydantic reserves the "model_" prefix unless told otherwise; model_tag is ours.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_tag: str
    registered_name: str
    registry_version: str
    semver: str | None = None
    task: Literal["binary_classification", "multiclass_classification", "regression"]
    features: dict[str, Literal["int", "float", "str", "bool", "date", "datetime"]] = Field(min_length=1)
    nullable: list[str] = Field(default_factory=list)
    allowed: dict[str, list[str]] = Field(default_factory=dict)
    trained_categories: dict[str, list[str]] = Field(default_factory=dict)
    date_formats: dict[str, str] = Field(default_factory=dict)
    # bool before int: True stays a boolean class, 1 an integer one.
    classes: list[bool | int | str] | None = None
    max_batch: int = Field(default=1000, ge=1)
    # Regression: edges of the buckets predictions are counted in (deciles of the model's
    # predictions on its training data); none: counted as one.
    prediction_buckets: list[float] = Field(default_factory=list)
    # The dataset keys that are not features: a record may carry them (for joining labels
    # by key); they are logged, never scored.
    keys: dict[str, Literal["int", "float", "str", "bool", "date", "datetime"]] = Field(default_factory=dict)
    pii: dict[str, Literal["hash", "drop"]] = Field(default_factory=dict)
    log: LogArgs = Field(default_factory=lambda: LogArgs())

    @property
    def id_field(self) -> str:
        """The record field that carries a caller's inference id (a column could be named
        "inference_id")."""
        taken = {*self.features, *self.keys}
        return "inference_id" if "inference_id" not in taken else "airloop_inference_id"

    @model_validator(mode="after")
    def _consistent(self) -> ServeArgs:
        kinds_of = {"allowed": ("str",), "trained_categories": ("str",), "date_formats": DATE_TYPES}
        for key, kinds in kinds_of.items():
            wrong = [name for name in getattr(self, key) if self.features.get(name) not in kinds]
            if wrong:
                raise ValueError(f"{key}: {wrong} are not {' or '.join(kinds)} features")
        unknown = [name for name in self.pii if name not in self.features and name not in self.keys]
        if unknown:
            raise ValueError(f"pii: {unknown} are neither features nor keys")
        both = [name for name in self.keys if name in self.features]
        if both:
            raise ValueError(f"keys: {both} are features; only keys that are not features are listed")
        if self.task == "multiclass_classification":
            classes = self.classes or []
            if len(classes) < 2 or len({str(c) for c in classes}) != len(classes):
                raise ValueError(
                    f"classes: a multiclass model needs two or more distinct ones, not {self.classes}"
                )
        elif self.classes is not None:
            raise ValueError(f"classes: only a multiclass model has classes ({self.task})")
        return self


class Prediction(BaseModel):
    """One record's answer (binary classification and regression)."""

    model_config = ConfigDict(protected_namespaces=())

    # The 0/1 label (score >= 0.5) for binary classification, the value for regression.
    prediction: int | float
    # P(label == 1) for binary classification; None for regression.
    score: float | None
    model_name: str
    model_version: str
    # The version's semantic version; None for one registered without.
    model_semver: str | None
    # The request's id, or a fresh one: what its label is joined by.
    inference_id: str


class ClassPrediction(BaseModel):
    """One record's answer from a multiclass model."""

    model_config = ConfigDict(protected_namespaces=())

    # The likeliest class, as the class values are typed (text, integer or boolean).
    prediction: bool | int | str
    # Its probability.
    score: float
    # Every class's probability, keyed by the class as text (JSON keys are text).
    probabilities: dict[str, float]
    model_name: str
    model_version: str
    model_semver: str | None
    inference_id: str


# Dates are text in JSON; record_model checks that they read as dates.
_PYTHON_TYPES: dict[str, type] = {
    "int": int, "float": float, "str": str, "bool": bool, "date": str, "datetime": str
}  # fmt: skip


def record_model(args: ServeArgs) -> type[BaseModel]:
    """A pydantic model of one input record.

    Every feature is required, except nullable ones, which default to null; the dataset's
    other keys and an inference id may be given; unknown fields are rejected. A str
    feature with allowed values takes only those; a date feature is text that must read as
    a date (in its declared format, if any).
    """
    fields: dict[str, Any] = {}
    for position, (name, kind) in enumerate(args.features.items()):
        python_type: Any = _PYTHON_TYPES[kind]
        if kind == "str" and args.allowed.get(name):
            python_type = Literal[tuple(args.allowed[name])]
        elif kind in DATE_TYPES:
            python_type = Annotated[str, AfterValidator(_date_check(args.date_formats.get(name)))]
        # Columns are fields by alias: a column may be named anything ("copy", "arr delay"),
        # which would clash with BaseModel's attributes or not be an identifier.
        if name in args.nullable:
            fields[f"feature_{position}"] = (python_type | None, Field(default=None, alias=name))
        else:
            fields[f"feature_{position}"] = (python_type, Field(alias=name))
    for position, (name, kind) in enumerate(args.keys.items()):
        fields[f"key_{position}"] = (_PYTHON_TYPES[kind] | None, Field(default=None, alias=name))
    identifier = Annotated[str, Field(min_length=1, max_length=128)]
    fields["inference_id"] = (identifier | None, Field(default=None, alias=args.id_field))
    # NaN and infinity are not values any feature was trained on.
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    return create_model("Record", __config__=config, **fields)


def reads_as_date(value: str, fmt: str | None) -> bool:
    """Whether the model's date parsing reads `value`: with `fmt` (strptime) when given,
    else as ISO 8601 or any unambiguous form pandas reads."""
    from datetime import datetime

    try:
        if fmt is not None:
            datetime.strptime(value, fmt)
        else:
            datetime.fromisoformat(value)
        return True
    except ValueError:
        if fmt is not None:
            return False
    try:
        return not pd.isna(pd.Timestamp(value))
    except (ValueError, TypeError, OverflowError):
        return False


def _date_check(fmt: str | None) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not reads_as_date(value, fmt):
            raise ValueError(f"{value!r} is not a date" + (f" in format {fmt!r}" if fmt else ""))
        return value

    return check


def feature_frame(records: list[dict[str, Any]], args: ServeArgs) -> pd.DataFrame:
    """Records as the model's input frame, typed as training typed them.

    Mirrors `airloop.data.frames.feature_frame` on CSV data: categoricals become strings,
    nullable numerics float64, dates stay text (the model's pipeline parses them).
    """
    frame = pd.DataFrame.from_records(records, columns=list(args.features))
    for name, kind in args.features.items():
        if kind in CATEGORICAL_TYPES:
            # A JSON null arrives as None, which would become "None"; training read the
            # CSV's empty cell as NaN, which became "nan".
            column = frame[name]
            frame[name] = column.where(column.notna(), float("nan")).astype(str)
        elif kind in DATE_TYPES:
            frame[name] = frame[name].astype(object)
        elif name in args.nullable:
            frame[name] = frame[name].astype("float64")
    return frame


def compiled_inputs(pipeline: Any, args: ServeArgs) -> Callable[[list[dict[str, Any]]], np.ndarray] | None:
    """The pipeline's fitted preprocessing as plain Python and NumPy, or None if it can't be.

    sklearn's ColumnTransformer spends milliseconds per call checking and selecting pandas
    columns, several times what the model itself takes on a small batch. For a
    ColumnTransformer of ordinal codes, passthrough and standard scaling (the tree and MLP
    families), this builds the same float64 matrix straight from the records, with the same
    string keys `feature_frame` gives categoricals. A block of date columns (their parts,
    maybe imputed and scaled) is the fitted block itself on a frame of those columns alone,
    so dates are parsed exactly as in training. Anything else (one-hot encoding, a
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
        names = list(columns)
        # A block of no columns (a table without text features) is never fitted.
        if not names or (isinstance(transformer, str) and transformer == "drop"):
            continue
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
        elif names and all(args.features.get(c) in DATE_TYPES for c in names):
            blocks.append(_dates(names, transformer))
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


def _dates(names: list[str], transformer: Any) -> Callable[[list[dict[str, Any]]], np.ndarray]:
    def parts(rows: list[dict[str, Any]]) -> np.ndarray:
        # What the ColumnTransformer hands the block: the raw date columns (text or None).
        frame = pd.DataFrame({n: [r[n] for r in rows] for n in names}, dtype=object)
        return np.asarray(transformer.transform(frame), dtype="float64")

    return parts


def _metric(kind: str, name: str, doc: str, labels: list[str], **options: Any) -> Any:
    """The process's Prometheus metric `name` (created on first use).

    prometheus_client is imported here, in the serving worker, after BentoML has set up
    its multiprocess directory, so /metrics collects the metric from every worker. A
    second service in one process (tests) gets the one already registered.
    """
    import prometheus_client

    try:
        return getattr(prometheus_client, kind)(name, doc, labels, **options)
    except ValueError:  # already registered in this process
        return prometheus_client.REGISTRY._names_to_collectors[name]  # noqa: SLF001


# The statuses whose request counters exist before the first request: answered, refused,
# failed, overloaded, timed out.
INITIAL_CODES = ("200", "400", "500", "503", "504")


class ServiceMetrics:
    """airloop's metrics of one served model version (BentoML exports its own besides):
    requests and their latency per route and status, predictions per class (or bucket of
    the predicted value), unseen categories, and the prediction log's failures."""

    def __init__(self, args: ServeArgs) -> None:
        model, version = args.registered_name, args.registry_version
        self.requests = _metric(
            "Counter", "airloop_requests", "Requests answered, per route and HTTP status",
            ["model", "version", "route", "code"],
        )
        self.latency = _metric(
            "Histogram", "airloop_request_latency_seconds", "Time to answer a request, per route",
            ["model", "version", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        predictions = _metric(
            "Counter", "airloop_predictions", "Predictions, per class (or bucket of the predicted value)",
            ["model", "version", "prediction"],
        )
        self.predicted = lambda label: predictions.labels(model, version, label)
        self.unseen = _metric(
            "Counter", UNSEEN_CATEGORIES,
            "Values of a categorical feature the model never saw in training (scored as unknown)",
            ["model", "version", "column"],
        )
        self.shadow_sent, self.shadow_dropped, self.shadow_errors = (
            _metric("Counter", f"airloop_shadow_{what}", doc, ["model", "version"]).labels(model, version)
            for what, doc in (
                ("sent", "Records copied to the shadow server"),
                ("dropped", "Records not copied to the shadow: its queue was full"),
                ("errors", "Batches the shadow server did not take"),
            )
        )
        self.log_errors = _metric(
            "Counter", "airloop_prediction_log_errors", "Prediction log writes that failed",
            ["model", "version"],
        ).labels(model, version)
        self.log_dropped = _metric(
            "Counter", "airloop_prediction_log_dropped", "Predictions not logged: the log's buffer was full",
            ["model", "version"],
        ).labels(model, version)
        self.logged = _metric(
            "Counter", "airloop_prediction_log_written", "Predictions written to the prediction log",
            ["model", "version"],
        ).labels(model, version)
        self.labels = (model, version)
        self.buckets = list(args.prediction_buckets)
        # Every series a judgement reads exists from the start, at 0: a series born with its
        # first requests already counted shows Prometheus no increase (a canary's first burst).
        for route in ("predict", "predict_one"):
            self.latency.labels(model, version, route)
            for code in INITIAL_CODES:
                self.requests.labels(model, version, route, code)

    def bucket(self, value: float) -> str:
        """The regression bucket a value falls in: "<= edge" of the first edge above it."""
        import bisect

        if not self.buckets:
            return "value"
        position = bisect.bisect_left(self.buckets, value)
        if position == len(self.buckets):
            return f"> {self.buckets[-1]:.4g}"
        return f"<= {self.buckets[position]:.4g}"

    def observe(self, route: str, code: int, seconds: float) -> None:
        self.requests.labels(*self.labels, route, str(code)).inc()
        self.latency.labels(*self.labels, route).observe(seconds)


def _overloaded() -> Any:
    from bentoml.exceptions import ServiceUnavailable

    raise ServiceUnavailable("process is overloaded")


ARGS = bentoml.use_arguments(ServeArgs)
ID_FIELD = ARGS.id_field

if TYPE_CHECKING:
    Record = BaseModel
    Answer = BaseModel
else:
    # Module-level names: BentoML resolves the APIs' annotations in this module's globals.
    Record = record_model(ARGS)
    Answer = ClassPrediction if ARGS.task == "multiclass_classification" else Prediction


@functools.cache
def service_metrics() -> ServiceMetrics:
    """This worker's metrics, made once it serves (see `_metric`)."""
    return ServiceMetrics(ARGS)


# The routes whose requests are counted and timed (not /metrics, /readyz, ...).
SCORING_ROUTES = {"/predict": "predict", "/predict_one": "predict_one"}


class RequestTimeout:
    """BentoML's `traffic.timeout` (a 504 for a request not answered in time), with its timer
    cancelled once the request is answered; and where each scoring request is counted and
    timed, with the status it got (a 400 included, which never reaches the API).

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
        import time

        answering, status, started = False, 500, time.perf_counter()

        async def answer(message: dict) -> None:
            nonlocal answering, status
            if message["type"] == "http.response.start":
                answering, status = True, message["status"]
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
            status = 504
        finally:
            timer.cancel()
            route = SCORING_ROUTES.get(scope.get("path", ""))
            if route is not None:
                service_metrics().observe(route, status, time.perf_counter() - started)


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
        from bentoml._internal.marshal.dispatcher import CorkDispatcher

        pipeline = mlflow.sklearn.load_model(self.bento_model.path_of(MLFLOW_MODEL_FOLDER))
        encode = compiled_inputs(pipeline, ARGS)
        # The model step on matrices built from the records, else the whole pipeline on frames.
        self.inputs: Callable[[list[dict[str, Any]]], Any]
        if encode is not None:
            self.inputs, self.model = encode, pipeline.steps[-1][1]
        else:
            self.inputs, self.model = (lambda rows: feature_frame(rows, ARGS)), pipeline
        self.answers = _answerer(self.model)
        self.metrics = service_metrics()
        self.watched = [
            (name, frozenset(values), self.metrics.unseen.labels(*self.metrics.labels, name))
            for name, values in ARGS.trained_categories.items()
        ]
        self.log = _prediction_log(self.metrics)
        self.mirror = shadow_mirror.mirror_from_env(
            ID_FIELD, batch_size=min(500, ARGS.max_batch), on_sent=self.metrics.shadow_sent.inc,
            on_dropped=self.metrics.shadow_dropped.inc,
            on_error=lambda error: self.metrics.shadow_errors.inc(),
        )  # fmt: skip
        # /predict_one's records go through BentoML's adaptive batching as /predict's do,
        # in a queue of their own (BentoML batches an API only when its argument is the
        # batch). Unbatched, each request was one model call in a thread of its own: 1.05 ms
        # of CPU per request against /predict's 0.55 (one XGBoost call costs 0.27 ms for one
        # record, 0.39 for 32), and half /predict's rate under wrk -c32 on 2 cores.
        self.dispatcher: CorkDispatcher[Any, Any] = CorkDispatcher(
            max_latency_in_ms=MAX_LATENCY_MS,
            max_batch_size=MAX_BATCH_SIZE,
            fallback=_overloaded,
            get_batch_size=lambda record: 1,
        )
        self.one = self.dispatcher(self._score_batch)
        # Set by the first scored request, once startup's objects all exist.
        self.warm = False

    # Adaptive batching: concurrent requests are scored together, one matrix and one model
    # call per batch (in process, a batch of 50 costs about what 1.3 single records do).
    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, records: Annotated[list[Record], Field(max_length=ARGS.max_batch)]) -> list[Answer]:
        """Score records; answers come back in the order the records were sent."""
        return self._score(records)

    @bentoml.api
    async def predict_one(self, record: Record) -> Answer:
        """Score one record (batched with other requests' records)."""
        answer: Any = await self.one(record)
        return answer

    @bentoml.on_shutdown
    def _stop(self) -> None:
        self.dispatcher.shutdown()
        if self.log is not None:
            self.log.close()
        if self.mirror is not None:
            self.mirror.close()

    async def _score_batch(self, records: Sequence[Any]) -> list[Any]:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self._score, list(records))

    def _score(self, records: list[Any]) -> list[Any]:
        if not records:
            return []
        if not self.warm:
            import gc

            # Everything loaded so far (mlflow, sklearn, the model) lives as long as the
            # worker: out of the collector's sight, a full GC scans requests, not libraries.
            gc.freeze()
            self.warm = True
        import time

        rows = [r.model_dump(by_alias=True) for r in records]
        ids = [r.pop(ID_FIELD) or sink.new_inference_id() for r in rows]
        for name, known, unseen in self.watched:
            count = sum(1 for r in rows if r[name] is not None and r[name] not in known)
            if count:
                unseen.inc(count)
        started = time.perf_counter()
        answers = self.answers(self.inputs(rows), ids)
        latency_ms = (time.perf_counter() - started) * 1000
        self._count(answers)
        if self.log is not None:
            self.log.append(_answered(answers, rows, ids, latency_ms))
        if self.mirror is not None:
            self.mirror.offer(rows, ids)
        return answers

    def _count(self, answers: list[Any]) -> None:
        from collections import Counter

        if ARGS.task == "regression":
            labels = Counter(self.metrics.bucket(a.prediction) for a in answers)
        else:
            labels = Counter(str(a.prediction) for a in answers)
        for label, count in labels.items():
            self.metrics.predicted(label).inc(count)


def _prediction_log(metrics: ServiceMetrics) -> Any:
    """The worker's prediction log writer, or None where none is configured (a log location
    is the server's to give: the skew check and tests serve without one)."""
    import logging
    import os

    location = ARGS.log.location or os.environ.get(sink.LOG_LOCATION_ENV)
    if not ARGS.log.enabled or not location:
        logging.getLogger(__name__).info("prediction log off (no %s)", sink.LOG_LOCATION_ENV)
        return None
    key = sink.pii_key_from_env()
    schema = sink.log_schema(ARGS.task, ARGS.features, ARGS.keys, ARGS.pii, hashing=key is not None)
    return sink.PredictionLog(
        location, schema, ARGS.registered_name, ARGS.registry_version, role=sink.role_from_env(),
        flush_seconds=ARGS.log.flush_seconds, max_pending=ARGS.log.max_pending,
        sample_rate=ARGS.log.sample_rate, pii_key=key,
        on_written=metrics.logged.inc, on_error=lambda error: metrics.log_errors.inc(),
        on_dropped=metrics.log_dropped.inc,
    )  # fmt: skip


def _answered(answers: list[Any], rows: list[dict[str, Any]], ids: list[str], latency_ms: float) -> Any:
    multiclass = ARGS.task == "multiclass_classification"
    return sink.AnsweredBatch(
        sink.now_ms(), latency_ms, ids, rows,
        [a.prediction for a in answers], [a.score for a in answers],
        [a.probabilities for a in answers] if multiclass else None,
    )  # fmt: skip


def _answerer(model: Any) -> Callable[[Any, list[str]], list[Any]]:
    """The answers to a batch's model inputs, per ARGS.task (plain Python per record)."""
    name, version, semver = ARGS.registered_name, ARGS.registry_version, ARGS.semver
    if ARGS.task == "binary_classification":

        def binary(inputs: Any, ids: list[str]) -> list[Any]:
            scores = np.asarray(model.predict_proba(inputs))[:, 1].tolist()
            return [
                Prediction.model_construct(
                    prediction=int(p >= 0.5),
                    score=p,
                    model_name=name,
                    model_version=version,
                    model_semver=semver,
                    inference_id=i,
                )
                for p, i in zip(scores, ids, strict=True)
            ]

        return binary
    if ARGS.task == "multiclass_classification":
        classes = list(ARGS.classes or [])
        keys = [str(c) for c in classes]

        def multiclass(inputs: Any, ids: list[str]) -> list[Any]:
            table = np.asarray(model.predict_proba(inputs), dtype="float64")
            best = table.argmax(axis=1).tolist()
            return [
                ClassPrediction.model_construct(
                    prediction=classes[b],
                    score=row[b],
                    probabilities=dict(zip(keys, row, strict=True)),
                    model_name=name,
                    model_version=version,
                    model_semver=semver,
                    inference_id=i,
                )
                for b, row, i in zip(best, table.tolist(), ids, strict=True)
            ]

        return multiclass

    def regression(inputs: Any, ids: list[str]) -> list[Any]:
        values = np.asarray(model.predict(inputs), dtype="float64").tolist()
        return [
            Prediction.model_construct(
                prediction=v,
                score=None,
                model_name=name,
                model_version=version,
                model_semver=semver,
                inference_id=i,
            )
            for v, i in zip(values, ids, strict=True)
        ]

    return regression


traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[misc,assignment]

# BentoML works out a response's media type from the output's JSON schema on every request
# (a fifth of a worker's time under load, measured with py-spy); ours is always JSON.
# (@bentoml.service makes TabularModel a bentoml Service, which mypy does not see.)
for _method in TabularModel.apis.values():  # type: ignore[attr-defined]
    _method.output_spec.media_type = "application/json"
