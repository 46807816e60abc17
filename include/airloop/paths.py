"""Where airloop keeps its state: one directory ($AIRLOOP_HOME, git-ignored by default).

Every stage finds its inputs and leaves its outputs here, keyed by partition or run id,
so a retried task overwrites its own output instead of adding a second one.

The services' stores (MLflow, BentoML, Evidently, Airflow) are the deployment's, shared by
its models. What one model owns (landing, quarantine, its DVC repository, reports, runs,
locks) lies in that model's subtree, `models/<name>/`, so nothing one model does touches
another's files. Paths without a model keep a model's files at the top (one-model state
directories of tests and benchmarks).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

PROJECT_ROOT_ENV = "AIRLOOP_PROJECT_ROOT"


def _project_root() -> Path:
    """The checkout holding dags/, plugins/ and configs/: $AIRLOOP_PROJECT_ROOT, else the
    source tree this package is installed from in editable mode, else the current directory
    (a wheel install, as in the Docker images, knows no checkout)."""
    if os.environ.get(PROJECT_ROOT_ENV):
        return Path(os.environ[PROJECT_ROOT_ENV]).resolve()
    source = Path(__file__).resolve().parents[2]
    if (source / "dags").is_dir() and (source / "configs").is_dir():
        return source
    return Path.cwd().resolve()


PROJECT_ROOT = _project_root()


def safe_key(value: str) -> str:
    """A run id or partition turned into a file-name-safe key (Airflow run ids hold ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("_") or "unnamed"


@dataclass(frozen=True)
class StatePaths:
    home: Path
    # An MLflow server to use instead of the SQLite store under `home` (production).
    mlflow_server: str | None = None
    # The model whose files these are; None: a one-model state directory.
    model: str | None = None

    @classmethod
    def from_env(cls, model: str | None = None) -> StatePaths:
        """Resolved once: MLflow itself rewrites MLFLOW_TRACKING_URI in os.environ later on."""
        home = Path(os.environ.get("AIRLOOP_HOME", PROJECT_ROOT / ".state")).resolve()
        return cls(home, os.environ.get("MLFLOW_TRACKING_URI") or None, model)

    def for_model(self, name: str) -> StatePaths:
        """The same deployment's paths for model `name`."""
        return replace(self, model=name)

    @property
    def models_root(self) -> Path:
        return self.home / "models"

    @property
    def model_home(self) -> Path:
        """Where this model's own files live."""
        return self.models_root / self.model if self.model else self.home

    # Data: a DVC repository of its own (no git), holding validated partitions and
    # assembled training sets.
    @property
    def landing(self) -> Path:
        return self.model_home / "landing"

    def landing_pattern(self, pattern: str) -> str:
        """Glob of landed files. Glob never matches dot-names: writers land under one, then rename."""
        return str(self.landing / pattern)

    @property
    def data(self) -> Path:
        return self.model_home / "data"

    @property
    def partitions(self) -> Path:
        return self.data / "partitions"

    @property
    def training_sets(self) -> Path:
        return self.data / "training_sets"

    @property
    def dvc_remote(self) -> Path:
        return self.model_home / "dvc-remote"

    @property
    def quarantine(self) -> Path:
        return self.model_home / "quarantine"

    # Records each stage writes: what was checked or decided, and why.
    @property
    def reports(self) -> Path:
        return self.model_home / "reports"

    def report_dir(self, kind: str) -> Path:
        path = self.reports / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    def decision_record(self, run_key: str) -> Path:
        """What one continuous-training run decided (trained or skipped, gated, promoted)."""
        return self.report_dir("decisions") / f"{safe_key(run_key)}.json"

    def shadow_report(self, challenger_version: str, champion_version: str) -> Path:
        """How a shadowed challenger answered live traffic beside the champion (.json, .md)."""
        name = f"v{challenger_version}-vs-v{champion_version}"
        return self.report_dir("shadow") / f"{safe_key(name)}.json"

    # The production half: what the served model answered, and what it should have.
    @property
    def prediction_log(self) -> Path:
        """Every logged answer, time-partitioned Parquet (`airloop.packaging.prediction_sink`)."""
        return self.model_home / "predictions"

    @property
    def labels_landing(self) -> Path:
        """Where labels files land when the config names no labels source location."""
        return self.model_home / "labels" / "landing"

    @property
    def labelled(self) -> Path:
        """Joined labels: one partition per labels file, DVC-versioned."""
        return self.data / "labelled"

    @property
    def scoring_landing(self) -> Path:
        """Where files to batch-score land when the config names no scoring location."""
        return self.model_home / "scoring" / "landing"

    @property
    def scores(self) -> Path:
        """Batch scoring's outputs: one Parquet file per input file and model version."""
        return self.model_home / "scoring" / "scores"

    @property
    def runs(self) -> Path:
        return self.model_home / "runs"

    @property
    def promotion_lock(self) -> Path:
        """Held while registry aliases move, so promotions and rollbacks never interleave."""
        return self.model_home / "locks" / "promotion.lock"

    @property
    def ledger(self) -> Path:
        """Every move of this model's aliases, one JSON line each (`airloop.registry.ledger`)."""
        return self.model_home / "ledger.jsonl"

    # Services' own stores.
    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def evidently_workspace(self) -> Path:
        """Every drift check's report: `evidently ui --workspace <this>` shows the history."""
        return self.home / "evidently"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def pii_key_file(self) -> Path:
        return self.home / "secrets" / "pii.key"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    def tracking_uri(self) -> str:
        return self.mlflow_server or f"sqlite:///{self.mlflow_db}"


def report_roots(home: Path) -> list[Path]:
    """Every reports folder of the deployment under `home`: its models' and the top one."""
    return [home / "reports", *sorted((home / "models").glob("*/reports"))]
