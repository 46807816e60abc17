"""`airloop trigger`'s pure parts: run ids and --conf. Against a real api-server: tests/e2e."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airloop.cli import main
from airloop.ops.trigger import REFUSED, TriggerError, default_run_id, parse_conf


def test_a_ci_rerun_gets_the_same_run_id_and_other_conf_another() -> None:
    ci = {"GITHUB_RUN_ID": "9001", "GITHUB_RUN_ATTEMPT": "1"}
    rerun = {**ci, "GITHUB_RUN_ATTEMPT": "2"}
    conf = {"reason": "nightly"}
    assert default_run_id(conf, ci) == default_run_id(conf, rerun)
    assert default_run_id(conf, ci).startswith("ci__9001__")
    assert default_run_id({"reason": "other"}, ci) != default_run_id(conf, ci)
    assert default_run_id({"a": 1, "b": 2}, ci) == default_run_id({"b": 2, "a": 1}, ci)
    now = datetime(2026, 11, 22, 21, 30, tzinfo=UTC)
    assert default_run_id(conf, {}, now) == "cli__20261122T213000000000Z"


def test_conf_must_be_a_json_object() -> None:
    assert parse_conf(None) == {} and parse_conf('{"force": true}') == {"force": True}
    with pytest.raises(TriggerError, match="must be a JSON object, got list") as refused:
        parse_conf("[1]")
    assert refused.value.exit_code == REFUSED
    with pytest.raises(TriggerError, match="not valid JSON"):
        parse_conf("{force}")


def test_without_an_airflow_the_cli_says_where_to_point_it(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    monkeypatch.delenv("AIRLOOP_AIRFLOW_URL", raising=False)
    assert main(["trigger", "flights__continuous_training"]) == REFUSED
    assert "set AIRLOOP_AIRFLOW_URL" in capsys.readouterr().err
    monkeypatch.setenv("AIRLOOP_AIRFLOW_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("AIRLOOP_AIRFLOW_PASSWORD", raising=False)
    assert main(["--model", "weather", "trigger", "continuous_training"]) == 5
    assert "set AIRLOOP_AIRFLOW_USERNAME and AIRLOOP_AIRFLOW_PASSWORD" in capsys.readouterr().err


def test_a_stage_without_a_model_in_a_deployment_of_several_is_refused_naming_them(capsys) -> None:
    assert main(["trigger", "continuous_training"]) == REFUSED
    assert "['flights', 'weather']" in capsys.readouterr().err
