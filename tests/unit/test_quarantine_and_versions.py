"""Bringing a quarantined partition back after a fix, restoring data by its DVC hash, and DVC's
lock surviving a killed run."""

from __future__ import annotations

import signal
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from airloop.cli import main
from airloop.config import parse_config
from airloop.data.ingest import partition_path, store_partition
from airloop.data.sources import landed_files
from airloop.data.validation import PartitionRejected, validate_partition
from airloop.data.versioning import open_repo, version_file
from tests.conftest import FLIGHTS_CONFIG


def quarantine(config, paths, frame: pd.DataFrame, partition: str = "2013-04"):
    paths.landing.mkdir(parents=True, exist_ok=True)
    landed = paths.landing / f"{partition}.csv"
    frame.to_csv(landed, index=False)
    with pytest.raises(PartitionRejected):
        validate_partition(landed, config, paths, partition)
    return paths.quarantine / partition / landed.name


def test_a_fixed_file_is_released_to_landing(config, paths, flights_month, capsys) -> None:
    paths = paths.for_model("flights")  # where `airloop --model flights` keeps its files
    good = flights_month(4, 2000)
    kept = quarantine(config, paths, good.drop(columns=["distance"]))

    assert main(["--model", "flights", "data", "revalidate", "2013-04"]) == 1  # nothing fixed yet
    assert "still fails" in capsys.readouterr().out and kept.exists()

    good.to_csv(kept, index=False)  # the fix, made in quarantine
    assert main(["--model", "flights", "data", "revalidate", "2013-04"]) == 0
    assert "released" in capsys.readouterr().out
    assert [p.name for p in landed_files(config, paths)] == ["2013-04.csv"]
    assert not (paths.quarantine / "2013-04").exists()
    released = list((paths.quarantine / "_released").glob("2013-04-*"))
    assert len(released) == 1 and (released[0] / "2013-04.csv.validation.json").exists()


def test_a_config_fix_releases_the_partition(config, paths, flights_month) -> None:
    from airloop.data.validation import revalidate_quarantined

    frame = flights_month(4, 2000)
    frame.loc[:4, "carrier"] = "ZZ"  # a new carrier starts flying
    quarantine(config, paths, frame)
    raw = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    raw["dataset"]["columns"]["carrier"]["allowed"].append("ZZ")
    assert revalidate_quarantined("2013-04", parse_config(raw), paths).success
    assert (paths.landing / "2013-04.csv").exists()


def test_checkout_restores_the_exact_bytes(paths, flights_month, tmp_path) -> None:
    paths = paths.for_model("flights")
    paths.landing.mkdir(parents=True)
    landed = paths.landing / "2013-01.csv"
    flights_month(1, 500).to_csv(landed, index=False)
    stored = store_partition(landed, paths)
    target = tmp_path / "restored.parquet"
    assert main(["--model", "flights", "data", "checkout", stored.dvc_hash, "--to", str(target)]) == 0
    assert target.read_bytes() == partition_path(paths, "2013-01").read_bytes()


def test_a_killed_run_leaves_no_stale_dvc_lock(paths, tmp_path) -> None:
    with open_repo(paths):
        pass  # create the repository
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom dvc.repo import Repo\n"
         f"repo = Repo({str(paths.data)!r}); repo.lock.lock(); print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    data = paths.data / "partitions" / "after-kill.csv"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("x\n1\n")
    assert len(version_file(data, paths)) == 32
