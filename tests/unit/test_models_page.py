"""The Airflow UI's airloop page: each model's champion, last decision, drift check and last
alias moves, linked."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from airloop.orchestration.models_page import (
    dag_list_url,
    dag_url,
    model_statuses,
    models_page,
    render_models_page,
)
from airloop.orchestration.naming import STAGES, dag_id
from airloop.paths import StatePaths
from airloop.registry.ledger import record_move

MLFLOW_UI = "http://mlflow.example.test:5000"
PROMOTED_AT = "2026-11-30T10:05:00+00:00"
RUN_ID = "manual__2026-11-30T10:00:00+00:00"


class Links(HTMLParser):
    """Every <a> of a page: (href, target, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str | None, str]] = []
        self._open: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), ""

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.links.append((self._open["href"] or "", self._open.get("target"), self._text))
            self._open = None


def links_of(page: str) -> dict[str, tuple[str, str | None]]:
    """{href: (target, text)} of a page's links (the first, where several share an href: the
    ledger's evidence links what the champion and decision columns do)."""
    parser = Links()
    parser.feed(page)
    links: dict[str, tuple[str | None, str]] = {}
    for href, target, text in parser.links:
        links.setdefault(href, (target, text))
    return links


def reports_of(home: Path, model: str) -> StatePaths:
    return StatePaths(home).for_model(model)


def flights_status(home: Path) -> dict[str, Any]:
    reports = reports_of(home, "flights").reports
    record = reports / "decisions" / "manual__2026-11-30T10_00_00_00_00.md"
    drift = reports / "drift" / "2013-03_run.html"
    for path in (record, drift):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("report")
    return {
        "model": "flights",
        "task": "binary_classification",
        "registered_name": "flights-late-arrival",
        "champion": {"version": "3", "uri": "models:/flights-late-arrival/3"},
        "last_decision": {
            "verdict": "promoted v3",
            "reason": "candidate beats champion on roc_auc by 0.021",
            "triggers": ["validated_data"],
            "run_key": RUN_ID,
            "at": PROMOTED_AT,
            "record": str(record),
        },
        "last_drift": {
            "verdict": "drift: data",
            "reason": "share of drifted columns 0.45 >= 0.3",
            "partition": "2013-03",
            "at": "2026-12-01T06:00:00+00:00",
            "report": str(drift),
        },
        "ledger": {
            "count": 5,
            "last": [
                {
                    "seq": 5,
                    "at": PROMOTED_AT,
                    "action": "promoted",
                    "version": "3",
                    "from_version": "2",
                    "actor": "alice",
                    "reason": "candidate beats champion on roc_auc by 0.021",
                    "evidence": {
                        "decision": "models/flights/reports/decisions/manual__2026-11-30T10_00_00_00_00.md",
                        "model_version": "flights-late-arrival/3",
                        "dashboard": "https://grafana.example.test/d/flights",
                        "config": "configs/flights.yaml",  # not a report: not linked
                    },
                },
                {
                    "seq": 4,
                    "at": "2026-11-29T08:00:00+00:00",
                    "action": "rolled_back",
                    "version": "2",
                    "from_version": "1",
                    "actor": "airflow (manual)",
                    "reason": "manual rollback",
                    "evidence": {},
                },
                {"seq": 3, "at": "2026-11-28T08:00:00+00:00", "action": "approved", "version": "1"},
            ],
        },
        "dags": [dag_id("flights", stage) for stage in STAGES],
    }


def weather_status() -> dict[str, Any]:
    return {
        "model": "weather",
        "task": "regression",
        "registered_name": "weather-temp",
        "champion": None,
        "last_decision": None,
        "last_drift": None,
        "ledger": {"count": 0, "last": []},
        "dags": [dag_id("weather", stage) for stage in STAGES],
    }


@pytest.fixture
def page(tmp_path: Path) -> str:
    return render_models_page(
        [flights_status(tmp_path), weather_status()], {}, home=tmp_path, mlflow_ui=MLFLOW_UI
    )


def test_each_model_has_a_row_with_its_task(page: str) -> None:
    assert page.startswith("<!doctype html>")
    for model, task in (("flights", "binary_classification"), ("weather", "regression")):
        row = re.search(rf'<tr id="model-{model}">(.*?)</tr>', page, re.S)
        assert row, f"no row for {model}"
        assert f'<div class="model">{model}</div>' in row.group(1)
        assert task in row.group(1)
    assert "2 models" in page


def test_the_champion_links_to_its_mlflow_model_version_in_a_new_tab(page: str) -> None:
    links = links_of(page)
    url = f"{MLFLOW_UI}/#/models/flights-late-arrival/versions/3"
    assert links[url] == ("_blank", "flights-late-arrival v3")
    weather = re.search(r'<tr id="model-weather">(.*?)</tr>', page, re.S)
    assert weather and "none yet" in weather.group(1) and "weather-temp" in weather.group(1)


def test_the_last_decision_shows_its_verdict_time_reason_record_and_run(page: str) -> None:
    assert "promoted v3" in page
    assert f'<time datetime="{PROMOTED_AT}">2026-11-30 10:05:00+00:00</time>' in page
    assert "candidate beats champion on roc_auc by 0.021" in page
    assert "triggers: validated_data" in page
    links = links_of(page)
    record = "/airloop/reports/models/flights/reports/decisions/manual__2026-11-30T10_00_00_00_00.md"
    assert links[record] == (None, "decision record")  # a report opens in place, in the UI's frame
    run = "/dags/flights__continuous_training/runs/manual__2026-11-30T10%3A00%3A00%2B00%3A00"
    assert links[run] == ("_top", "its run")


def test_the_last_drift_check_shows_its_verdict_window_and_links_its_report(page: str) -> None:
    assert "drift: data" in page and "window: 2013-03" in page
    assert "share of drifted columns 0.45 &gt;= 0.3" in page
    links = links_of(page)
    assert links["/airloop/reports/models/flights/reports/drift/2013-03_run.html"] == (None, "drift report")
    assert links["/dags/flights__monitor_drift/runs"] == ("_top", "its runs")


def test_the_last_moves_show_time_action_versions_actor_reason_evidence_and_the_count(page: str) -> None:
    flights = re.search(r'<tr id="model-flights">(.*?)</tr>', page, re.S)
    assert flights
    moves = re.search(r'<ul class="moves">(.*?)</ul>', flights.group(1), re.S)
    assert moves
    items = re.findall(r"<li>(.*?)</li>", moves.group(1), re.S)
    assert len(items) == 3  # newest first, as the status gives them
    assert (
        f'<time datetime="{PROMOTED_AT}">' in items[0] and '<span class="verdict">promoted</span>' in items[0]
    )
    assert "v2 → v3" in items[0] and "by alice" in items[0]
    assert "rolled back</span> v1 → v2" in items[1] and "by airflow (manual)" in items[1]
    assert "approved</span> v1" in items[2] and "by unknown" in items[2]
    assert "5 moves in all" in flights.group(1) and "airloop --model flights history" in flights.group(1)

    links = links_of(moves.group(1))
    record = "/airloop/reports/models/flights/reports/decisions/manual__2026-11-30T10_00_00_00_00.md"
    assert links[record] == (None, "gate decision")
    assert links[f"{MLFLOW_UI}/#/models/flights-late-arrival/versions/3"] == ("_blank", "model version")
    assert links["https://grafana.example.test/d/flights"] == ("_blank", "dashboard")
    assert len(links) == 3 and "configs/flights.yaml" not in page
    weather = re.search(r'<tr id="model-weather">(.*?)</tr>', page, re.S)
    assert weather and "moves" not in weather.group(1)


def test_every_dag_of_a_model_and_its_tag_filtered_list_open_in_the_airflow_ui(page: str) -> None:
    links = links_of(page)
    for model in ("flights", "weather"):
        for stage in STAGES:
            assert links[f"/dags/{model}__{stage}"] == ("_top", f"{model}__{stage}")
        # The Airflow UI's own tag links: /dags?tags=<tag>.
        assert links[f"/dags?tags=model%3A{model}"] == ("_top", "its DAGs")
    assert links["/dags?tags=airloop"] == ("_top", "all airloop DAGs")


def test_links_carry_the_airflow_uis_base_path(tmp_path: Path) -> None:
    page = render_models_page([flights_status(tmp_path)], {}, home=tmp_path, mlflow_ui=MLFLOW_UI, root="/af")
    links = links_of(page)
    assert "/af/dags/flights__ingest_data" in links
    assert "/af/dags?tags=model%3Aflights" in links
    assert "/af/airloop/reports/models/flights/reports/drift/2013-03_run.html" in links
    assert dag_url("a b", "/af") == "/af/dags/a%20b"
    assert dag_list_url("model:x y") == "/dags?tags=model%3Ax+y"


def test_a_record_outside_the_reports_folders_is_not_linked(tmp_path: Path) -> None:
    status = flights_status(tmp_path)
    outside = tmp_path / "airflow" / "airflow.cfg"
    outside.parent.mkdir()
    outside.write_text("[core]")
    status["last_decision"]["record"] = str(outside)
    status["last_drift"]["report"] = None
    page = render_models_page([status], {}, home=tmp_path, mlflow_ui=MLFLOW_UI)
    assert "decision record" not in page and "drift report" not in page
    assert "airflow.cfg" not in page


def test_everything_shown_is_escaped(tmp_path: Path) -> None:
    status = flights_status(tmp_path)
    status["last_decision"]["reason"] = '<script>alert("x")</script> & more'
    status["last_drift"]["verdict"] = "<img src=x onerror=alert(1)>"
    status["registered_name"] = 'flights"><b>'
    status["ledger"]["last"][0]["actor"] = "<script>alert('actor')</script>"
    status["ledger"]["last"][0]["evidence"]["dashboard"] = 'https://x.test/"><b>'
    page = render_models_page(
        [status],
        {Path("/configs/bad<1>.yaml"): "invalid config: <b>name</b>"},
        home=tmp_path,
        mlflow_ui=MLFLOW_UI,
    )
    body = page.split("<script>")  # the page's own script is the only one
    assert len(body) == 2 and "alert" not in body[1]
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img" not in page and "<b>" not in page
    assert "by &lt;script&gt;alert(&#x27;actor&#x27;)&lt;/script&gt;" in page
    assert f'href="{MLFLOW_UI}/#/models/flights%22%3E%3Cb%3E/versions/3"' in page
    assert "flights&quot;&gt;&lt;b&gt; v3" in page
    assert "bad&lt;1&gt;.yaml" in page and "invalid config: &lt;b&gt;name&lt;/b&gt;" in page


def test_broken_configs_are_listed_with_their_message(tmp_path: Path) -> None:
    broken = {
        Path("/srv/configs/zeta.yaml"): "invalid config /srv/configs/zeta.yaml:\n  task: field required",
        Path("/srv/configs/alpha.yaml"): "invalid config /srv/configs/alpha.yaml:\n  name: already taken",
    }
    page = render_models_page([weather_status()], broken, home=tmp_path, mlflow_ui=MLFLOW_UI)
    assert "1 model, 2 broken configs" in page
    assert "<h2>Broken configs</h2>" in page
    assert page.index("alpha.yaml") < page.index("zeta.yaml")
    assert "<pre>invalid config /srv/configs/zeta.yaml:\n  task: field required</pre>" in page


def test_a_deployment_without_models_says_so(tmp_path: Path) -> None:
    page = render_models_page([], {Path("/c/a.yaml"): "bad"}, home=tmp_path, mlflow_ui=MLFLOW_UI)
    assert "No model configs load in this deployment." in page and "<table>" not in page
    assert "0 models, 1 broken config" in page


def test_a_model_whose_status_fails_gets_a_row_saying_why(config, tmp_path: Path) -> None:
    def status_of(config, paths):
        raise ConnectionError("MLflow at http://mlflow:5000 refused the connection")

    statuses = model_statuses({config.name: config}, StatePaths(tmp_path), status_of)
    assert statuses[0]["error"] == "ConnectionError: MLflow at http://mlflow:5000 refused the connection"
    page = render_models_page(statuses, {}, home=tmp_path, mlflow_ui=MLFLOW_UI)
    assert "status unavailable: ConnectionError: MLflow at http://mlflow:5000 refused" in page
    assert f"/dags/{config.name}__continuous_training" in links_of(page)


def test_the_page_reads_the_deployment_and_each_models_records(
    tmp_path: Path, paths: StatePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """models_page() end to end, the registry aside: configs, broken ones, decision and drift records."""
    from airloop import model_status
    from tests.conftest import FLIGHTS_CONFIG

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nnot_a_section: 1\n")
    monkeypatch.setenv("AIRLOOP_CONFIGS", f"{FLIGHTS_CONFIG}:{broken}")
    monkeypatch.setenv("AIRLOOP_MLFLOW_UI_URL", "http://mlflow.example.test:5123/")
    monkeypatch.setattr(model_status, "champion_of", lambda config, paths: {"version": "7", "uri": "x"})
    flights = paths.for_model("flights")
    record = flights.decision_record(RUN_ID)
    record.write_text(json.dumps({"run_key": RUN_ID, "triggers": ["manual"], "skipped": "no new data"}))
    drift_dir = flights.report_dir("drift")
    (drift_dir / "run.html").write_text("<h1>drift</h1>")
    summary = {
        "status": "ok",
        "drift_detected": False,
        "reason": "fine",
        "html_path": str(drift_dir / "run.html"),
    }
    (drift_dir / "run.summary.json").write_text(json.dumps(summary))
    record_move(
        flights, "rolled_back", "6", from_version="7", actor="alice", reason="p95 doubled",
        evidence={"decision": record.with_suffix(".md")},
    )  # fmt: skip

    page = models_page()

    links = links_of(page)
    assert "http://mlflow.example.test:5123/#/models/flights-late-arrival/versions/7" in links
    assert "skipped" in page and "no new data" in page and "no drift" in page
    assert f"/airloop/reports/models/flights/reports/decisions/{record.name}" in links
    assert "/airloop/reports/models/flights/reports/drift/run.html" in links
    assert "broken.yaml" in page and "Broken configs" in page
    assert "rolled back</span> v7 → v6" in page and "by alice" in page and "1 move in all" in page
