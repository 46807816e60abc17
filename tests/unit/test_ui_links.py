"""What a task publishes for the UI's airloop buttons, and the URLs the buttons open."""

from __future__ import annotations

import pytest

from airloop.ui_links import BUTTONS, button_urls, link_references, link_url

MLFLOW_UI = "http://mlflow.example.test:5000"


def test_files_are_published_relative_to_the_reports_folder_and_runs_as_they_are(tmp_path) -> None:
    reports = tmp_path / "reports"
    card = reports / "model_cards" / "flights-v3.html"
    card.parent.mkdir(parents=True)
    card.write_text("<h1>card</h1>")
    published = link_references(
        reports, mlflow_run="abc123", model_version="flights/3", model_card=card, decision=None
    )
    assert published == {
        "mlflow_run": "abc123",
        "model_version": "flights/3",
        "model_card": "model_cards/flights-v3.html",
    }


def test_a_file_outside_the_reports_folder_is_never_published(tmp_path) -> None:
    (tmp_path / "reports").mkdir()
    secret = tmp_path / "airflow" / "airloop-stack.json"
    sneaky = tmp_path / "reports" / ".." / "airflow" / "airloop-stack.json"
    assert link_references(tmp_path / "reports", drift_report=secret, data_docs=sneaky) == {}


def test_an_unknown_kind_is_refused_naming_the_known_ones(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown link kinds \['bento'\]; known: .*'mlflow_run'"):
        link_references(tmp_path, bento="flights:v3")


def test_each_button_opens_mlflow_or_the_plugins_reports_route() -> None:
    references = {
        "mlflow_run": "abc123",
        "model_version": "flights late/3",
        "decision": "decisions/manual__2026-11-30T10:00:00+00:00.md",
        "drift_report": "drift/2013-03_run.html",
    }
    assert button_urls(references, MLFLOW_UI) == {
        "MLflow run": f"{MLFLOW_UI}/#/runs/abc123",
        "Model version": f"{MLFLOW_UI}/#/models/flights%20late/versions/3",
        "Gate decision": "/airloop/reports/decisions/manual__2026-11-30T10%3A00%3A00%2B00%3A00.md",
        "Drift report": "/airloop/reports/drift/2013-03_run.html",
    }
    assert set(BUTTONS) >= set(button_urls(references, MLFLOW_UI))


def test_an_unknown_kind_has_no_url() -> None:
    with pytest.raises(ValueError, match="unknown link kind 'bento'"):
        link_url("bento", "flights:v3", MLFLOW_UI)
