"""Labels that arrive later, joined to the prediction log; and live performance from them.

The log is written by the real writer (`prediction_sink`), the joined partitions versioned
by real DVC; labels files are CSV and Parquet as a user would land them.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airloop.config import AirloopConfig
from airloop.packaging import prediction_sink as sink
from airloop.packaging.serving import pii_key
from airloop.paths import StatePaths
from airloop.production.labels_join import join_pending_labels, labelled_predictions
from airloop.production.live_performance import champion_performance, daily_performance
from tests.conftest import config_variant


def _log(
    config: AirloopConfig, paths: StatePaths, ids: list[str], scores: list[float], version: str = "3"
) -> None:
    features = {name: config.dataset.columns[name].type for name in config.dataset.features}
    keys = {name: config.dataset.columns[name].type for name in config.logged_keys()}
    pii = config.pii_columns()
    schema = sink.log_schema(config.task, features, keys, pii, hashing=True)
    records = [
        {"carrier": "AA", "origin": "JFK", "dest": "LAX", "distance": 2475, "hour": 9, "minute": 0,
         "sched_arr_time": 1200, "day": 1, "dep_delay": 3.0, "flight": i, "time_hour": "2013-02-01 09:00:00"}
        for i in range(len(ids))
    ]  # fmt: skip
    batch = sink.AnsweredBatch(sink.now_ms(), 1.0, ids, records, [int(s >= 0.5) for s in scores], scores)
    writer = sink.PredictionLog(
        str(paths.prediction_log),
        schema,
        config.model.registered_name,
        version,
        pii_key=pii_key(paths).encode(),
    )
    writer.append(batch)
    writer.close()


def _land(paths: StatePaths, name: str, frame: pd.DataFrame) -> Path:
    paths.labels_landing.mkdir(parents=True, exist_ok=True)
    path = paths.labels_landing / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def test_labels_join_by_inference_id_and_count_unknown_duplicate_wrong_and_missing(
    config: AirloopConfig, paths: StatePaths
) -> None:
    _log(config, paths, ["a", "b", "c", "d"], [0.9, 0.2, 0.7, 0.4])
    labels = pd.DataFrame(
        {
            "inference_id": ["a", "b", "b", "c", "d", "zzz"],
            "arr_delay": ["30", "2", "25", "not a number", None, "5"],
            "labelled_at": ["2013-02-02T00:00:00", "2013-02-02T00:00:00", "2013-02-03T00:00:00",
                            "2013-02-02T00:00:00", "2013-02-02T00:00:00", "2013-02-02T00:00:00"],
        }
    )  # fmt: skip
    _land(paths, "day-1.csv", labels)
    result = join_pending_labels(config, paths)
    (report,) = result["reports"]
    assert report["status"] == "joined"
    assert report["counts"] == {
        "rows": 6, "missing": 1, "wrong_type": 1, "duplicates": 1, "joined": 2, "unmatched": 1,
    }  # fmt: skip
    joined = pd.read_parquet(paths.labelled / report["partition"])
    by_id = joined.set_index("inference_id")
    assert by_id.loc["b", "arr_delay"] == 25.0, "the later label of a prediction wins"
    assert by_id.loc["a", "score"] == 0.9 and by_id.loc["a", "model_version"] == "3"
    assert by_id.loc["a", "carrier"] == "AA", "features come as served, by their own names"
    assert Path(f"{paths.labelled / report['partition']}.dvc").is_file(), "the partition is DVC-versioned"
    assert (
        not list(paths.labels_landing.glob("*")) and (paths.model_home / "labels/joined/day-1.csv").is_file()
    )
    assert Path(report["report_path"]).is_file()


def test_labels_join_by_the_dataset_keys_even_when_a_key_is_hashed_pii(
    config: AirloopConfig, paths: StatePaths
) -> None:
    columns = {n: s.model_dump(exclude_defaults=True) for n, s in config.dataset.columns.items()}
    columns["flight"] = {**columns["flight"], "pii": True}
    private = config_variant(config, dataset={"columns": columns})
    _log(private, paths, ["a", "b"], [0.8, 0.1])
    stored = pd.read_parquet(next(paths.prediction_log.rglob("*.parquet")))
    assert stored["key.flight"].tolist() != [0, 1], "the log holds the key's hash, not the key"
    keys = {
        "time_hour": ["2013-02-01 09:00:00"] * 2,
        "carrier": ["AA", "AA"],
        "flight": [1, 0],
        "origin": ["JFK"] * 2,
    }
    _land(paths, "by-keys.parquet", pd.DataFrame({**keys, "arr_delay": [40.0, -3.0]}))
    (report,) = join_pending_labels(private, paths)["reports"]
    assert report["counts"]["joined"] == 2 and report["counts"]["unmatched"] == 0
    joined = pd.read_parquet(paths.labelled / report["partition"]).set_index("inference_id")
    assert joined.loc["b", "arr_delay"] == 40.0 and joined.loc["a", "arr_delay"] == -3.0


def test_a_file_that_cannot_be_labels_is_quarantined_and_the_next_still_joins(
    config: AirloopConfig, paths: StatePaths
) -> None:
    _log(config, paths, ["a"], [0.9])
    _land(paths, "1-bad.csv", pd.DataFrame({"something": [1], "arr_delay": [3]}))
    (paths.labels_landing / "2-garbage.parquet").write_bytes(b"not parquet")
    _land(paths, "3-good.csv", pd.DataFrame({"inference_id": ["a"], "arr_delay": [50]}))
    reports = {r["file"]: r for r in join_pending_labels(config, paths)["reports"]}
    assert reports["1-bad.csv"]["status"] == "rejected" and "inference_id" in reports["1-bad.csv"]["reason"]
    assert reports["2-garbage.parquet"]["status"] == "rejected"
    assert reports["3-good.csv"]["counts"]["joined"] == 1
    assert (paths.model_home / "labels/quarantine/1-bad.csv").is_file()

    # The same file landed again joins nothing twice.
    _land(paths, "3-good.csv", pd.DataFrame({"inference_id": ["a"], "arr_delay": [50]}))
    (again,) = join_pending_labels(config, paths)["reports"]
    assert again["status"] == "already_joined"
    assert len(labelled_predictions(paths)) == 1


def test_a_relabel_in_a_later_file_replaces_the_earlier_label(
    config: AirloopConfig, paths: StatePaths
) -> None:
    _log(config, paths, ["a", "b"], [0.9, 0.2])
    _land(paths, "1.csv", pd.DataFrame({"inference_id": ["a", "b"], "arr_delay": [50, 0],
                                        "labelled_at": ["2013-02-02", "2013-02-02"]}))  # fmt: skip
    join_pending_labels(config, paths)
    _land(
        paths,
        "2.csv",
        pd.DataFrame({"inference_id": ["b"], "arr_delay": [60], "labelled_at": ["2013-02-05"]}),
    )
    join_pending_labels(config, paths)
    latest = labelled_predictions(paths).set_index("inference_id")
    assert len(latest) == 2 and latest.loc["b", "arr_delay"] == 60


def test_a_labels_file_is_taken_only_once_written_and_settled(
    config: AirloopConfig, paths: StatePaths
) -> None:
    _log(config, paths, ["a", "b"], [0.9, 0.2])
    settling = config_variant(config, labels={"source": {"kind": "files", "settle_seconds": 60}})
    _land(paths, ".in-flight.csv", pd.DataFrame({"inference_id": ["a"], "arr_delay": [50]}))
    fresh = _land(paths, "fresh.csv", pd.DataFrame({"inference_id": ["b"], "arr_delay": [0]}))
    assert join_pending_labels(settling, paths)["files"] == 0, "a dot-name and a file changed just now wait"
    os.utime(fresh, (time.time() - 120, time.time() - 120))
    (report,) = join_pending_labels(settling, paths)["reports"]
    assert report["file"] == "fresh.csv" and report["counts"]["joined"] == 1
    assert (paths.labels_landing / ".in-flight.csv").is_file(), "still being written: left alone"


def test_a_name_landed_again_with_other_labels_is_kept_beside_the_first(
    config: AirloopConfig, paths: StatePaths
) -> None:
    _log(config, paths, ["a", "b"], [0.9, 0.2])
    _land(paths, "daily.csv", pd.DataFrame({"inference_id": ["a"], "arr_delay": [50]}))
    (first,) = join_pending_labels(config, paths)["reports"]
    _land(paths, "daily.csv", pd.DataFrame({"inference_id": ["b"], "arr_delay": [0]}))
    (second,) = join_pending_labels(config, paths)["reports"]
    kept = paths.model_home / "labels" / "joined"
    assert sorted(p.name for p in kept.iterdir()) == ["daily.csv", "daily.csv.1"]
    assert pd.read_csv(kept / "daily.csv")["inference_id"].tolist() == ["a"], "the first is not overwritten"
    assert first["report_path"] != second["report_path"] and Path(first["report_path"]).is_file()
    assert len(labelled_predictions(paths)) == 2


def test_labels_in_object_storage_are_joined_and_moved_to_joined_there(
    config: AirloopConfig, paths: StatePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from tests.services import s3_server

    _log(config, paths, ["a", "b"], [0.9, 0.2])
    with s3_server(monkeypatch, bucket="labels"):
        remote = config_variant(
            config, labels={"source": {"kind": "files", "location": "s3://labels/flights"}}
        )
        s3 = boto3.client("s3")
        s3.put_object(Bucket="labels", Key="flights/day-1.csv", Body=b"inference_id,arr_delay\na,50\nb,0\n")
        s3.put_object(Bucket="labels", Key="flights/day-2.csv", Body=b"something,arr_delay\n1,3\n")
        reports = {r["file"]: r for r in join_pending_labels(remote, paths)["reports"]}
        listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="labels")["Contents"])
    assert reports["day-1.csv"]["counts"]["joined"] == 2 and reports["day-2.csv"]["status"] == "rejected"
    assert listed == ["flights/joined/day-1.csv", "flights/quarantine/day-2.csv"]
    assert reports["day-1.csv"]["moved_to"] == "s3://labels/flights/joined/day-1.csv"
    assert (paths.model_home / "labels/joined/day-1.csv").is_file(), "the copy read is kept too"
    assert len(labelled_predictions(paths)) == 2


def test_sql_labels_land_the_day_and_the_day_before_and_an_unchanged_day_joins_once(
    config: AirloopConfig, paths: StatePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from airloop.production.labels_join import extract_labels
    from tests.services import POSTGRES, postgres_database

    _log(config, paths, ["a", "b", "c"], [0.9, 0.2, 0.7])
    query = "SELECT inference_id, arr_delay, labelled_at FROM labels WHERE day = :partition"
    source = {"kind": "sql", "conn_id": "airloop_test_labels", "query": query}
    from_sql = config_variant(config, labels={"source": source})
    rows = {"inference_id": ["a", "b", "c"], "arr_delay": [50.0, 0.0, 30.0],
            "labelled_at": ["2026-11-30T23:10:00", "2026-12-01T01:00:00", "2026-12-01T02:00:00"],
            "day": ["2026-11-30", "2026-12-01", "2026-12-01"]}  # fmt: skip
    with postgres_database() as database:
        engine = sa.create_engine(f"{POSTGRES}/{database}")
        pd.DataFrame(rows).iloc[:2].to_sql("labels", engine, index=False)
        monkeypatch.setenv(
            "AIRFLOW_CONN_AIRLOOP_TEST_LABELS", f"postgres://postgres@127.0.0.1:5432/{database}"
        )
        morning = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
        landed = extract_labels(from_sql, paths, morning)
        first = join_pending_labels(from_sql, paths)
        pd.DataFrame(rows).iloc[2:].to_sql("labels", engine, index=False, if_exists="append")
        extract_labels(from_sql, paths, morning + timedelta(hours=1))
        second = join_pending_labels(from_sql, paths)
        engine.dispose()
    assert [p.name for p in landed] == ["2026-11-30.parquet", "2026-12-01.parquet"]
    assert first["joined"] == 2
    statuses = {r["file"]: r["status"] for r in second["reports"]}
    assert statuses == {"2026-11-30.parquet": "already_joined", "2026-12-01.parquet": "joined"}
    assert sorted(labelled_predictions(paths)["inference_id"]) == ["a", "b", "c"]
    kept = sorted(p.name for p in (paths.model_home / "labels" / "joined").iterdir())
    assert kept == ["2026-11-30.parquet", "2026-12-01.parquet", "2026-12-01.parquet.1"], (
        "an unchanged day is not kept twice; a changed one is kept beside the first"
    )


def _joined(
    config: AirloopConfig, rows: int, noise: float, version: str, day: str, seed: int
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    late = rng.random(rows) < 0.4
    scores = np.clip(np.where(late, 0.8, 0.2) + rng.normal(0, noise, rows), 0, 1)
    return pd.DataFrame(
        {
            "inference_id": [f"{version}-{day}-{i}" for i in range(rows)],
            "role": "served",
            "model_version": version,
            "served_at": pd.Timestamp(day, tz="UTC"),
            "score": scores,
            "prediction": (scores >= 0.5).astype(int),
            "arr_delay": np.where(late, 40.0, 0.0),
        }
    )


def test_live_performance_is_per_version_per_day_and_a_fall_is_a_drop(config: AirloopConfig) -> None:
    good = _joined(config, 800, 0.1, "3", "2013-02-01", 0)
    bad = _joined(config, 800, 0.9, "3", "2013-02-02", 1)
    other = _joined(config, 800, 0.1, "2", "2013-02-01", 2)
    labelled = pd.concat([good, bad, other], ignore_index=True)
    daily = daily_performance(config, labelled, {})
    assert [(d["model_version"], d["day"], d["rows"]) for d in daily] == [
        ("2", "2013-02-01", 800), ("3", "2013-02-01", 800), ("3", "2013-02-02", 800),
    ]  # fmt: skip
    assert daily[1]["roc_auc"] > 0.95 > daily[2]["roc_auc"]
    assert champion_performance(config, good, "3", expected=0.97).status == "ok"
    dropped = champion_performance(config, labelled, "3", expected=0.97)
    assert dropped.degraded and dropped.labelled_rows == 1600, "only the champion version's answers count"
    skipped = champion_performance(config, labelled, "9", expected=0.97)
    assert skipped.status == "skipped" and "0 labelled rows" in skipped.reason


def test_labelled_production_rows_join_the_next_training_window_when_configured(
    config: AirloopConfig, paths: StatePaths, training_window
) -> None:
    from airloop.training.dataset import assemble_training_set

    joining = config_variant(config, labels={"join_training": True})
    _log(joining, paths, ["a", "b"], [0.9, 0.1])
    _land(paths, "live.csv", pd.DataFrame({"inference_id": ["a", "b"], "arr_delay": [30, 0]}))
    (report,) = join_pending_labels(joining, paths)["reports"]

    plain, joined = assemble_training_set(config, paths), assemble_training_set(joining, paths)
    assert joined.labelled_partitions == [report["partition"]] and plain.labelled_partitions == []
    assert joined.eval_hash == plain.eval_hash, "the evaluation set stays the newest partition"
    train, plain_train = pd.read_parquet(joined.train_path), pd.read_parquet(plain.train_path)
    assert len(train) == len(plain_train) + 2
    added = train.tail(2)
    assert added["arr_delay"].tolist() == [30.0, 0.0] and set(added["carrier"]) == {"AA"}


def test_join_training_refuses_features_the_log_keeps_only_as_hashes(config: AirloopConfig) -> None:
    from airloop.config import ConfigError

    columns = {n: s.model_dump(exclude_defaults=True) for n, s in config.dataset.columns.items()}
    columns["carrier"] = {**columns["carrier"], "pii": True}
    with pytest.raises(ConfigError, match=r"labels.join_training: features \['carrier'\] are pii"):
        config_variant(config, dataset={"columns": columns}, labels={"join_training": True})
