"""Batch scoring with a real champion: validated, scored as served, written, logged, once.

One small xgboost champion is trained on the session's training window and promoted in a
state dir shared by this module; each test scores in a model subtree of its own
(`StatePaths.for_model`), so its landing, scores, quarantine and prediction log are its own
while the registry is the module's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

# Importing Airflow (the DAG, object storage) configures it for the whole process: when
# nothing chose a home yet, it gets a throwaway one rather than ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airloop-scoringtests-"))

from airloop.config import AirloopConfig, parse_config  # noqa: E402
from airloop.paths import StatePaths  # noqa: E402
from airloop.production.batch_scoring import (  # noqa: E402
    ROLE,
    score_given_file,
    score_pending,
    scoring_location,
)
from tests.conftest import config_variant  # noqa: E402


@dataclass(frozen=True)
class Champion:
    home: Path
    version: str
    model_uri: str


@pytest.fixture(scope="module")
def champion(tmp_path_factory, config, _training_window_built) -> Champion:
    """A weak (2-tree) champion of configs/flights.yaml, registered and promoted."""
    _, window = _training_window_built
    paths = StatePaths(tmp_path_factory.mktemp("batch-scoring") / "state")
    version = registered_champion(config, paths, window.train_path, window.eval_path)
    return Champion(paths.home, version, f"models:/{config.model.registered_name}/{version}")


def registered_champion(config: AirloopConfig, paths: StatePaths, train: str, evaluation: str) -> str:
    """Train a 2-tree model of `config`, register and promote it; its version."""
    from airloop.registry.tracking import tracking_client
    from airloop.registry.versions import promote_champion, register_candidate
    from airloop.training.train import TrainRequest, train_candidate

    variant = config_variant(config, model={"params": {"n_estimators": 2, "max_depth": 2}})
    trained = train_candidate(TrainRequest(variant.model_dump(mode="json"), train, evaluation, {}), paths)
    client, name = tracking_client(paths), config.model.registered_name
    version = register_candidate(
        client, name, trained.run_id, trained.model_uri, {}, paths.tracking_uri()
    ).version
    promote_champion(client, name, version, evaluated_against=None)
    return version


@pytest.fixture
def own(champion: Champion, request: pytest.FixtureRequest) -> StatePaths:
    """This test's model subtree of the module's state dir (the registry is shared)."""
    return StatePaths(champion.home, model=request.node.name.replace("test_", "")[:60])


def land(config: AirloopConfig, paths: StatePaths, name: str, frame: pd.DataFrame) -> Path:
    landing = Path(scoring_location(config, paths))
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / name
    if name.endswith(".parquet"):
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, index=False)
    return target


def log_rows(config: AirloopConfig, paths: StatePaths) -> pd.DataFrame:
    from airloop.production.predictions import read_log

    return read_log(config, paths, roles=(ROLE,))


def log_files(paths: StatePaths) -> list[Path]:
    return sorted(paths.prediction_log.rglob("*.parquet")) if paths.prediction_log.exists() else []


def mlflow_scores(champion: Champion, frame: pd.DataFrame, config: AirloopConfig) -> Any:
    import mlflow

    from airloop.data.frames import feature_frame
    from airloop.evaluation.metrics import model_scores
    from airloop.registry.tracking import point_mlflow_at

    point_mlflow_at(StatePaths(champion.home))
    return model_scores(mlflow.sklearn.load_model(champion.model_uri), feature_frame(frame, config), config)


def test_a_good_file_is_scored_with_the_champions_own_scores(config, own, champion, flights_month) -> None:
    frame = flights_month(3, 800)
    landed = land(config, own, "batch-01.csv", frame)

    summary = score_pending(config, own)

    assert summary["status"] == "scored" and summary["scored"] == ["batch-01.csv"], summary
    assert summary["model_version"] == champion.version and summary["rows"] == len(frame)
    scores = pd.read_parquet(summary["outputs"][0])
    assert len(scores) == len(frame) and scores["inference_id"].is_unique
    assert set(scores["model_version"]) == {champion.version}
    assert set(scores["model_name"]) == {config.model.registered_name}
    expected = mlflow_scores(champion, frame, config)
    assert scores["score"].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert (scores["prediction"].to_numpy() == (expected >= 0.5)).all()
    # The input's own columns come along, as they were, to join back by.
    pd.testing.assert_frame_equal(scores[list(frame.columns)], frame, check_dtype=False)
    assert not landed.exists() and (landed.parent / "scored" / "batch-01.csv").exists()


def test_the_scored_rows_are_in_the_prediction_log_with_role_batch(
    config, own, champion, flights_month
) -> None:
    frame = flights_month(3, 500)
    land(config, own, "batch-02.csv", frame)

    summary = score_pending(config, own)

    scores = pd.read_parquet(summary["outputs"][0])
    logged = log_rows(config, own)
    assert len(logged) == len(frame) and set(logged["role"]) == {"batch"}
    assert set(logged["model_version"]) == {champion.version}
    by_id = logged.set_index("inference_id").loc[scores["inference_id"]]
    assert by_id["score"].to_numpy() == pytest.approx(scores["score"].to_numpy())
    # Features and the keys that are not features, as the service logs them.
    assert by_id["feature.carrier"].tolist() == frame["carrier"].tolist()
    assert by_id["key.flight"].tolist() == frame["flight"].tolist()


def test_scoring_the_same_file_again_writes_and_logs_nothing(config, own, champion, flights_month) -> None:
    frame = flights_month(3, 300)
    landed = land(config, own, "batch-03.csv", frame)
    first = score_pending(config, own)
    outputs, logs = sorted(own.scores.glob("*.parquet")), log_files(own)

    shutil.copy2(landed.parent / "scored" / landed.name, landed)  # the same file lands again
    again = score_pending(config, own)

    assert again["already_scored"] == ["batch-03.csv"] and again["scored"] == [] and again["rows"] == 0
    assert sorted(own.scores.glob("*.parquet")) == outputs and log_files(own) == logs
    assert len(log_rows(config, own)) == first["rows"]
    assert not landed.exists() and (landed.parent / "scored" / "batch-03.csv.1").exists(), "kept, not deleted"
    assert score_pending(config, own)["status"] == "nothing_pending"


def test_a_run_killed_after_logging_does_not_log_the_rows_twice(
    config, own, champion, flights_month, monkeypatch
) -> None:
    import airloop.packaging.prediction_sink as sink

    write_table = sink.write_table

    def killed(*args: Any, **kwargs: Any) -> str:
        write_table(*args, **kwargs)
        raise SystemExit("killed after the log was written")

    land(config, own, "batch-04.csv", flights_month(3, 200))
    monkeypatch.setattr(sink, "write_table", killed)
    with pytest.raises(SystemExit):
        score_pending(config, own)
    monkeypatch.setattr(sink, "write_table", write_table)

    retried = score_pending(config, own)

    assert retried["scored"] == ["batch-04.csv"]
    assert len(log_files(own)) == 1 and retried["files"][0]["log_file"] == str(log_files(own)[0])
    assert len(log_rows(config, own)) == 200


def test_a_file_without_the_target_is_scored(config, own, champion, flights_month) -> None:
    parquet = config_variant(config, scoring={"source": {"kind": "files", "pattern": "*.parquet"}})
    frame = flights_month(3, 400).drop(columns=[config.dataset.target.column])
    land(parquet, own, "unlabelled.parquet", frame)

    summary = score_pending(parquet, own)

    assert summary["scored"] == ["unlabelled.parquet"], summary
    scores = pd.read_parquet(summary["outputs"][0])
    assert len(scores) == 400 and config.dataset.target.column not in scores.columns
    assert scores["score"].to_numpy() == pytest.approx(mlflow_scores(champion, frame, config), abs=1e-6)
    assert summary["files"][0]["warnings"] == [], "an absent label is no problem at all"


def test_bad_files_are_quarantined_and_the_next_good_file_is_still_scored(
    config, own, champion, flights_month
) -> None:
    good = flights_month(3, 300)
    land(config, own, "a-no-distance.csv", good.drop(columns=["distance"]))
    wrong = good.copy()
    wrong.loc[:9, "origin"] = "XYZ"
    land(config, own, "b-wrong-origin.csv", wrong)
    garbage = land(config, own, "c-garbage.csv", good)
    garbage.write_bytes(b"\xff\xfe\x00 not a CSV \x00\x01")
    land(config, own, "d-good.csv", good)

    summary = score_pending(config, own)

    assert summary["rejected"] == ["a-no-distance.csv", "b-wrong-origin.csv", "c-garbage.csv"]
    assert summary["scored"] == ["d-good.csv"] and summary["rows"] == 300
    reasons = {f["file"]: f["reason"] for f in summary["files"] if f["status"] == "rejected"}
    assert "expect_column_to_exist on column 'distance'" in reasons["a-no-distance.csv"]
    assert "'origin'" in reasons["b-wrong-origin.csv"] and "XYZ" in reasons["b-wrong-origin.csv"]
    assert reasons["c-garbage.csv"].startswith("readable_file")
    for name in reasons:
        kept = own.quarantine / "scoring" / Path(name).stem
        assert (kept / name).exists() and (kept / f"{name}.validation.json").exists()
    assert list(Path(scoring_location(config, own)).glob("*.*")) == [], "nothing is left pending"
    assert len(log_rows(config, own)) == 300


def test_no_champion_skips_with_a_reason_and_leaves_the_files(config, own, flights_month) -> None:
    nobody = config_variant(config, model={"registered_name": "no-such-model"})
    landed = land(nobody, own, "waiting.csv", flights_month(3, 100))

    summary = score_pending(nobody, own)

    assert summary["status"] == "skipped" and "no champion model yet" in summary["reason"]
    assert "1 file(s) wait" in summary["reason"] and landed.exists()
    assert score_given_file(nobody, own, landed)["status"] == "skipped"


def test_airloop_score_scores_pending_files_or_the_one_named(
    config, champion, flights_month, tmp_path, monkeypatch, capsys
) -> None:
    from airloop.cli import main

    monkeypatch.setenv("AIRLOOP_HOME", str(champion.home))
    paths = StatePaths(champion.home).for_model("flights")  # where `--model flights` keeps its files
    land(config, paths, "pending.csv", flights_month(3, 100))
    outside = tmp_path / "elsewhere.csv"
    flights_month(3, 50).to_csv(outside, index=False)

    assert main(["--model", "flights", "score"]) == 0
    assert json.loads(capsys.readouterr().out)["scored"] == ["pending.csv"]
    assert main(["--model", "flights", "score", str(outside)]) == 0
    named = json.loads(capsys.readouterr().out)
    assert named["scored"] == ["elsewhere.csv"] and named["rows"] == 50
    assert outside.exists(), "a file named outside the scoring location stays where it is"

    outside.write_text("carrier\nAA\n")
    assert main(["--model", "flights", "score", str(outside)]) == 1
    assert json.loads(capsys.readouterr().out)["rejected"] == ["elsewhere.csv"]


def test_frame_table_is_batches_table_built_by_column() -> None:
    import pyarrow as pa

    from airloop.packaging.prediction_sink import (
        AnsweredBatch,
        batches_table,
        frame_table,
        log_schema,
        pii_hasher,
    )

    types = {"n": "int", "x": "float", "c": "str", "d": "date", "who": "str", "id": "int"}
    features, keys = {k: types[k] for k in ("n", "x", "c", "d", "who")}, {"id": "int"}
    schema = log_schema("multiclass_classification", features, keys, {"who": "hash", "id": "hash"}, True)
    records = [
        {"n": 1, "x": 0.5, "c": "a", "d": "2013-01-01", "who": "ann", "id": 7},
        {"n": None, "x": None, "c": None, "d": None, "who": None, "id": None},
    ]
    probabilities = [{"yes": 0.75, "no": 0.25}, {"yes": 0.5, "no": 0.5}]
    hasher = pii_hasher(b"key")
    batch = AnsweredBatch(
        1_700_000_000_000, 3.5, ["i1", "i2"], records, ["yes", "no"], [0.75, 0.5], probabilities
    )
    expected = batches_table([batch], schema, "m", "3", "batch", hasher)

    # As a CSV reads them: the int columns holding a null are floats.
    frame = pd.DataFrame.from_records(records).astype({"n": "float64", "id": "float64"})
    answers = {
        "inference_id": ["i1", "i2"], "served_at": 1_700_000_000_000, "latency_ms": 3.5,
        "prediction": ["yes", "no"], "score": [0.75, 0.5], "probabilities": pa.array(
            [json.dumps(p) for p in probabilities]
        ),
    }  # fmt: skip
    built = frame_table(frame, answers, schema, "m", "3", "batch", hasher, types)

    assert built.equals(expected), (built.to_pylist(), expected.to_pylist())


def test_the_dag_scores_on_its_schedule_and_signals_batch_scores(config, paths) -> None:
    from airloop.orchestration.stages.score_batch import build
    from airloop.orchestration.wiring import ModelWiring

    wiring = ModelWiring.of(config, paths)

    dag = build(wiring)

    assert dag.dag_id == "flights__score_batch" and "model:flights" in dag.tags
    assert dag.timetable.expression == config.schedules.score_batch
    assert set(dag.task_ids) == {
        "score_pending_files",
        "any_scored",
        "signal_batch_scores",
        "report_rejected",
    }
    signal = dag.get_task("signal_batch_scores")
    assert [asset.uri for asset in signal.outlets] == [wiring.assets.batch_scores.uri]
    assert not dag.catchup and dag.max_active_runs == 1


BANDS = ("early", "on_time", "late")


def test_a_multiclass_champion_answers_its_classes_and_their_probabilities(
    config, champion, flights_month, tmp_path
) -> None:
    data = config.model_dump(mode="json")
    data["task"] = "multiclass_classification"
    data["dataset"]["columns"]["band"] = {"type": "str", "nullable": True}
    data["dataset"]["target"] = {"column": "band", "classes": list(BANDS)}
    data["model"]["registered_name"] = "flights-delay-band"
    data["gate"] = {**data["gate"], "metric": "log_loss"}
    multiclass = parse_config(data, "multiclass test config")

    def banded(month: int, rows: int) -> pd.DataFrame:
        frame = flights_month(month, rows)
        band = pd.cut(frame["arr_delay"], [-float("inf"), -10, 15, float("inf")], labels=list(BANDS))
        return frame.assign(band=band.astype(object).where(frame["arr_delay"].notna(), None))

    for month, name in ((1, "train"), (2, "eval")):
        banded(month, 2000).to_parquet(tmp_path / f"{name}.parquet", index=False)
    paths = StatePaths(champion.home, model="multiclass")
    registered_champion(multiclass, paths, str(tmp_path / "train.parquet"), str(tmp_path / "eval.parquet"))
    land(multiclass, paths, "bands.csv", banded(3, 300).drop(columns=["band"]))

    summary = score_pending(multiclass, paths)

    assert summary["scored"] == ["bands.csv"], summary
    scores = pd.read_parquet(summary["outputs"][0])
    probabilities = scores[[f"probability.{band}" for band in BANDS]].to_numpy()
    assert probabilities.sum(axis=1) == pytest.approx(1, abs=1e-5)
    assert scores["prediction"].tolist() == [BANDS[i] for i in probabilities.argmax(axis=1)]
    assert scores["score"].to_numpy() == pytest.approx(probabilities.max(axis=1))
    logged = log_rows(multiclass, paths).set_index("inference_id").loc[scores["inference_id"]]
    assert logged["prediction"].tolist() == scores["prediction"].tolist()
    as_logged = [[json.loads(text)[band] for band in BANDS] for text in logged["probabilities"]]
    assert as_logged == probabilities.tolist(), "the same numbers, written as JSON"


def test_files_in_object_storage_are_scored_and_moved_to_scored_there(
    config, own, champion, flights_month, tmp_path
) -> None:
    bucket = tmp_path / "bucket"
    remote = config_variant(config, scoring={"source": {"kind": "files", "location": bucket.as_uri()}})
    bucket.mkdir()
    flights_month(3, 200).to_csv(bucket / "remote-01.csv", index=False)
    (bucket / "remote-02.csv").write_text("carrier\nAA\n")

    summary = score_pending(remote, own)

    assert summary["scored"] == ["remote-01.csv"] and summary["rejected"] == ["remote-02.csv"], summary
    assert sorted(p.name for p in bucket.iterdir()) == ["quarantine", "scored"]
    assert (bucket / "scored" / "remote-01.csv").exists() and (
        bucket / "quarantine" / "remote-02.csv"
    ).exists()
    assert (own.quarantine / "scoring" / "remote-02" / "remote-02.csv").exists()
    assert len(pd.read_parquet(summary["outputs"][0])) == 200
    assert score_pending(remote, own)["status"] == "nothing_pending"


def test_a_csv_reads_as_read_table_reads_it(config, flights_month, tmp_path) -> None:
    from airloop.data.frames import read_table
    from airloop.production.batch_scoring import read_scoring_file

    frame = flights_month(3, 2000)
    assert frame["dep_time"].isna().any() and frame["tailnum"].isna().any()
    files = {"month.csv": frame.to_csv(index=False), "odd.csv": 'n,tailnum\n1,"a\nb"\n1.5,None\n,<NA>\n'}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        ours, theirs = read_scoring_file(tmp_path / name, config), read_table(tmp_path / name)
        pd.testing.assert_frame_equal(
            ours.astype(object).where(ours.notna(), None), theirs.astype(object).where(theirs.notna(), None)
        )
        assert (ours.dtypes == theirs.dtypes).all()


def test_a_sql_source_is_extracted_then_scored_once(
    config, own, champion, flights_month, monkeypatch
) -> None:
    import sqlalchemy as sa

    from airloop.production.batch_scoring import extract_scoring_partition
    from tests.services import POSTGRES, postgres_database

    query = "SELECT * FROM flights WHERE to_char(make_date(year::int, month::int, 1), 'YYYY-MM') = :partition"
    source = {"kind": "sql", "conn_id": "airloop_test_scoring", "query": query}
    from_sql = config_variant(config, scoring={"source": source})
    with postgres_database() as database:
        engine = sa.create_engine(f"{POSTGRES}/{database}", poolclass=sa.NullPool)
        flights_month(3, 300).drop(columns=[config.dataset.target.column]).to_sql(
            "flights", engine, index=False
        )
        engine.dispose()
        monkeypatch.setenv(
            "AIRFLOW_CONN_AIRLOOP_TEST_SCORING", f"postgres://postgres@127.0.0.1:5432/{database}"
        )

        landed = extract_scoring_partition(from_sql, own, "2013-03")
        first = score_pending(from_sql, own)
        extract_scoring_partition(from_sql, own, "2013-03")  # the same period, extracted again
        again = score_pending(from_sql, own)

    assert Path(landed) == own.scoring_landing / "2013-03.parquet"
    assert first["scored"] == ["2013-03.parquet"] and first["rows"] == 300, first
    assert again["already_scored"] == ["2013-03.parquet"] and again["outputs"] == []
    assert len(log_rows(from_sql, own)) == 300
