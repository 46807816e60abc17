"""The one YAML file that describes a dataset and how its model is trained, gated and watched.

Everything dataset-specific lives here, so the rest of `airloop` works for any table.
Loading fails before any compute, with a message that names the offending key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ColumnType = Literal["int", "float", "str", "bool"]
# Checks on a column that can be made warnings (recorded; the partition goes on).
ColumnCheck = Literal["exists", "type", "not_null", "range", "allowed", "mean"]
# Checks on the whole partition that can be made warnings.
TableCheck = Literal["row_count", "row_growth", "unique_keys", "extra_columns", "partition_date"]
TaskType = Literal["binary_classification", "regression"]
ModelFamily = Literal["sklearn_hgb", "sklearn_linear", "xgboost"]

CLASSIFICATION_METRICS = {"roc_auc", "average_precision", "log_loss", "accuracy"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}


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
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    mean: MeanCheck | None = None
    # These checks only warn: the failure is recorded and the partition goes on.
    warn_on: tuple[ColumnCheck, ...] = ()


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
    """How partitions are named. Date partitions must parse and must not lie in the future."""

    kind: Literal["key", "date"] = "key"
    date_format: str | None = None

    @model_validator(mode="after")
    def _date_needs_format(self) -> PartitionSpec:
        if self.kind == "date" and not self.date_format:
            raise ValueError("date partitions need date_format (e.g. '%Y-%m')")
        return self


class TargetSpec(_Frozen):
    column: str
    # For binary classification on a numeric column: the label is `column > positive_above`.
    positive_above: float | None = None


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
        return self

    def categorical_features(self) -> list[str]:
        return [f for f in self.features if self.columns[f].type in ("str", "bool")]

    def numeric_features(self) -> list[str]:
        return [f for f in self.features if self.columns[f].type in ("int", "float")]


class SplitConfig(_Frozen):
    # The newest validated partition is the frozen evaluation set; this many partitions
    # before it make the training set.
    window_partitions: int = Field(default=3, ge=1)
    # Only used while a single partition exists: its newest rows are held out.
    bootstrap_eval_fraction: float = Field(default=0.2, gt=0, lt=1)


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


# Hyperparameters each family accepts: typed and bounded, so a mistake fails before compute.
PARAMS_OF_FAMILY: dict[str, type[_Frozen]] = {
    "xgboost": XGBoostParams,
    "sklearn_hgb": HistGradientBoostingParams,
    "sklearn_linear": LinearParams,
}


class ModelConfig(_Frozen):
    family: ModelFamily
    params: dict[str, Any] = Field(default_factory=dict)
    registered_name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 42

    @model_validator(mode="after")
    def _params_fit_family(self) -> ModelConfig:
        try:
            PARAMS_OF_FAMILY[self.family].model_validate(self.params)
        except ValidationError as error:
            problems = "; ".join(
                f"params.{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
            )
            raise ValueError(f"{problems} (for family {self.family!r})") from None
        return self


class GateConfig(_Frozen):
    metric: str
    # The candidate must beat the champion by at least this much (in the metric's units).
    min_improvement: float = 0.0
    # ... and the naive baseline by at least this much.
    min_baseline_margin: float = 0.0


class RetrainingConfig(_Frozen):
    on_new_data: bool = False
    on_drift: bool = True


class DriftConfig(_Frozen):
    # Share of drifted columns at or above which drift is signalled.
    share_threshold: float = Field(default=0.5, gt=0, le=1)
    # Evidently's per-column test threshold (p-value or distance, per its method).
    column_threshold: float | None = None
    min_rows: int = Field(default=100, ge=1)
    # Columns compared; empty means the features and the target.
    columns: tuple[str, ...] = ()


class ScheduleConfig(_Frozen):
    monitor_drift: str = "@daily"
    # SQL sources only: when extract_sql lands the period just ended (none: by hand or REST).
    extract_sql: str | None = None


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

    @model_validator(mode="after")
    def _fits_task(self) -> AirloopConfig:
        allowed = CLASSIFICATION_METRICS if self.task == "binary_classification" else REGRESSION_METRICS
        if self.gate.metric not in allowed:
            raise ValueError(
                f"gate.metric {self.gate.metric!r} does not fit task {self.task!r}; "
                f"use one of {sorted(allowed)}"
            )
        unknown = [c for c in self.drift.columns if c not in self.dataset.columns]
        if unknown:
            raise ValueError(f"drift.columns: {unknown} are not declared under dataset.columns")
        target_type = self.dataset.columns[self.dataset.target.column].type
        if self.task == "regression" and target_type not in ("int", "float"):
            raise ValueError(f"dataset.target: regression needs a numeric column, not {target_type}")
        return self

    def drift_columns(self) -> list[str]:
        return list(self.drift.columns) or [*self.dataset.features, self.dataset.target.column]


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<memory>") -> AirloopConfig:
    """Validate an already-loaded mapping; raise ConfigError naming each bad key."""
    try:
        return AirloopConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> AirloopConfig:
    """Load and validate a config file (default: $AIRLOOP_CONFIG, else configs/flights.yaml)."""
    resolved = Path(path or os.environ.get("AIRLOOP_CONFIG") or default_config_path())
    if not resolved.is_file():
        raise ConfigError(f"config file not found: {resolved}")
    try:
        data = yaml.safe_load(resolved.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config {resolved} is not valid YAML: {error}") from None
    return parse_config(data, str(resolved))


def default_config_path() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "flights.yaml"
