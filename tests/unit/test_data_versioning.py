"""Landing, storing and versioning partitions, and assembling training windows (real DVC)."""

from __future__ import annotations

import pandas as pd

from airloop.data.ingest import partition_path, store_partition, validated_partitions
from airloop.data.sources import landed_files
from airloop.data.versioning import cached_file, tracked_hash
from airloop.demo.flights import land_month
from airloop.training.dataset import assemble_training_set


def land(paths, flights_month, month: int, rows: int = 2000):
    paths.landing.mkdir(parents=True, exist_ok=True)
    target = paths.landing / f"2013-{month:02d}.csv"
    flights_month(month, rows).to_csv(target, index=False)
    return target


def test_landed_files_skip_files_in_flight_and_other_formats(config, paths, flights_month) -> None:
    land(paths, flights_month, 2)
    land(paths, flights_month, 1)
    (paths.landing / ".2013-03.csv.tmp").write_text("partial")
    (paths.landing / "notes.txt").write_text("not data")
    assert [p.name for p in landed_files(config, paths)] == ["2013-01.csv", "2013-02.csv"]


def test_demo_lands_a_real_month_atomically(paths) -> None:
    landed = land_month(2, paths.landing)
    frame = pd.read_csv(landed)
    assert landed.name == "2013-02.csv" and len(frame) == 24951
    assert set(frame["month"]) == {2}
    assert [p.name for p in paths.landing.iterdir()] == ["2013-02.csv"]


def test_store_partition_versions_and_archives(config, paths, flights_month) -> None:
    stored = store_partition(land(paths, flights_month, 1), paths)
    assert stored.partition == "2013-01" and stored.rows == 2000
    assert tracked_hash(partition_path(paths, "2013-01")) == stored.dvc_hash
    assert (paths.home / "archive" / "2013-01" / "2013-01.csv").exists()
    assert landed_files(config, paths) == []
    # The remote holds the bytes too: dvc push ran.
    assert any(paths.dvc_remote.rglob(stored.dvc_hash[2:]))

    assert not stored.unchanged
    again = store_partition(land(paths, flights_month, 1), paths)
    assert again.dvc_hash == stored.dvc_hash and again.unchanged
    changed = store_partition(land(paths, flights_month, 1, rows=1999), paths)
    assert not changed.unchanged and changed.dvc_hash != stored.dvc_hash
    assert validated_partitions(paths) == ["2013-01"]


def test_cached_file_restores_exact_bytes_even_without_the_local_cache(paths, flights_month) -> None:
    stored = store_partition(land(paths, flights_month, 1), paths)
    original = partition_path(paths, "2013-01").read_bytes()
    cached = cached_file(stored.dvc_hash, paths)
    cached.chmod(0o644)
    cached.unlink()
    assert cached_file(stored.dvc_hash, paths).read_bytes() == original


def test_a_lone_partition_holds_out_its_newest_rows(config, paths, flights_month) -> None:
    store_partition(land(paths, flights_month, 1), paths)
    window = assemble_training_set(config, paths)
    train, evaluation = pd.read_parquet(window.train_path), pd.read_parquet(window.eval_path)
    assert window.train_partitions == ["2013-01"] and window.eval_partition == "2013-01"
    assert len(evaluation) == 400 and len(train) == 1600
    assert train["time_hour"].max() <= evaluation["time_hour"].min()


def test_window_is_the_partitions_before_the_newest_and_idempotent(config, paths, flights_month) -> None:
    for month in (1, 2, 3, 4, 5):
        store_partition(land(paths, flights_month, month, rows=500), paths)
    window = assemble_training_set(config, paths)
    assert window.train_partitions == ["2013-02", "2013-03", "2013-04"]  # window_partitions: 3
    assert window.eval_partition == "2013-05"
    assert set(pd.read_parquet(window.eval_path)["month"]) == {5}
    assert set(pd.read_parquet(window.train_path)["month"]) == {2, 3, 4}
    assert assemble_training_set(config, paths) == window
    assert window.train_hash != window.eval_hash
