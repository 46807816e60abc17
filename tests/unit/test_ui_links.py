"""What a task publishes for the UI's airloop buttons, and the URLs the buttons open."""

from __future__ import annotations

import pytest

from airloop.orchestration.links import (
    BUTTONS,
    DEFAULT_MLFLOW_UI_URL,
    MLFLOW_UI_URL_ENV,
    button_urls,
    link_references,
    link_url,
    mlflow_ui_base_url,
    report_file,
)

MLFLOW_UI = "http://mlflow.example.test:5000"


def test_files_are_published_relative_to_the_state_home_and_runs_as_they_are(tmp_path) -> None:
    card = tmp_path / "models" / "flights" / "reports" / "model_cards" / "flights-v3.html"
    card.parent.mkdir(parents=True)
    card.write_text("<h1>card</h1>")
    published = link_references(
        tmp_path, mlflow_run="abc123", model_version="flights/3", model_card=card, decision=None
    )
    assert published == {
        "mlflow_run": "abc123",
        "model_version": "flights/3",
        "model_card": "models/flights/reports/model_cards/flights-v3.html",
    }


def test_a_one_model_state_homes_reports_folder_is_published_too(tmp_path) -> None:
    drift = tmp_path / "reports" / "drift" / "x.html"
    drift.parent.mkdir(parents=True)
    drift.write_text("<h1>drift</h1>")
    assert link_references(tmp_path, drift_report=str(drift)) == {"drift_report": "reports/drift/x.html"}


def test_a_file_outside_the_reports_folders_is_never_published(tmp_path) -> None:
    (tmp_path / "models" / "flights" / "reports").mkdir(parents=True)
    secret = tmp_path / "airflow" / "airloop-stack.json"
    sneaky = tmp_path / "models" / "flights" / "reports" / ".." / "data" / "partitions.json"
    landing = tmp_path / "models" / "flights" / "landing" / "2013-01.csv"
    assert link_references(tmp_path, drift_report=secret, data_docs=sneaky, model_card=landing) == {}


def test_report_file_serves_only_existing_files_inside_a_reports_folder(tmp_path) -> None:
    record = tmp_path / "models" / "flights" / "reports" / "decisions" / "run.md"
    record.parent.mkdir(parents=True)
    record.write_text("# promoted")
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / "airflow.cfg").write_text("[core]")
    assert report_file(tmp_path, "models/flights/reports/decisions/run.md") == record.resolve()
    assert report_file(tmp_path, "models/flights/reports/decisions/missing.md") is None
    assert report_file(tmp_path, "models/flights/reports/../../../airflow/airflow.cfg") is None
    assert report_file(tmp_path, "airflow/airflow.cfg") is None


def test_the_mlflow_ui_address_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MLFLOW_UI_URL_ENV, " http://mlflow.example.test:5123/ ")
    assert mlflow_ui_base_url() == "http://mlflow.example.test:5123"
    monkeypatch.setenv(MLFLOW_UI_URL_ENV, "  ")
    assert mlflow_ui_base_url() == DEFAULT_MLFLOW_UI_URL
    monkeypatch.delenv(MLFLOW_UI_URL_ENV)
    assert mlflow_ui_base_url() == DEFAULT_MLFLOW_UI_URL


def test_an_unknown_kind_is_refused_naming_the_known_ones(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown link kinds \['bento'\]; known: .*'mlflow_run'"):
        link_references(tmp_path, bento="flights:v3")


def test_each_button_opens_mlflow_or_the_plugins_reports_route() -> None:
    references = {
        "mlflow_run": "abc123",
        "model_version": "flights late/3",
        "decision": "models/flights/reports/decisions/manual__2026-11-30T10:00:00+00:00.md",
        "drift_report": "models/flights/reports/drift/2013-03_run.html",
    }
    assert button_urls(references, MLFLOW_UI) == {
        "MLflow run": f"{MLFLOW_UI}/#/runs/abc123",
        "Model version": f"{MLFLOW_UI}/#/models/flights%20late/versions/3",
        "Gate decision": (
            "/airloop/reports/models/flights/reports/decisions/manual__2026-11-30T10%3A00%3A00%2B00%3A00.md"
        ),
        "Drift report": "/airloop/reports/models/flights/reports/drift/2013-03_run.html",
    }
    assert set(BUTTONS) >= set(button_urls(references, MLFLOW_UI))


def test_an_unknown_kind_has_no_url() -> None:
    with pytest.raises(ValueError, match="unknown link kind 'bento'"):
        link_url("bento", "flights:v3", MLFLOW_UI)
