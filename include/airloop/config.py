"""The one YAML file that describes a dataset and how its model is trained, gated and watched.

Everything dataset-specific lives here, so the rest of `airloop` works for any table.
Loading fails before any compute, with a message that names the offending key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ColumnType = Literal["int", "float", "str", "bool", "date", "datetime"]
NUMERIC_TYPES = ("int", "float")
CATEGORICAL_TYPES = ("str", "bool")
DATE_TYPES = ("date", "datetime")
# What a model may derive from a date feature; computed inside the model pipeline, so
# serving takes the raw date and training and serving cannot disagree.
DatePart = Literal["year", "month", "day", "day_of_week", "day_of_year", "hour", "days_since"]
DEFAULT_DATE_PARTS: dict[str, tuple[str, ...]] = {
    "date": ("year", "month", "day_of_week", "days_since"),
    "datetime": ("year", "month", "day_of_week", "hour", "days_since"),
}
# A label value: text, a boolean or an integer (a churn flag, a grade, a species).
Label = bool | int | str
# Checks on a column that can be made warnings (recorded; the partition goes on).
ColumnCheck = Literal["exists", "type", "not_null", "range", "allowed", "mean"]
# Checks on the whole partition that can be made warnings.
TableCheck = Literal[
    "row_count", "row_growth", "unique_keys", "extra_columns", "partition_date", "target_classes"
]
TaskType = Literal["binary_classification", "multiclass_classification", "regression"]
CLASSIFICATION_TASKS = ("binary_classification", "multiclass_classification")
ModelFamily = Literal["sklearn_hgb", "sklearn_linear", "xgboost", "torch_mlp"]
# Families that can train on a GPU; the others always train on CPU.
GPU_FAMILIES = frozenset({"xgboost", "torch_mlp"})

# Each task's metrics, in the order reports list them; roc_auc of a multiclass model is the
# macro average of one-vs-rest AUCs.
METRICS_OF_TASK: dict[str, tuple[str, ...]] = {
    "binary_classification": ("roc_auc", "average_precision", "log_loss", "accuracy"),
    "multiclass_classification": ("log_loss", "accuracy", "macro_f1", "balanced_accuracy", "roc_auc"),
    "regression": ("rmse", "mae", "r2"),
}


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeanCheck(_Frozen):
    """The column's mean must lie within `within_std` standard deviations of the reference's."""

    reference: float
    std: float = Field(gt=0)
    within_std: float = Field(default=3.0, gt=0)


class ColumnSpec(_Frozen):
    type: ColumnType
    # Nullable columns may hold nulls, but never only nulls unless all_null_ok.
    nullable: bool = False
    all_null_ok: bool = False
    # Numbers for int and float columns; dates ("2013-01-01") for date and datetime columns.
    min: float | str | None = None
    max: float | str | None = None
    allowed: tuple[str, ...] | None = None
    mean: MeanCheck | None = None
    # These checks only warn: the failure is recorded and the partition goes on.
    warn_on: tuple[ColumnCheck, ...] = ()
    # Date and datetime columns: the strptime format of their text (none: ISO 8601 or any
    # unambiguous form pandas reads), whether a value may lie in the future, and what a
    # model derives from the column when it is a feature.
    format: str | None = None
    future_ok: bool = False
    derive: tuple[DatePart, ...] | None = None
    # days_since counts days from this date.
    since: str = "1970-01-01"
    # Personal data: the prediction log keeps a keyed hash of it (true or "hash"), or
    # nothing ("drop"). The model still sees the value.
    pii: bool | Literal["hash", "drop"] = False

    @property
    def pii_mode(self) -> Literal["hash", "drop"] | None:
        return None if self.pii is False else ("hash" if self.pii is True else self.pii)

    @model_validator(mode="after")
    def _fits_type(self) -> ColumnSpec:
        dated = self.type in DATE_TYPES
        for key in ("min", "max"):
            bound = getattr(self, key)
            if bound is None:
                continue
            if dated:
                _parse_date(bound, self.format, key)
            elif self.type in NUMERIC_TYPES and not isinstance(bound, int | float):
                raise ValueError(f"{key}: {bound!r} is not a number (the column is {self.type})")
            elif self.type in CATEGORICAL_TYPES:
                raise ValueError(f"{key}: a {self.type} column has no range; use allowed")
        if not dated:
            wrong = [k for k in ("format", "derive") if getattr(self, k) is not None]
            if self.future_ok:
                wrong.append("future_ok")
            if wrong:
                raise ValueError(f"{wrong} only apply to date and datetime columns, not {self.type}")
        else:
            if self.mean is not None:
                raise ValueError("mean: a date column has no mean check; use min and max")
            _parse_date(self.since, None, "since")
            if self.format is not None:
                _check_date_format(self.format)
            if self.type == "date" and self.derive and "hour" in self.derive:
                raise ValueError("derive: a date has no hour; declare the column as datetime")
        return self

    def date_parts(self) -> tuple[str, ...]:
        """What a model derives from this date column (the declared parts, else the default)."""
        return tuple(self.derive) if self.derive else DEFAULT_DATE_PARTS[self.type]


def _check_date_format(fmt: str) -> None:
    """Raise naming `format` unless a date written in it reads back (e.g. '%Y-%m-%d')."""
    from datetime import datetime

    try:
        ok = "%" in fmt and bool(datetime.strptime(datetime(2001, 2, 3, 4, 5, 6).strftime(fmt), fmt))
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"format: {fmt!r} is not a strptime date format (e.g. '%Y-%m-%d')")


def _parse_date(value: Any, fmt: str | None, key: str) -> Any:
    """A date bound as validation reads it; raise naming `key` when it does not read as a date."""
    from airloop.data.date_bounds import date_bound

    try:
        return date_bound(value, fmt)
    except (ValueError, TypeError):
        raise ValueError(f"{key}: {value!r} is not a date{f' in format {fmt!r}' if fmt else ''}") from None


class FileSource(_Frozen):
    """Partitions arrive as files, one per partition, named `<partition>.<ext>`."""

    kind: Literal["files"] = "files"
    # Where files land: a local path or an object-storage URL (file://, s3://, gs://, ...)
    # read through Airflow's ObjectStoragePath; empty means $AIRLOOP_HOME/landing.
    location: str | None = None
    pattern: str = "*.csv"
    # A file is taken only once it has not changed for this long, so a writer still
    # appending to it in place is never read half-way. (Writers that land under a
    # dot-name and rename into place are safe at 0.)
    settle_seconds: float = Field(default=0, ge=0)


class SqlSource(_Frozen):
    """Partitions are extracted from a database through an Airflow Connection."""

    kind: Literal["sql"]
    conn_id: str
    # Run once per partition with the bind parameter :partition (e.g. WHERE month = :partition).
    query: str

    @property
    def pattern(self) -> str:
        """Extracted partitions land as Parquet files."""
        return "*.parquet"

    @model_validator(mode="after")
    def _binds_partition(self) -> SqlSource:
        if ":partition" not in self.query:
            raise ValueError("query must use the bind parameter :partition")
        return self


class PartitionSpec(_Frozen):
    """How partitions are named. Date partitions must parse and must not lie in the future.

    With `column`, a date partition's rows must also fall in the period its name covers
    (a month for "%Y-%m", a day for "%Y-%m-%d"), read from that date column.
    """

    kind: Literal["key", "date"] = "key"
    date_format: str | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _date_needs_format(self) -> PartitionSpec:
        if self.kind == "date" and not self.date_format:
            raise ValueError("date partitions need date_format (e.g. '%Y-%m')")
        if self.column is not None and self.kind != "date":
            raise ValueError("column: only date partitions are read from a date column")
        return self


class TargetSpec(_Frozen):
    """The label. Binary classification: `positive` names the positive class ("Yes", true,
    1), or `positive_above` a threshold on a number; an int column with neither holds 0/1.
    Multiclass: each distinct value is a class. `classes` lists the values a label may take
    (a label outside them fails validation); without it they are the training window's."""

    column: str
    positive_above: float | None = None
    positive: Label | None = None
    classes: tuple[Label, ...] | None = None

    @field_validator("classes")
    @classmethod
    def _distinct(cls, classes: tuple[Label, ...] | None) -> tuple[Label, ...] | None:
        if classes is not None and (len(classes) < 2 or len({str(c) for c in classes}) != len(classes)):
            raise ValueError(f"classes: {list(classes)} must list at least two distinct values")
        return classes


class DatasetConfig(_Frozen):
    source: FileSource | SqlSource = Field(default_factory=FileSource, discriminator="kind")
    partition: PartitionSpec = PartitionSpec()
    columns: dict[str, ColumnSpec]
    target: TargetSpec
    features: tuple[str, ...] = Field(min_length=1)
    # Rows ordered by this column make the time split of a lone partition.
    order_by: str | None = None
    # Columns whose values together identify a row: no partition may repeat them.
    keys: tuple[str, ...] = ()
    min_rows: int = Field(default=1, ge=1)
    max_rows: int | None = Field(default=None, ge=1)
    # A partition may hold at most this many times the median rows of those before it.
    max_row_growth: float | None = Field(default=None, gt=1)
    # Undeclared columns fail validation, unless "extra_columns" is here (then they warn).
    warn_on: tuple[TableCheck, ...] = ()

    @model_validator(mode="after")
    def _names_exist(self) -> DatasetConfig:
        known = set(self.columns)
        for name in (*self.features, *self.keys, self.target.column, self.order_by):
            if name is not None and name not in known:
                raise ValueError(f"column {name!r} is not declared under dataset.columns")
        if self.target.column in self.features:
            raise ValueError(f"target column {self.target.column!r} is also listed as a feature")
        column = self.partition.column
        if column is not None and (column not in known or self.columns[column].type not in DATE_TYPES):
            raise ValueError(f"partition.column: {column!r} must be a declared date or datetime column")
        return self

    def categorical_features(self) -> list[str]:
        return [f for f in self.features if self.columns[f].type in CATEGORICAL_TYPES]

    def numeric_features(self) -> list[str]:
        return [f for f in self.features if self.columns[f].type in NUMERIC_TYPES]

    def date_features(self) -> list[str]:
        return [f for f in self.features if self.columns[f].type in DATE_TYPES]


class SplitConfig(_Frozen):
    # The newest validated partition is the frozen evaluation set; this many partitions
    # before it make the training set.
    window_partitions: int = Field(default=3, ge=1)
    # Only used while a single partition exists: its newest rows are held out.
    bootstrap_eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    # The newest rows of the training set that every trial is scored on, to pick the best
    # hyperparameters and to stop early, so the evaluation set stays unseen until the gate.
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)


class XGBoostParams(_Frozen):
    n_estimators: int = Field(default=100, ge=1, le=20_000)
    max_depth: int = Field(default=6, ge=1, le=32)
    learning_rate: float = Field(default=0.3, gt=0, le=1)
    subsample: float = Field(default=1.0, gt=0, le=1)
    colsample_bytree: float = Field(default=1.0, gt=0, le=1)
    min_child_weight: float = Field(default=1.0, ge=0)
    reg_lambda: float = Field(default=1.0, ge=0)
    reg_alpha: float = Field(default=0.0, ge=0)


class HistGradientBoostingParams(_Frozen):
    max_iter: int = Field(default=100, ge=1, le=20_000)
    learning_rate: float = Field(default=0.1, gt=0, le=1)
    max_depth: int | None = Field(default=None, ge=1)
    max_leaf_nodes: int | None = Field(default=31, ge=2)
    min_samples_leaf: int = Field(default=20, ge=1)
    l2_regularization: float = Field(default=0.0, ge=0)


class LinearParams(_Frozen):
    # Inverse regularization strength for logistic regression; ridge uses alpha.
    C: float = Field(default=1.0, gt=0)
    alpha: float = Field(default=1.0, ge=0)


class TorchMLPParams(_Frozen):
    hidden_units: int = Field(default=128, ge=4, le=4096)
    layers: int = Field(default=2, ge=1, le=8)
    # Upper bound: each categorical gets min(this, about half its cardinality) dimensions.
    embedding_dim: int = Field(default=8, ge=1, le=64)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    weight_decay: float = Field(default=1e-5, ge=0)
    batch_size: int = Field(default=1024, ge=16, le=65_536)
    max_epochs: int = Field(default=20, ge=1, le=1000)
    # Epochs without a better validation loss before training stops.
    patience: int = Field(default=3, ge=1, le=100)


# Hyperparameters each family accepts: typed and bounded, so a mistake fails before compute.
PARAMS_OF_FAMILY: dict[str, type[_Frozen]] = {
    "xgboost": XGBoostParams,
    "sklearn_hgb": HistGradientBoostingParams,
    "sklearn_linear": LinearParams,
    "torch_mlp": TorchMLPParams,
}


class SearchConfig(_Frozen):
    """A small hyperparameter space: every combination is a trial, up to `max_trials`."""

    # Values to try per hyperparameter; they override model.params.
    space: dict[str, list[Any]] = Field(min_length=1)
    # Larger grids are sampled (with model.seed) down to this many trials.
    max_trials: int = Field(default=8, ge=1, le=256)

    @field_validator("space")
    @classmethod
    def _values_listed(cls, space: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [key for key, values in space.items() if not values]
        if empty:
            raise ValueError(f"{empty} list no values to try")
        return space


class ModelConfig(_Frozen):
    family: ModelFamily
    params: dict[str, Any] = Field(default_factory=dict)
    registered_name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 42
    search: SearchConfig | None = None

    @model_validator(mode="after")
    def _params_fit_family(self) -> ModelConfig:
        _check_params(self.family, self.params, "params")
        for key, values in (self.search.space if self.search else {}).items():
            for value in values:
                _check_params(self.family, {**self.params, key: value}, "search.space", only=key)
        return self


def _check_params(family: str, params: dict[str, Any], where: str, only: str | None = None) -> None:
    """Raise naming `<where>.<key>` for each hyperparameter the family rejects."""
    try:
        PARAMS_OF_FAMILY[family].model_validate(params)
    except ValidationError as error:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
            for item in error.errors()
            if only is None or item["loc"][:1] == (only,)
        )
        raise ValueError(f"{problems} (for family {family!r})") from None


class DockerRunnerConfig(_Frozen):
    """How the `docker` runner starts the trainer container (DockerOperator)."""

    image: str = "airloop-trainer:latest"
    docker_url: str = "unix://var/run/docker.sock"
    # The compose network, so the container reaches the MLflow server by its service name.
    network_mode: str | None = None
    # Shared memory for PyTorch data loading; Docker's default 64 MB is too small.
    shm_size: int = Field(default=2 * 1024**3, ge=64 * 1024**2)


class TrainingConfig(_Frozen):
    # local: a subprocess on the Airflow worker. docker: a container per trial (DockerOperator).
    runner: Literal["local", "docker"] = "local"
    # true: train on a GPU or fail; auto: use one when present; false: CPU only.
    gpu: bool | Literal["auto"] = "auto"
    # Hyperparameter trials that train at the same time.
    max_parallel_trials: int = Field(default=2, ge=1, le=64)
    docker: DockerRunnerConfig = DockerRunnerConfig()


class GateConfig(_Frozen):
    metric: str
    # The candidate must beat the champion by at least this much (in the metric's units).
    min_improvement: float = 0.0
    # ... and the naive baseline by at least this much.
    min_baseline_margin: float = 0.0
    # Paired bootstrap over the evaluation rows: the gain's interval must lie above zero.
    bootstrap_resamples: int = Field(default=500, ge=0, le=20_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    # Columns whose values (e.g. each origin) may not lose more than segment_tolerance.
    segments: tuple[str, ...] = ()
    segment_tolerance: float = Field(default=0.02, ge=0)
    # Values with fewer evaluation rows are too noisy to judge.
    min_segment_rows: int = Field(default=200, ge=1)
    # Budgets: 95th-percentile one-record prediction latency, size of the logged model.
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_model_mb: float | None = Field(default=None, gt=0)
    # A person approves each promotion in the Airflow UI (or over REST) before it happens:
    # continuous_training waits at `approve_promotion` (holding no worker slot) this many
    # minutes (at most a year), then applies on_approval_timeout.
    require_approval: bool = False
    approval_timeout_minutes: float = Field(default=1440, gt=0, le=525_600)
    on_approval_timeout: Literal["reject", "approve"] = "reject"


class RetrainingConfig(_Frozen):
    """When continuous training trains; at most one run is ever active (max_active_runs=1)."""

    on_new_data: bool = False
    # Data or prediction drift signalled by monitor_drift.
    on_drift: bool = True
    # The champion's metric on newly labelled data fell more than drift.max_metric_drop.
    on_performance_drop: bool = True
    # A cron expression (UTC): retrain on a schedule as well; none: only on events.
    schedule: str | None = None
    # After a drift-triggered retrain, further drift-only signals skip retraining this long.
    drift_cooldown_hours: float = Field(default=0, ge=0)

    @field_validator("schedule")
    @classmethod
    def _is_cron(cls, value: str | None) -> str | None:
        return _cron(value)


DriftMethod = Literal["wasserstein", "jensenshannon", "psi", "kl_div", "ks", "chisquare", "z"]


class DriftConfig(_Frozen):
    # Share of drifted columns at or above which drift is signalled.
    share_threshold: float = Field(default=0.5, gt=0, le=1)
    # Evidently's per-column test threshold (p-value or distance, per its method) for every
    # column, and per column (which wins). None: each method's own default.
    column_threshold: float | None = None
    thresholds: dict[str, float] = Field(default_factory=dict)
    # A test per column (wasserstein, jensenshannon, psi, kl_div, ks, chisquare, z); a column
    # not named gets the test Evidently's DataDriftPreset would pick.
    methods: dict[str, DriftMethod] = Field(default_factory=dict)
    min_rows: int = Field(default=100, ge=1)
    # Columns compared; empty means the features and the target.
    columns: tuple[str, ...] = ()
    # The Evidently report is drawn from at most this many rows a side (a seeded sample);
    # the verdicts always come from every row.
    report_rows: int = Field(default=20_000, ge=1000)
    # The current window: the newest this many validated partitions.
    window_partitions: int = Field(default=1, ge=1)
    # Prediction drift (the champion's scores on its training data vs on the window): the
    # test and threshold; None: the test Evidently would pick, and that test's default.
    prediction_method: DriftMethod | None = None
    prediction_threshold: float | None = None
    # Performance drift: how far the champion's gate metric on the labelled window may fall
    # below what it scored on its own evaluation set before a drop is signalled.
    max_metric_drop: float = Field(default=0.02, ge=0)
    # What the current window is: the newest validated partitions ("ingested"), what the
    # served champion was asked over the last served_hours ("served", from the prediction
    # log; live performance from its joined labels), or both, each checked on its own.
    current: Literal["served", "ingested", "both"] = "ingested"
    served_hours: float = Field(default=24, gt=0)


class PredictionLogConfig(_Frozen):
    """What the served model was asked and answered: time-partitioned Parquet, written in
    the background by every serving worker."""

    enabled: bool = True
    # The share of predictions kept (chosen by inference id, so a kept one's label joins).
    sample_rate: float = Field(default=1.0, gt=0, le=1)
    # A worker writes what it has at least this often: what a crash can lose.
    flush_seconds: float = Field(default=1.0, gt=0, le=300)
    # Records a worker holds before it drops new ones (counted): memory stays bounded even
    # when the log cannot be written.
    max_pending: int = Field(default=100_000, ge=100)
    # An object-storage URL (s3://bucket/prefix) to write to; none: the model's state.
    location: str | None = None


class ServiceAlertsConfig(_Frozen):
    """Alerts on the served model's health, evaluated by Prometheus, sent to airloop_notify."""

    max_error_rate: float = Field(default=0.05, gt=0, lt=1)
    # p95 latency above this many times the latency the gate measured (in process, for one
    # record), and never below min_latency_ms: HTTP adds a few milliseconds of its own.
    max_latency_factor: float = Field(default=2.0, gt=1)
    min_latency_ms: float = Field(default=10, ge=0)
    no_traffic_minutes: float = Field(default=30, gt=0)


class ServingConfig(_Frozen):
    log: PredictionLogConfig = PredictionLogConfig()
    alerts: ServiceAlertsConfig = ServiceAlertsConfig()


class RolloutConfig(_Frozen):
    """How a promoted candidate meets live traffic (the `roll_out` DAG; `airloop serve` routes).

    blue_green: all traffic at once, the moment its server is ready (continuous_training
    promotes it itself). canary: `steps` percentages of the traffic (the last is 100), each
    held for `bake_minutes` and until it has `min_requests` requests (and `min_labelled`
    labelled answers), then judged against the champion: error rate, p95 latency, and the
    live metric with the gate's bootstrap once labels are there; it advances or is rolled back.
    shadow: a copy of `shadow_sample` of the traffic, answered by nobody, until it has
    `min_requests` paired answers (and `min_labelled` labelled), then judged with the gate's
    paired bootstrap on them; promoted or dropped. Still short of its numbers after
    `max_wait_minutes`, a step is rolled back: nothing was shown to be safe.
    """

    strategy: Literal["blue_green", "canary", "shadow"] = "blue_green"
    steps: tuple[int, ...] = (5, 25, 50, 100)
    shadow_sample: float = Field(default=1.0, gt=0, le=1)
    min_requests: int = Field(default=200, ge=1)
    min_labelled: int = Field(default=0, ge=0)
    bake_minutes: float = Field(default=10, gt=0, le=7 * 24 * 60)
    max_wait_minutes: float = Field(default=120, gt=0, le=30 * 24 * 60)
    # The canary's 5xx share may exceed the champion's by at most this much.
    max_error_rate_increase: float = Field(default=0.01, ge=0, lt=1)
    # ... and its p95 latency be at most this many times the champion's.
    max_latency_factor: float = Field(default=1.5, gt=1)

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps or steps[-1] != 100:
            raise ValueError(f"the canary's steps end at 100 (percent of the traffic), not {list(steps)}")
        if any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError(f"the canary's steps are increasing percentages in 1-100, not {list(steps)}")
        return steps

    @model_validator(mode="after")
    def _waits_longer_than_it_bakes(self) -> RolloutConfig:
        if self.max_wait_minutes < self.bake_minutes:
            raise ValueError(
                f"max_wait_minutes ({self.max_wait_minutes}) is shorter than bake_minutes "
                f"({self.bake_minutes})"
            )
        return self


class LabelsConfig(_Frozen):
    """Ground truth that arrives after the prediction: files or SQL rows of an inference id
    (or the dataset's keys), the label (the target column) and when it was known."""

    # CSV and Parquet files alike, unless a pattern says otherwise.
    source: FileSource | SqlSource = Field(
        default_factory=lambda: FileSource(pattern="*"), discriminator="kind"
    )
    id_column: str = "inference_id"
    # When the label was known; a later label of the same prediction replaces an earlier
    # one. None: the time the labels file was read.
    time_column: str | None = "labelled_at"
    # The prediction log is read this far back: a label of an older prediction is not
    # joined (it counts as unmatched).
    max_age_days: float = Field(default=90, gt=0)
    # Whether labelled production rows join the next training window (as a partition).
    join_training: bool = False


class ScoringConfig(_Frozen):
    """Batch scoring: files (or SQL extracts) the champion scores, one output per input."""

    source: FileSource | SqlSource = Field(default_factory=FileSource, discriminator="kind")


class ScheduleConfig(_Frozen):
    monitor_drift: str = "@daily"
    # SQL sources only: when extract_sql lands the period just ended (none: by hand or REST).
    extract_sql: str | None = None
    # When files in the scoring location are scored (each run scores every pending file).
    score_batch: str = "*/15 * * * *"
    # When landed labels are joined to the prediction log.
    join_labels: str = "@hourly"
    # When the served model's health alerts are read and sent.
    watch_service: str = "*/5 * * * *"

    @field_validator("monitor_drift", "extract_sql", "score_batch", "join_labels", "watch_service")
    @classmethod
    def _is_cron(cls, value: str | None) -> str | None:
        return _cron(value)


def _cron(value: str | None) -> str | None:
    from croniter import croniter

    if value is not None and not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a cron expression (e.g. '0 3 * * *' or '@daily')")
    return value


class AirloopConfig(_Frozen):
    """The whole config file."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    task: TaskType
    dataset: DatasetConfig
    split: SplitConfig = SplitConfig()
    model: ModelConfig
    gate: GateConfig
    retraining: RetrainingConfig = RetrainingConfig()
    drift: DriftConfig = DriftConfig()
    schedules: ScheduleConfig = ScheduleConfig()
    training: TrainingConfig = TrainingConfig()
    serving: ServingConfig = ServingConfig()
    labels: LabelsConfig = LabelsConfig()
    scoring: ScoringConfig = ScoringConfig()
    rollout: RolloutConfig = RolloutConfig()

    @model_validator(mode="after")
    def _fits_task(self) -> AirloopConfig:
        allowed = METRICS_OF_TASK[self.task]
        if self.gate.metric not in allowed:
            raise ValueError(
                f"gate.metric {self.gate.metric!r} does not fit task {self.task!r}; "
                f"use one of {list(allowed)}"
            )
        unknown = [c for c in self.drift.columns if c not in self.dataset.columns]
        if unknown:
            raise ValueError(f"drift.columns: {unknown} are not declared under dataset.columns")
        self._check_drift_methods()
        unknown = [c for c in self.gate.segments if c not in self.dataset.columns]
        if unknown:
            raise ValueError(f"gate.segments: {unknown} are not declared under dataset.columns")
        if self.training.gpu is True and self.model.family not in GPU_FAMILIES:
            raise ValueError(
                f"training.gpu: true needs a family that trains on a GPU ({sorted(GPU_FAMILIES)}), "
                f"not {self.model.family!r}; use auto or false"
            )
        _check_target(self.task, self.dataset.target, self.dataset.columns[self.dataset.target.column])
        hidden = sorted(set(self.pii_columns()) & set(self.dataset.features))
        if self.labels.join_training and hidden:
            raise ValueError(
                f"labels.join_training: features {hidden} are pii, so the prediction log keeps no "
                "value of them to train on; mark them pii: false or leave join_training off"
            )
        if self.dataset.target.column in self.pii_columns():
            raise ValueError(
                f"dataset.columns.{self.dataset.target.column}.pii: the target cannot be pii; "
                "labels are joined to predictions by value"
            )
        return self

    def pii_columns(self) -> dict[str, str]:
        """{column: "hash" | "drop"} of the columns marked pii."""
        return {name: mode for name, spec in self.dataset.columns.items() if (mode := spec.pii_mode)}

    def logged_keys(self) -> list[str]:
        """The dataset's keys that are not features: a request may carry them, so labels
        can be joined by key; the model never sees them."""
        return [key for key in self.dataset.keys if key not in self.dataset.features]

    def _check_drift_methods(self) -> None:
        compared = self.drift_columns()
        for key, named in (
            ("drift.methods", self.drift.methods),
            ("drift.thresholds", self.drift.thresholds),
        ):
            unknown = [c for c in named if c not in compared]
            if unknown:
                raise ValueError(f"{key}: {unknown} are not compared columns {compared}")
        for column, method in self.drift.methods.items():
            numeric = self.dataset.columns[column].type in (*NUMERIC_TYPES, *DATE_TYPES)
            if numeric and method in ("chisquare", "z"):
                raise ValueError(f"drift.methods: {method} compares categories; {column!r} is numeric")
            if not numeric and method in ("wasserstein", "ks"):
                raise ValueError(f"drift.methods: {method} compares numbers; {column!r} is categorical")
        # A multiclass model's predictions are classes; the others' are numbers.
        categorical = self.task == "multiclass_classification"
        predicted_by = self.drift.prediction_method
        if predicted_by in (("wasserstein", "ks") if categorical else ("chisquare", "z")):
            kind = "numbers" if categorical else "categories"
            raise ValueError(
                f"drift.prediction_method: {predicted_by} compares {kind}; this task's predictions are not"
            )

    def drift_columns(self) -> list[str]:
        return list(self.drift.columns) or [*self.dataset.features, self.dataset.target.column]


def _check_target(task: str, target: TargetSpec, column: ColumnSpec) -> None:
    """Raise naming dataset.target when the label column cannot be the task's label."""
    kind, key = column.type, "dataset.target"
    if kind in DATE_TYPES:
        raise ValueError(
            f"{key}: {target.column!r} is a {kind} column; a label must be a number, text or bool"
        )
    if task == "regression":
        extra = [k for k in ("positive", "positive_above", "classes") if getattr(target, k) is not None]
        if kind not in NUMERIC_TYPES:
            raise ValueError(f"{key}: regression needs a numeric column, not {kind}")
        if extra:
            raise ValueError(f"{key}: {extra} only apply to classification")
        return
    if target.positive is not None and target.positive_above is not None:
        raise ValueError(f"{key}: give positive or positive_above, not both")
    if target.classes is not None:
        for value in target.classes:
            _check_label(value, kind, f"{key}.classes")
    if task == "multiclass_classification":
        extra = [k for k in ("positive", "positive_above") if getattr(target, k) is not None]
        if extra:
            raise ValueError(f"{key}: {extra} only apply to binary classification; each value is a class")
        if kind == "float":
            raise ValueError(f"{key}: {target.column!r} is float; multiclass labels are int, str or bool")
        return
    if target.positive_above is not None:
        if kind not in NUMERIC_TYPES:
            raise ValueError(f"{key}.positive_above needs a numeric column, not {kind}; use positive")
        return
    if target.positive is None:
        if kind in ("str", "float"):
            raise ValueError(
                f"{key}: a binary label in a {kind} column needs positive (the positive class, "
                f'e.g. positive: "Yes") or, for numbers, positive_above'
            )
        return  # an int column of 0/1, or a bool column (true is positive)
    _check_label(target.positive, kind, f"{key}.positive")
    if target.classes is not None:
        if len(target.classes) != 2:
            raise ValueError(f"{key}.classes: a binary label has two classes, not {list(target.classes)}")
        if str(target.positive) not in {str(c) for c in target.classes}:
            raise ValueError(
                f"{key}.positive: {target.positive!r} is not one of classes {list(target.classes)}"
            )
    if column.allowed is not None and str(target.positive) not in column.allowed:
        raise ValueError(f"{key}.positive: {target.positive!r} is not among the column's allowed values")


def _check_label(value: Label, kind: str, key: str) -> None:
    fits = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
    }[kind]
    if not fits:
        hint = " (quote it: YAML reads yes, no, on, off, true and false unquoted as booleans)"
        raise ValueError(
            f"{key}: {value!r} is not a {kind} value, as the label column is"
            + (hint if isinstance(value, bool) and kind == "str" else "")
        )


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        # A check across sections names its keys itself.
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<memory>") -> AirloopConfig:
    """Validate an already-loaded mapping; raise ConfigError naming each bad key."""
    try:
        return AirloopConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> AirloopConfig:
    """Load and validate a config (default: the example, configs/flights.yaml).

    Several files separated by ':' are overlays: each later file's keys replace the earlier
    ones', section by section (e.g. `configs/flights.yaml:configs/overlays/production.yaml`).
    A deployment's models are loaded by `airloop.deployment`.
    """
    spec = str(path or default_config_path())
    files = [Path(part) for part in spec.split(os.pathsep) if part]
    merged: dict[str, Any] = {}
    for file in files:
        merged = _overlay(merged, _read_yaml(file))
    return parse_config(merged, " + ".join(str(f) for f in files))


def with_overrides(config: AirloopConfig, overrides: dict[str, Any], source: str) -> AirloopConfig:
    """The config with some keys replaced (sections merged as overlays are), validated again."""
    return parse_config(_overlay(config.model_dump(mode="json"), overrides), source)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        # libyaml's loader where installed: the DAG file loads every model's config each parse.
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, not {type(data).__name__}")
    return data


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        both_mappings = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _overlay(merged[key], value) if both_mappings else value
    return merged


def default_config_path() -> Path:
    from airloop.paths import PROJECT_ROOT

    return PROJECT_ROOT / "configs" / "flights.yaml"
