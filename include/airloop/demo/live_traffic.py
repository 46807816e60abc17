"""The demo's production traffic: once a model's month is trained, the next month's rows
(without their labels) are sent to the champion `airloop serve` is serving, and their
labels land a little later and are joined by the model's join_labels DAG (over REST).

The demo summary then shows, per month, how right the model in charge was live (on the
answers it gave, against the labels that came later) beside its offline evaluation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from airloop.config import AirloopConfig
from airloop.ops.airflow_api import AirflowClient
from airloop.orchestration.naming import dag_id
from airloop.paths import StatePaths

# Rows of a month sent to the champion (a seeded sample): enough for a live metric, a few
# seconds of requests.
SAMPLE_ROWS = 2000
BATCH = 500


@dataclass
class LiveTraffic:
    """`airloop serve` for the replayed models (in a thread of this process, on ports from
    `base_port`), and what sends them a month's traffic."""

    configs: Sequence[AirloopConfig]
    paths: StatePaths
    base_port: int
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _failed: list[BaseException] = field(default_factory=list)

    def start(self) -> LiveTraffic:
        from airloop.packaging.champion_server import serve_champions

        def serve() -> None:
            try:
                serve_champions(
                    self.configs, self.paths, "127.0.0.1", self.base_port, 2, should_stop=self._stop.is_set
                )
            except BaseException as error:
                self._failed.append(error)
                raise

        self._thread = threading.Thread(target=serve, name="airloop-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _serving(self) -> None:
        """Raise what stopped `airloop serve`, if it stopped."""
        if self._failed:
            raise RuntimeError(f"airloop serve stopped: {self._failed[0]!r}") from self._failed[0]

    def url(self, config: AirloopConfig) -> str:
        from airloop.packaging.champion_server import serving_ports

        return f"http://127.0.0.1:{serving_ports(self.configs, self.base_port)[config.name]}"

    def send_month(
        self, client: AirflowClient, config: AirloopConfig, partition: str, month: pd.DataFrame
    ) -> dict[str, Any] | None:
        """Send a sample of `month` to the model's champion, land its labels, join them;
        None when the model has no champion yet."""
        from airloop.registry.tracking import tracking_client
        from airloop.registry.versions import current_champion

        champion = current_champion(tracking_client(self.paths), config.model.registered_name)
        if champion is None:
            return None
        sample = month.sample(min(SAMPLE_ROWS, len(month)), random_state=0)
        base = self.url(config)
        records = request_records(sample, config)
        _wait_serving(base, records[0], champion.version, self._serving)
        answers = send_records(base, records)
        paths = self.paths.for_model(config.name)
        ids = [a["inference_id"] for a in answers]
        # Labels come after the answers are on record: the log is written a second later.
        wait_logged(config, paths, ids)
        land_labels(paths, config, partition, ids, sample)
        state = _join(client, dag_id(config.name, "join_labels"))
        return {"partition": partition, "rows": len(answers), "version": champion.version, "join": state}


def request_records(frame: pd.DataFrame, config: AirloopConfig) -> list[dict[str, Any]]:
    """The rows as a caller sends them: the features and the dataset's other keys."""
    columns = [*config.dataset.features, *config.logged_keys()]
    return list(json.loads(frame[columns].to_json(orient="records", date_format="iso")))


def wait_logged(config: AirloopConfig, paths: StatePaths, ids: list[str], timeout: float = 60) -> None:
    """Until the model's prediction log holds every one of `ids` (it flushes asynchronously)."""
    from airloop.production.predictions import read_log

    deadline = time.monotonic() + timeout
    wanted = set(ids)
    while not wanted <= set(read_log(config, paths, roles=("served",))["inference_id"]):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(wanted)} answers of {config.name} not in its prediction log after {timeout:.0f} s"
            )
        time.sleep(0.5)


def send_records(base: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from airloop.packaging.serving import post_json

    return [
        a
        for start in range(0, len(records), BATCH)
        for a in post_json(f"{base}/predict", {"records": records[start : start + BATCH]})
    ]


def land_labels(
    paths: StatePaths, config: AirloopConfig, partition: str, ids: list[str], rows: pd.DataFrame
) -> None:
    """The labels of answered rows, as they would arrive: `<partition>.csv` of inference id,
    label and when it was known, landed atomically in the model's labels landing."""
    from airloop.data.sources import land_file
    from airloop.production.labels_join import labels_landing

    target = config.dataset.target.column
    labels = pd.DataFrame(
        {
            config.labels.id_column: ids,
            target: rows[target].to_numpy(),
            "labelled_at": datetime.now(UTC).isoformat(),
        }
    )
    landing = labels_landing(config, paths)
    land_file(landing, f"{partition}.csv", lambda staging: labels.to_csv(staging, index=False))


def live_metric(config: AirloopConfig, paths: StatePaths, partition: str) -> dict[str, Any] | None:
    """How right the served model was on `partition`'s rows sent live (the joined labels of
    `<partition>.csv`): {version, rows, metric, value} of the version that answered most of
    them, and `by_version`, the same per version that answered any (a promotion or a canary
    during the month splits them); None when none were joined."""
    from airloop.production.live_performance import labelled_metric, version_classes
    from airloop.registry.tracking import point_mlflow_at

    files = sorted(paths.labelled.glob(f"{partition}-*.parquet")) if paths.labelled.is_dir() else []
    if not files:
        return None
    labelled = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    answered_by = labelled["model_version"].astype(str)
    if config.task == "multiclass_classification":
        point_mlflow_at(paths)
    classes_of = version_classes(config, sorted(set(answered_by)))
    # Each answer is scored as the version that gave it (a multiclass one in its own classes).
    by_version = []
    for version, rows in labelled.groupby(answered_by, sort=True):
        count, value = labelled_metric(config, rows, classes_of[str(version)])
        by_version.append({"version": str(version), "rows": count, "value": value})
    answers = answered_by.value_counts()
    most = max(by_version, key=lambda v: int(answers[v["version"]]))
    return {**most, "metric": config.gate.metric, "by_version": by_version}


def _wait_serving(
    base: str, record: dict[str, Any], version: str, check: Callable[[], None], timeout: float = 240
) -> None:
    """Until the model's server answers as `version` (it follows a promotion within seconds)."""
    import urllib.error

    from airloop.packaging.serving import post_json

    deadline = time.monotonic() + timeout
    answered = None
    while time.monotonic() < deadline:
        check()
        try:
            answered = post_json(f"{base}/predict_one", {"record": record}, timeout=10)["model_version"]
            if answered == version:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise TimeoutError(
        f"{base} did not serve champion v{version} in {timeout:.0f} s (last answer: v{answered})"
    )


def _join(client: AirflowClient, dag: str, timeout: float = 300) -> str:
    """Trigger the join over REST and wait for its run; returns the run's state."""
    run = client.trigger(dag)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.request("GET", f"dags/{dag}/dagRuns/{run['dag_run_id']}")["state"]
        if state in ("success", "failed"):
            return str(state)
        time.sleep(2)
    raise TimeoutError(f"{dag} run {run['dag_run_id']} did not finish in {timeout:.0f} s")
