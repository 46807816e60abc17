"""`airloop models`: each model's champion, last decision and last drift check, from the
records the stages keep, per model."""

from __future__ import annotations

import json
import os

from airloop.cli import main
from airloop.deployment import load_deployment
from airloop.model_status import last_decision, last_drift, model_status, render_status
from airloop.paths import StatePaths


def _write(path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    os.utime(path, (1_700_000_000, 1_700_000_000))


def test_a_model_with_no_records_has_nothing_to_say(tmp_path) -> None:
    config = load_deployment().models["weather"]
    status = model_status(config, StatePaths(tmp_path))
    assert status["champion"] is None and status["last_decision"] is None and status["last_drift"] is None
    assert status["dags"][0] == "weather__ingest_data"
    assert "weather  regression  none yet  -" in render_status([status])


def test_the_newest_records_of_each_model_are_its_verdicts(tmp_path) -> None:
    flights, weather = StatePaths(tmp_path).for_model("flights"), StatePaths(tmp_path).for_model("weather")
    _write(
        flights.reports / "decisions" / "old.json",
        {"run_key": "old", "skipped": "cooldown", "triggers": ["drift"]},
    )
    _write(
        flights.reports / "decisions" / "new.json",
        {
            "run_key": "new",
            "triggers": ["new_data"],
            "decision": {"reason": "beats all"},
            "promoted": {"version": "3"},
        },
    )
    os.utime(flights.reports / "decisions" / "new.json")  # newer than "old"
    drift = {"status": "checked", "drift_detected": True, "signals": ["data_drift"], "reason": "temp moved"}
    _write(weather.reports / "drift" / "2013-07_x.summary.json", drift)

    decision = last_decision(flights)
    assert decision["verdict"] == "promoted v3" and decision["triggers"] == ["new_data"]
    assert last_decision(weather) is None
    assert last_drift(weather)["verdict"] == "drift: data_drift" and last_drift(flights) is None


def test_airloop_models_prints_every_model(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "flights" in out and "weather" in out and "none yet" in out
    assert main(["--model", "weather", "models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in listed["models"]] == ["weather"] and listed["broken"] == {}
