"""Where airloop keeps its state: one directory ($AIRLOOP_HOME, git-ignored by default).

Every stage finds its inputs and leaves its outputs here, keyed by partition or run id,
so a retried task overwrites its own output instead of adding a second one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def safe_key(value: str) -> str:
    """A run id or partition turned into a file-name-safe key (Airflow run ids hold ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("_") or "unnamed"


@dataclass(frozen=True)
class StatePaths:
    home: Path
    # An MLflow server to use instead of the SQLite store under `home` (production).
    mlflow_server: str | None = None

    @classmethod
    def from_env(cls) -> StatePaths:
        """Resolved once: MLflow itself rewrites MLFLOW_TRACKING_URI in os.environ later on."""
        home = Path(os.environ.get("AIRLOOP_HOME", PROJECT_ROOT / ".state")).resolve()
        return cls(home, os.environ.get("MLFLOW_TRACKING_URI") or None)

    # Data: a DVC repository of its own (no git), holding validated partitions and
    # assembled training sets.
    @property
    def landing(self) -> Path:
        return self.home / "landing"

    def landing_pattern(self, pattern: str) -> str:
        """Glob of landed files. Glob never matches dot-names: writers land under one, then rename."""
        return str(self.landing / pattern)

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def partitions(self) -> Path:
        return self.data / "partitions"

    @property
    def training_sets(self) -> Path:
        return self.data / "training_sets"

    @property
    def dvc_remote(self) -> Path:
        return self.home / "dvc-remote"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    # Records each stage writes: what was checked or decided, and why.
    @property
    def reports(self) -> Path:
        return self.home / "reports"

    def report_dir(self, kind: str) -> Path:
        path = self.reports / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    def decision_record(self, run_key: str) -> Path:
        """What one continuous-training run decided (trained or skipped, gated, promoted)."""
        return self.report_dir("decisions") / f"{safe_key(run_key)}.json"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def promotion_lock(self) -> Path:
        """Held while registry aliases move, so promotions and rollbacks never interleave."""
        return self.home / "locks" / "promotion.lock"

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
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    def tracking_uri(self) -> str:
        return self.mlflow_server or f"sqlite:///{self.mlflow_db}"
