"""What one model's DAGs share: its config and state paths, Assets, pools, ids, tags and
defaults, and the two things every task does with its Airflow context (read the run's
config, publish its UI links)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param

from airloop.config import AirloopConfig
from airloop.orchestration.assets import ModelAssets
from airloop.orchestration.naming import dag_id, model_tag
from airloop.orchestration.notifier import Notify
from airloop.orchestration.pools import dvc_pool, promotion_pool
from airloop.orchestration.run_params import param_specs
from airloop.paths import StatePaths

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ModelWiring:
    config: AirloopConfig
    paths: StatePaths
    assets: ModelAssets

    @classmethod
    def of(cls, config: AirloopConfig, paths: StatePaths) -> ModelWiring:
        return cls(config, paths.for_model(config.name), ModelAssets.of(config.name))

    @property
    def name(self) -> str:
        return self.config.name

    def dag_id(self, stage: str) -> str:
        return dag_id(self.name, stage)

    def tags(self, kind: str) -> list[str]:
        return ["airloop", model_tag(self.name), kind]

    def dag_args(self, stage: str, kind: str, doc: str | None) -> dict[str, Any]:
        """What every stage's DAG shares: its id, tags, docs and defaults; one run at a time."""
        return {
            "dag_id": self.dag_id(stage),
            "start_date": START_DATE,
            "max_active_runs": 1,
            "catchup": False,
            "tags": self.tags(kind),
            "default_args": self.default_args(),
            "doc_md": doc,
        }

    @property
    def dvc_pool(self) -> str:
        return dvc_pool(self.name)

    @property
    def promotion_pool(self) -> str:
        return promotion_pool(self.name)

    def notify(self, event: str, details_from: str | None = None) -> Notify:
        return Notify(event, self.name, details_from)

    def default_args(self) -> dict[str, Any]:
        return {
            "owner": "airloop",
            "retries": 1,
            "retry_delay": timedelta(seconds=10),
            "on_failure_callback": self.notify("failure"),
        }

    def run_params(self, stage: str) -> dict[str, Param]:
        """The stage's trigger-form fields (`airloop.orchestration.run_params`) as Params."""
        return {name: Param(**spec) for name, spec in param_specs(stage).items()}

    def run_config(self, stage: str, context: Any) -> AirloopConfig:
        """The config for this run: the run's params laid over the model's. A bad param fails
        the task at once (no retry), naming the config key."""
        from airflow.sdk.exceptions import AirflowFailException

        from airloop.config import ConfigError
        from airloop.orchestration.run_params import config_for_run

        try:
            return config_for_run(self.config, stage, context["params"])
        except ConfigError as error:
            raise AirflowFailException(str(error)) from None

    def show_links(self, context: Any, **produced: Any) -> None:
        """Publish what this task produced as buttons on its page in the Airflow UI.

        `produced` maps kinds (`airloop.orchestration.links.BUTTONS`) to a run id,
        "name/version" or a report file; the airloop plugin turns them into links.
        """
        from airloop.orchestration.links import LINKS_XCOM, link_references

        references = link_references(self.paths.home, **produced)
        if references:
            context["ti"].xcom_push(key=LINKS_XCOM, value=references)
