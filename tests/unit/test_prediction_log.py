"""The prediction log's writer and reader, without a server: format, PII, sampling, bounds,
an unwritable location. (Served for real, and killed, in test_packaging.py.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from airloop.config import AirloopConfig
from airloop.packaging import prediction_sink as sink
from airloop.paths import StatePaths
from airloop.production.predictions import read_log, served_frame
from tests.conftest import config_variant

FEATURES = {"carrier": "str", "distance": "int", "dep_delay": "float"}
KEYS = {"flight": "int"}


def _batch(ids: list[str], carrier: str = "AA") -> sink.AnsweredBatch:
    records = [
        {"carrier": carrier, "distance": 100 + i, "dep_delay": 1.5, "flight": i} for i in range(len(ids))
    ]
    return sink.AnsweredBatch(sink.now_ms(), 2.5, ids, records, [1] * len(ids), [0.75] * len(ids))


def _writer(root: Path | str, **options) -> sink.PredictionLog:
    pii = options.pop("pii", {})
    key = options.pop("pii_key", None)
    schema = sink.log_schema("binary_classification", FEATURES, KEYS, pii, hashing=key is not None)
    return sink.PredictionLog(str(root), schema, "flights-late-arrival", "3", pii_key=key, **options)


def _rows(root: Path) -> list[dict]:
    files = [f for f in root.rglob("*.parquet") if not f.name.startswith(".")]
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_each_answer_is_one_row_with_its_id_version_features_and_keys_in_an_hour_partition(
    tmp_path: Path,
) -> None:
    writer = _writer(tmp_path, flush_seconds=60)
    writer.append(_batch(["a", "b"]))
    writer.append(_batch(["c"], carrier="UA"))
    writer.close()
    now = datetime.now(UTC)
    (file,) = [f for f in tmp_path.rglob("*.parquet")]
    assert file.parent.name.startswith("hour=") and file.parent.parent.name == f"date={now:%Y-%m-%d}"
    rows = _rows(tmp_path)
    assert [r["inference_id"] for r in rows] == ["a", "b", "c"]
    assert {(r["model_name"], r["model_version"], r["role"]) for r in rows} == {
        ("flights-late-arrival", "3", "served")
    }
    assert [r["feature.carrier"] for r in rows] == ["AA", "AA", "UA"]
    assert [r["key.flight"] for r in rows] == [0, 1, 0]
    assert rows[0]["prediction"] == 1 and rows[0]["score"] == 0.75 and rows[0]["latency_ms"] == 2.5
    assert abs(rows[0]["served_at"] - now) < timedelta(minutes=1)


def test_the_reader_sees_each_prediction_once_in_the_time_asked_with_the_dataset_names(
    tmp_path: Path, config: AirloopConfig
) -> None:
    paths = StatePaths(tmp_path)
    for _ in range(2):  # the same predictions in two files: a compaction half-done
        writer = _writer(paths.prediction_log)
        writer.append(_batch(["a", "b"]))
        writer.close()
    log = read_log(config, paths)
    assert sorted(log["inference_id"]) == ["a", "b"]
    frame = served_frame(log)
    assert {"carrier", "distance", "flight", "prediction"} <= set(frame.columns)
    assert read_log(config, paths, since=datetime.now(UTC) + timedelta(minutes=1)).empty
    assert read_log(config, paths, roles=("batch",)).empty
    assert read_log(config, StatePaths(tmp_path / "nothing")).empty


def test_pii_is_hashed_with_the_key_or_dropped_never_kept(tmp_path: Path) -> None:
    writer = _writer(tmp_path / "hashed", pii={"carrier": "hash", "flight": "drop"}, pii_key=b"secret")
    writer.append(_batch(["a", "b"]))
    writer.close()
    rows = _rows(tmp_path / "hashed")
    assert "key.flight" not in rows[0]
    hashed = [r["feature.carrier"] for r in rows]
    assert hashed[0] == hashed[1] != "AA" and len(hashed[0]) == 32
    assert hashed[0] == sink.pii_hasher(b"secret")("AA")
    assert sink.pii_hasher(b"other")("AA") != hashed[0]
    (file,) = (tmp_path / "hashed").rglob("*.parquet")
    assert sink.hashed_columns(pq.read_schema(file)) == ["feature.carrier"]

    # Without a key nothing could be hashed: the column is left out, not kept in clear.
    keyless = _writer(tmp_path / "keyless", pii={"carrier": "hash"})
    keyless.append(_batch(["c"]))
    keyless.close()
    assert "feature.carrier" not in _rows(tmp_path / "keyless")[0]


def test_sampling_keeps_the_share_asked_chosen_by_inference_id(tmp_path: Path) -> None:
    ids = [sink.new_inference_id() for _ in range(4000)]
    kept = [i for i in ids if sink.sampled(i, 0.25)]
    assert 0.22 < len(kept) / len(ids) < 0.28
    assert kept == [i for i in ids if sink.sampled(i, 0.25)]
    writer = _writer(tmp_path, sample_rate=0.25)
    writer.append(_batch(ids))
    writer.close()
    assert sorted(r["inference_id"] for r in _rows(tmp_path)) == sorted(kept)


def test_a_full_buffer_drops_and_counts_instead_of_growing(tmp_path: Path) -> None:
    dropped: list[int] = []
    writer = _writer(tmp_path, flush_seconds=60, max_pending=150, on_dropped=dropped.append)
    for n in range(5):
        writer.append(_batch([f"{n}-{i}" for i in range(50)]))
    assert writer._pending_rows == 150  # noqa: SLF001 - the bound itself is what is tested
    writer.close()
    assert dropped == [50, 50]
    assert len(_rows(tmp_path)) == 150


def test_an_unwritable_location_reports_errors_and_never_raises_then_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / "log"
    blocker.write_text("a file where the log's folder should be")
    errors: list[Exception] = []
    written: list[int] = []
    writer = _writer(blocker, flush_seconds=0.1, on_error=errors.append, on_written=written.append)
    writer.append(_batch(["a"]))
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    assert errors, "a failed write is reported"
    blocker.unlink()
    writer.append(_batch(["b"]))
    writer.close()
    assert [r["inference_id"] for r in _rows(blocker)] == ["b"]
    assert sum(written) == 1


def test_a_write_cut_short_by_a_full_disk_leaves_no_part_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    real_write = pq.write_table

    def disk_full(table, where, **options) -> None:
        real_write(table.slice(0, 0), where, **options)  # (some bytes reach the disk)
        raise OSError(errno.ENOSPC, "No space left on device")

    schema = sink.log_schema("binary_classification", FEATURES, KEYS, {}, hashing=False)
    table = sink.batches_table([_batch(["a"])], schema, "flights-late-arrival", "3", "served", None)
    monkeypatch.setattr(pq, "write_table", disk_full)
    with pytest.raises(OSError, match="No space left"):
        sink.write_table(str(tmp_path / "log"), table)
    assert [p.name for p in (tmp_path / "log").rglob("*") if p.is_file()] == [], "no scratch file is left"


def test_config_names_a_pii_target_and_lists_keys_that_are_not_features(config: AirloopConfig) -> None:
    from airloop.config import ConfigError

    assert config.logged_keys() == ["time_hour", "flight"]
    marked = config_variant(
        config, dataset={"columns": {**_columns(config), "tailnum": {"type": "str", "pii": True}}}
    )
    assert marked.pii_columns() == {"tailnum": "hash"}
    with pytest.raises(ConfigError, match="arr_delay.pii"):
        config_variant(
            config, dataset={"columns": {**_columns(config), "arr_delay": {"type": "float", "pii": "drop"}}}
        )


def _columns(config: AirloopConfig) -> dict:
    return {name: spec.model_dump(exclude_defaults=True) for name, spec in config.dataset.columns.items()}


def test_the_log_goes_to_object_storage_where_configured_and_reads_back(
    tmp_path: Path, config: AirloopConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.services import s3_server

    with s3_server(monkeypatch, bucket="logs"):
        stored = config_variant(config, serving={"log": {"location": "s3://logs/flights/predictions"}})
        writer = _writer(stored.serving.log.location, pii={"carrier": "hash"}, pii_key=b"k")
        writer.append(_batch(["a", "b"]))
        writer.close()
        paths = StatePaths(tmp_path)
        log = read_log(stored, paths)
        assert sorted(log["inference_id"]) == ["a", "b"]
        assert not paths.prediction_log.exists(), "nothing was written locally"
        from airloop.production.predictions import pii_hashed

        assert pii_hashed(stored, paths) == {"carrier"}


def test_finished_hours_are_compacted_to_one_file_each_with_every_prediction_once(
    tmp_path: Path, config: AirloopConfig
) -> None:
    from airloop.production.predictions import compact_log

    paths = StatePaths(tmp_path)
    schema = sink.log_schema("binary_classification", FEATURES, KEYS, {}, hashing=False)
    old = datetime(2026, 11, 30, 9, tzinfo=UTC)
    table = sink.batches_table([_batch(["a", "b"])], schema, "m", "3", "served", None)
    for moment in (old, old + timedelta(minutes=20), old + timedelta(minutes=40)):
        sink.write_table(str(paths.prediction_log), table.slice(0, 1 if moment == old else 2), now=moment)
    current = datetime.now(UTC)
    for _ in range(2):
        sink.write_table(str(paths.prediction_log), table, now=current)

    assert compact_log(config, paths) == {"hours": 1, "files": 3}
    hour = paths.prediction_log / "date=2026-11-30" / "hour=09"
    (only,) = hour.glob("*.parquet")
    assert sorted(pq.read_table(only).column("inference_id").to_pylist()) == ["a", "b"]
    assert len(list(paths.prediction_log.glob(f"date={current:%Y-%m-%d}/hour={current:%H}/*.parquet"))) == 2
    assert compact_log(config, paths) == {"hours": 0, "files": 0}, "one file an hour stays as it is"
