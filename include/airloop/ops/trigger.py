"""`airloop trigger`: start a DAG run over Airflow's REST API, the way CI does, and wait for it.

Where Airflow is: `AIRLOOP_AIRFLOW_URL`, `AIRLOOP_AIRFLOW_USERNAME` and
`AIRLOOP_AIRFLOW_PASSWORD` (CI keeps them as secrets); without them, the embedded stack
of this machine's `$AIRLOOP_HOME` (`make up`). A JWT comes from the api-server's
`/auth/token`, the run is posted to `/api/v2/dags/{dag}/dagRuns`.

The run id is deterministic in CI (`ci__<pipeline id>__<hash of --conf>`, the pipeline id
from `GITHUB_RUN_ID` and the like), so a rerun of the same CI job finds the run it
triggered before (Airflow's 409) and reports that one instead of starting a second.
Outside CI it is `cli__<UTC time>`; `--run-id` sets it outright.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import requests

from airloop.ops.airflow_api import AirflowApiError, AirflowClient
from airloop.paths import StatePaths

# The exit status of `airloop trigger`, by outcome.
SUCCEEDED, FAILED, REFUSED, PAUSED, TIMED_OUT, UNAUTHORISED, UNREACHABLE = 0, 1, 2, 3, 4, 5, 6
# CI systems' ids for one pipeline run, the same when a job is rerun.
CI_RUN_IDS = ("GITHUB_RUN_ID", "CI_PIPELINE_ID", "BUILDKITE_BUILD_ID", "CIRCLE_WORKFLOW_ID", "BUILD_ID")
FINISHED = ("success", "failed")


class TriggerError(RuntimeError):
    """A trigger that cannot go ahead; `exit_code` says which kind."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class TriggeredRun:
    dag_id: str
    run_id: str
    state: str
    # True when a run with this id already existed (a rerun of the same CI job).
    already_triggered: bool
    url: str
    failed_tasks: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return FAILED if self.state == "failed" else SUCCEEDED

    def to_dict(self) -> dict:
        return {**asdict(self), "failed_tasks": list(self.failed_tasks)}


def client_from_env(paths: StatePaths, env: Mapping[str, str] = os.environ) -> AirflowClient:
    """The Airflow that `AIRLOOP_AIRFLOW_*` name, else this machine's embedded stack."""
    url = env.get("AIRLOOP_AIRFLOW_URL", "").strip()
    if url:
        user, password = env.get("AIRLOOP_AIRFLOW_USERNAME"), env.get("AIRLOOP_AIRFLOW_PASSWORD")
        if not user or not password:
            raise TriggerError(
                UNAUTHORISED,
                "AIRLOOP_AIRFLOW_URL is set: set AIRLOOP_AIRFLOW_USERNAME and AIRLOOP_AIRFLOW_PASSWORD",
            )
        return AirflowClient(url.rstrip("/"), user, password)
    from airloop.ops.stack import Stack

    stack = Stack(paths)
    if not stack.settings_file.exists():
        raise TriggerError(
            REFUSED,
            f"no Airflow to trigger: set AIRLOOP_AIRFLOW_URL (and its user and password), "
            f"or start the embedded one with `make up` (none under {paths.airflow_home})",
        )
    return stack.client()


def default_run_id(conf: dict, env: Mapping[str, str] = os.environ, now: datetime | None = None) -> str:
    """The same id for every attempt of one CI pipeline run with the same conf."""
    for name in CI_RUN_IDS:
        if env.get(name):
            digest = hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:8]
            return f"ci__{env[name]}__{digest}"
    return f"cli__{(now or datetime.now(UTC)):%Y%m%dT%H%M%S%fZ}"


def parse_conf(text: str | None) -> dict:
    """--conf as a JSON object; anything else is refused before Airflow is asked."""
    if not text:
        return {}
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as error:
        raise TriggerError(REFUSED, f"--conf is not valid JSON: {error}") from None
    if not isinstance(conf, dict):
        raise TriggerError(REFUSED, f"--conf must be a JSON object, got {type(conf).__name__}: {text}")
    return conf


def trigger(
    client: AirflowClient,
    dag_id: str,
    conf: dict,
    run_id: str,
    wait: bool = False,
    timeout: float = 3600,
    poll_seconds: float = 2,
) -> TriggeredRun:
    """Trigger (or find, on a rerun) the run; with `wait`, until it finishes or `timeout`."""
    try:
        _require_unpaused(client, dag_id)
        try:
            run = client.trigger(dag_id, conf, run_id)
            already = False
        except AirflowApiError as error:
            if error.status != 409:
                raise
            run = client.request("GET", f"dags/{dag_id}/dagRuns/{run_id}")
            already = True
        state = str(run["state"])
        deadline = time.monotonic() + timeout
        while wait and state not in FINISHED:
            if time.monotonic() > deadline:
                raise TriggerError(
                    TIMED_OUT, f"run {run_id} of {dag_id} still {state} after {timeout:.0f} s (--timeout)"
                )
            time.sleep(poll_seconds)
            if state == "queued":  # a DAG paused meanwhile would keep it queued for ever
                _require_unpaused(client, dag_id, queued=run_id)
            state = str(client.request("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"])
    except AirflowApiError as error:
        raise _refusal(error, dag_id) from None
    except requests.RequestException as error:
        raise TriggerError(UNREACHABLE, f"Airflow at {client.base_url} did not answer: {error}") from None
    failed = _failed_tasks(client, dag_id, run_id) if state == "failed" else ()
    url = f"{client.base_url}/dags/{dag_id}/runs/{run_id}"
    return TriggeredRun(dag_id, run_id, state, already, url, failed)


def _require_unpaused(client: AirflowClient, dag_id: str, queued: str | None = None) -> None:
    if client.request("GET", f"dags/{dag_id}")["is_paused"]:
        what = f"run {queued} stays queued until it is unpaused" if queued else "nothing was triggered"
        raise TriggerError(
            PAUSED,
            f"DAG {dag_id} is paused: {what}. Unpause it in the Airflow UI, "
            f"or `airflow dags unpause {dag_id}`",
        )


def _failed_tasks(client: AirflowClient, dag_id: str, run_id: str) -> tuple[str, ...]:
    tasks = client.task_instances(dag_id, run_id)
    return tuple(sorted({t["task_id"] for t in tasks if t["state"] == "failed"}))


def _refusal(error: AirflowApiError, dag_id: str) -> TriggerError:
    if error.status in (401, 403):
        return TriggerError(UNAUTHORISED, f"not authorised: {error} (check the user and password)")
    if error.status == 404:
        return TriggerError(REFUSED, f"no DAG {dag_id!r} (or no such run): {error}")
    return TriggerError(REFUSED, str(error))
