"""A small client for Airflow 3's REST API (token auth), for the demo, tests and CI triggers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests


class AirflowApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Airflow API answered {status}: {message}")
        self.status = status


@dataclass
class AirflowClient:
    base_url: str
    username: str
    password: str
    _token: str | None = field(default=None, repr=False)

    def token(self) -> str:
        if self._token is None:
            answer = requests.post(
                f"{self.base_url}/auth/token",
                timeout=30,
                json={"username": self.username, "password": self.password},
            )
            self._raise_for(answer)
            self._token = answer.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = requests.request(
            method,
            f"{self.base_url}/api/v2/{path.lstrip('/')}",
            timeout=30,
            headers={"Authorization": f"Bearer {self.token()}"},
            **kwargs,
        )
        self._raise_for(answer)
        return answer.json() if answer.content else None

    def healthy(self) -> bool:
        try:
            answer = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        except requests.RequestException:
            return False
        return answer.ok

    def dag_ids(self) -> list[str]:
        """Every DAG the api-server knows, page by page (it answers at most
        `[api] maximum_page_limit`, 100 by default, per request)."""
        ids: list[str] = []
        while True:
            page = self.request(
                "GET", "dags", params={"limit": 100, "offset": len(ids), "order_by": "dag_id"}
            )
            ids += [d["dag_id"] for d in page["dags"]]
            if not page["dags"] or len(ids) >= int(page["total_entries"]):
                return ids

    def dag_runs(self, dag_id: str, limit: int = 100) -> list[dict]:
        found = self.request(
            "GET", f"dags/{dag_id}/dagRuns", params={"limit": limit, "order_by": "-start_date"}
        )
        return list(found["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        found = self.request("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return list(found["task_instances"])

    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> dict:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return dict(self.request("POST", f"dags/{dag_id}/dagRuns", json=body))

    def wait_until_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Airflow api-server at {self.base_url} not healthy after {timeout:.0f} s")
            time.sleep(1)

    @staticmethod
    def _raise_for(answer: requests.Response) -> None:
        if not answer.ok:
            raise AirflowApiError(answer.status_code, answer.text[:500])
