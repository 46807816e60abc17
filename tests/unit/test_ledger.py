"""The promotion ledger: every alias move of a model, appended once, readable after a crash,
printed by `airloop history` and recorded by the real promotion and rollback paths."""

from __future__ import annotations

import enum
import getpass
import json
import logging
import multiprocessing
from pathlib import Path
from types import SimpleNamespace

import pytest

from airloop.paths import StatePaths
from airloop.registry.ledger import (
    ACTIONS,
    APPROVED,
    CANARY_STEP,
    PROMOTED,
    ROLLED_BACK,
    airflow_actor,
    history_text,
    read_ledger,
    record_move,
)

# Only the ledger at module level: each spawned worker imports this module.
WORKERS, MOVES_EACH = 6, 20


def _append_many(home: str, worker: int, start) -> None:
    """One process's appends, begun when every worker is ready (a spawned process runs this)."""
    paths = StatePaths(Path(home)).for_model("flights")
    start.wait()
    for i in range(MOVES_EACH):
        record_move(
            paths,
            CANARY_STEP,
            str(worker),
            from_version=None,
            actor=f"worker-{worker}",
            reason="x" * 2000,  # long lines: a torn or interleaved write would show
            details={"step": i},
            run_key=f"run-{worker}-{i}",
        )


@pytest.fixture
def flights(tmp_path: Path) -> StatePaths:
    return StatePaths(tmp_path / "state").for_model("flights")


def test_a_model_without_moves_has_an_empty_ledger(flights: StatePaths) -> None:
    from airloop.model_status import last_moves

    assert read_ledger(flights) == []
    assert history_text([]) == "no moves recorded yet"
    assert last_moves(flights) == {"count": 0, "last": [], "path": str(flights.ledger)}
    assert flights.ledger == flights.home / "models" / "flights" / "ledger.jsonl"


def test_appends_from_several_processes_at_once_lose_nothing_and_never_interleave(
    flights: StatePaths,
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    workers = [
        context.Process(target=_append_many, args=(str(flights.home), worker, start))
        for worker in range(WORKERS)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0] * WORKERS

    lines = flights.ledger.read_text().splitlines()
    assert len(lines) == WORKERS * MOVES_EACH
    entries = [json.loads(line) for line in lines]  # every line whole
    assert entries == read_ledger(flights)
    assert [entry["seq"] for entry in entries] == list(range(1, WORKERS * MOVES_EACH + 1))
    assert {(e["actor"], e["details"]["step"]) for e in entries} == {
        (f"worker-{w}", i) for w in range(WORKERS) for i in range(MOVES_EACH)
    }
    # Each worker's own moves stay in the order it made them.
    for worker in range(WORKERS):
        steps = [e["details"]["step"] for e in entries if e["actor"] == f"worker-{worker}"]
        assert steps == list(range(MOVES_EACH))


def test_a_retried_task_records_its_move_once(flights: StatePaths) -> None:
    first = record_move(
        flights, PROMOTED, "3", from_version="2", actor="alice", reason="beats v2", run_key="run-1"
    )
    again = record_move(
        flights, PROMOTED, "3", from_version="2", actor="alice", reason="retry", run_key="run-1"
    )
    assert again == first and again["reason"] == "beats v2"
    assert len(read_ledger(flights)) == 1
    # Another run, another action or version, or no run key at all: another move.
    record_move(flights, PROMOTED, "3", from_version="2", actor="bob", reason="again", run_key="run-2")
    record_move(flights, APPROVED, "3", from_version=None, actor="carol", reason="ok", run_key="run-1")
    record_move(flights, ROLLED_BACK, "2", from_version="3", actor="dave", reason="manual rollback")
    record_move(flights, ROLLED_BACK, "2", from_version="3", actor="dave", reason="manual rollback")
    assert [e["seq"] for e in read_ledger(flights)] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="unknown ledger action 'promote'"):
        record_move(flights, "promote", "3", from_version=None, actor="x", reason="typo")
    assert len(ACTIONS) == 10


def test_a_truncated_last_line_is_skipped_with_a_warning(
    flights: StatePaths, caplog: pytest.LogCaptureFixture
) -> None:
    record_move(flights, PROMOTED, "1", from_version=None, actor="a", reason="first", run_key="r1")
    record_move(flights, PROMOTED, "2", from_version="1", actor="a", reason="second", run_key="r2")
    with flights.ledger.open("a") as handle:
        handle.write('{"seq": 3, "action": "promo')  # a writer that died mid-line
    with caplog.at_level(logging.WARNING, logger="airloop.registry.ledger"):
        assert [e["version"] for e in read_ledger(flights)] == ["1", "2"]
    assert "line 3 is not a ledger entry" in caplog.text

    # The next move is a line of its own after the torn one, which stays skipped.
    record_move(flights, PROMOTED, "3", from_version="2", actor="a", reason="third", run_key="r3")
    assert [(e["seq"], e["version"]) for e in read_ledger(flights)] == [(1, "1"), (2, "2"), (3, "3")]
    assert flights.ledger.read_text().splitlines()[2] == '{"seq": 3, "action": "promo'


def test_evidence_files_are_kept_relative_to_the_state_home(flights: StatePaths) -> None:
    decision = flights.report_dir("decisions") / "run-1.md"
    entry = record_move(
        flights,
        PROMOTED,
        "3",
        from_version="2",
        actor="alice",
        reason="beats v2",
        evidence={
            "decision": decision,
            "model_version": "flights-late-arrival/3",
            "dashboard": "https://grafana.example.test/d/flights",
            "model_card": None,
        },
    )
    assert entry["evidence"] == {
        "decision": "models/flights/reports/decisions/run-1.md",
        "model_version": "flights-late-arrival/3",
        "dashboard": "https://grafana.example.test/d/flights",
    }
    assert entry["model"] == "flights" and entry["at"].endswith("+00:00")


def test_history_text_is_a_table_of_who_moved_what_why_and_the_evidence() -> None:
    entries = [
        {
            "at": "2026-11-30T10:05:00+00:00",
            "action": PROMOTED,
            "version": "3",
            "from_version": "2",
            "actor": "alice",
            "reason": "candidate beats champion on roc_auc by 0.021",
            "evidence": {"decision": "models/flights/reports/decisions/run-1.md"},
        },
        {
            "at": "2026-12-01T08:00:00+00:00",
            "action": ROLLED_BACK,
            "version": "2",
            "from_version": "3",
            "actor": "airflow (manual)",
            "reason": "manual rollback",
            "evidence": {},
        },
        {"at": "2026-12-02T08:00:00+00:00", "action": PROMOTED, "version": "1", "from_version": None},
    ]
    text = history_text(entries).splitlines()
    assert text[0].split() == ["time", "action", "version", "actor", "reason", "evidence"]
    assert set(text[1]) == {"-", " "}
    assert text[2].startswith("2026-11-30 10:05:00+00:00  promoted     v2 → v3  alice")
    assert "candidate beats champion on roc_auc by 0.021" in text[2]
    assert text[2].endswith("decision: models/flights/reports/decisions/run-1.md")
    assert "rolled_back  v3 → v2  airflow (manual)  manual rollback" in text[3] and text[3].endswith("-")
    assert "promoted     v1 " in text[4]


class RunType(enum.StrEnum):  # as Airflow's DagRunType
    SCHEDULED = "scheduled"


def test_a_dag_runs_actor_is_its_triggering_user_else_airflow_and_its_run_type() -> None:
    assert airflow_actor(SimpleNamespace(triggering_user_name="alice", run_type="manual")) == "alice"
    unattended = SimpleNamespace(triggering_user_name=None, run_type=RunType.SCHEDULED)
    assert airflow_actor(unattended) == "airflow (scheduled)"


def test_the_models_status_carries_its_last_three_moves_newest_first(flights: StatePaths) -> None:
    from airloop.model_status import last_moves

    for version in "12345":
        record_move(flights, PROMOTED, version, from_version=None, actor="a", reason="r", run_key=version)
    moves = last_moves(flights)
    assert moves["count"] == 5 and [e["version"] for e in moves["last"]] == ["5", "4", "3"]


def test_promotions_and_rollbacks_are_recorded_and_airloop_history_prints_them(
    config, paths, training_window, monkeypatch, capsys
) -> None:
    """The real path: evaluate, register, promote twice (and a retry), roll back by the CLI,
    then as the DAG's task does (and its retry, which must not roll back again)."""
    from airloop.cli import main
    from airloop.pipelines.continuous_training import promote
    from airloop.pipelines.rollback_champion import roll_back
    from airloop.registry.tracking import tracking_client
    from airloop.registry.versions import current_champion
    from tests.unit.test_promotion import STRONG, WEAK, gated, trained

    flights = paths.for_model(config.name)  # where `airloop --model flights` looks
    window = training_window.summary()
    first = trained(config, flights, training_window, **WEAK)
    packaged = gated(config, flights, training_window, first, "run-v1")
    assert promote(config, flights, packaged, window, first, "run-v1", actor="alice")["promoted"]
    strong = trained(config, flights, training_window, **STRONG)
    better = gated(config, flights, training_window, strong, "run-v2")
    assert promote(config, flights, better, window, strong, "run-v2")["promoted"]
    assert promote(config, flights, better, window, strong, "run-v2")["promoted"]  # a retry
    v1, v2 = packaged["version"], better["version"]

    monkeypatch.setattr(
        "airloop.packaging.bento.build_bento", lambda config, uri, version, paths: f"b:v{version}"
    )
    assert main(["--model", "flights", "rollback", "--reason", "p95 latency doubled"]) == 0
    capsys.readouterr()
    undone = roll_back(config, flights, actor="bob", run_key="manual__undo")
    assert roll_back(config, flights, actor="bob", run_key="manual__undo") == undone  # a retry
    champion = current_champion(tracking_client(flights), config.model.registered_name)
    assert champion is not None and champion.version == undone["version"] == better["version"]

    entries = read_ledger(flights)
    assert [(e["action"], e["version"], e["from_version"]) for e in entries] == [
        (PROMOTED, v1, None),
        (PROMOTED, v2, v1),
        (ROLLED_BACK, v1, v2),
        (ROLLED_BACK, v2, v1),
    ]
    promoted = entries[1]
    assert promoted["actor"] == "airloop" and entries[0]["actor"] == "alice"
    record = json.loads(flights.decision_record("run-v2").read_text())
    assert promoted["reason"] == record["decision"]["reason"] and promoted["run_key"] == "run-v2"
    name = config.model.registered_name
    assert promoted["evidence"] == {
        "decision": "models/flights/reports/decisions/run-v2.md",
        "model_card": f"models/flights/reports/model_cards/{name}-v{v2}.html",
        "model_version": f"{name}/{v2}",
    }
    for reference in (promoted["evidence"]["decision"], promoted["evidence"]["model_card"]):
        assert (paths.home / reference).is_file()
    rolled_back = entries[2]
    assert rolled_back["actor"] == getpass.getuser() and rolled_back["reason"] == "p95 latency doubled"
    assert entries[3]["actor"] == "bob" and entries[3]["reason"] == "manual rollback"

    assert main(["history", "--model", "flights"]) == 0
    out = capsys.readouterr().out
    assert f"flights: 4 move(s) in {flights.ledger}" in out
    assert f"promoted     v{v1} → v{v2}" in out and f"rolled_back  v{v2} → v{v1}" in out
    assert "p95 latency doubled" in out and "decision: models/flights/reports/decisions/run-v2.md" in out
    assert main(["--model", "flights", "history", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["model"] == "flights" and listed["entries"] == entries
