"""Where partitions come from: settled landed files, objects fetched through ObjectStoragePath
(on the local file:// scheme), and a SQL source extracted from the local PostgreSQL through an
Airflow Connection given as AIRFLOW_CONN_<ID>.

The SQL tests need PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres); they fail, naming the
command that starts it, rather than skip. Each creates its own database and drops it afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pandas as pd
import pytest
import sqlalchemy as sa

# Importing Airflow configures it for the whole process (and creates directories under
# AIRFLOW_HOME): when nothing chose a home yet, it gets a throwaway one rather than ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airloop-sourcetests-"))

from airloop.config import AirloopConfig, FileSource, SqlSource  # noqa: E402
from airloop.data.frames import read_table  # noqa: E402
from airloop.data.sources import (  # noqa: E402
    canonical_order,
    connection_uri,
    extract_partition,
    fetch_landed_objects,
    fetched_ledger_path,
    landed_files,
    sqlalchemy_url,
)
from airloop.paths import StatePaths  # noqa: E402
from tests.services import POSTGRES, postgres_database  # noqa: E402

NOW = 1_800_000_000.0
SETTLE = 60.0


def with_source(config: AirloopConfig, source: FileSource | SqlSource) -> AirloopConfig:
    return config.model_copy(update={"dataset": config.dataset.model_copy(update={"source": source})})


def put(path: Path, text: str, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


# --------------------------------------------------------------------------- the landing directory


def test_landed_files_waits_for_settle_seconds(config: AirloopConfig, paths: StatePaths) -> None:
    settling = with_source(config, FileSource(pattern="*.csv", settle_seconds=SETTLE))
    put(paths.landing / "2013-02.csv", "b", NOW - 2 * SETTLE)
    put(paths.landing / "2013-01.csv", "a", NOW - 2 * SETTLE)
    put(paths.landing / "2013-03.csv", "still being written", NOW - 1)
    put(paths.landing / ".2013-04.csv.tmp", "in flight", NOW - 2 * SETTLE)
    put(paths.landing / "notes.txt", "not a partition", NOW - 2 * SETTLE)
    (paths.landing / "2013-05.csv").mkdir()

    assert [p.name for p in landed_files(settling, paths, now=NOW)] == ["2013-01.csv", "2013-02.csv"]
    assert [p.name for p in landed_files(settling, paths, now=NOW + SETTLE)] == [
        "2013-01.csv",
        "2013-02.csv",
        "2013-03.csv",
    ]
    # Without settle_seconds (writers that rename into place) everything landed is taken at once.
    assert len(landed_files(config, paths, now=NOW)) == 3


def test_landed_files_of_a_sql_source_are_its_parquet_files(config: AirloopConfig, paths: StatePaths) -> None:
    sql = with_source(config, SqlSource(kind="sql", conn_id="db", query="SELECT 1 WHERE :partition = ''"))
    put(paths.landing / "2013-01.parquet", "", NOW)
    put(paths.landing / "2013-02.csv", "", NOW)
    assert [p.name for p in landed_files(sql, paths, now=NOW)] == ["2013-01.parquet"]
    assert landed_files(sql, StatePaths(paths.home / "nowhere"), now=NOW) == []


# --------------------------------------------------------------------------- object storage


@pytest.fixture(params=["file_url", "bare_path"])
def bucket(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """A directory standing in for a bucket, and the source.location naming it."""
    directory = tmp_path / "bucket" / "prefix"
    directory.mkdir(parents=True)
    return directory, directory.as_uri() if request.param == "file_url" else str(directory)


def test_fetches_each_settled_object_once(
    config: AirloopConfig, paths: StatePaths, bucket: tuple[Path, str]
) -> None:
    directory, location = bucket
    remote = with_source(config, FileSource(location=location, pattern="*.csv", settle_seconds=SETTLE))
    put(directory / "2013-02.csv", "month two", NOW - 2 * SETTLE)
    put(directory / "2013-01.csv", "month one", NOW - 2 * SETTLE)
    put(directory / "2013-03.csv", "still being written", NOW - 1)
    put(directory / ".2013-04.csv", "a dot-file", NOW - 2 * SETTLE)
    put(directory / "2013-05.csv.part", "not matching", NOW - 2 * SETTLE)
    (directory / "2013-06.csv").mkdir()

    landed = fetch_landed_objects(remote, paths, now=NOW)

    assert landed == [paths.landing / "2013-01.csv", paths.landing / "2013-02.csv"]
    assert [p.read_text() for p in landed] == ["month one", "month two"]
    assert sorted(p.name for p in paths.landing.iterdir()) == ["2013-01.csv", "2013-02.csv"]
    # The copy keeps the object's mtime, so it is settled locally as well.
    assert landed_files(remote, paths, now=NOW) == landed
    assert (directory / "2013-01.csv").read_text() == "month one", "the source object is left in place"
    assert fetched_ledger_path(paths).is_file()

    # Nothing is fetched twice, even once the landed files were ingested (moved away).
    for path in landed:
        path.unlink()
    assert fetch_landed_objects(remote, paths, now=NOW) == []
    assert list(paths.landing.iterdir()) == []

    # The object that was still being written is fetched once it settles.
    assert fetch_landed_objects(remote, paths, now=NOW + SETTLE) == [paths.landing / "2013-03.csv"]


def test_a_changed_object_is_fetched_again(
    config: AirloopConfig, paths: StatePaths, bucket: tuple[Path, str]
) -> None:
    directory, location = bucket
    remote = with_source(config, FileSource(location=location, pattern="*.csv"))
    put(directory / "2013-01.csv", "first delivery", NOW - 10)
    assert fetch_landed_objects(remote, paths, now=NOW) == [paths.landing / "2013-01.csv"]

    put(directory / "2013-01.csv", "second delivery, corrected", NOW - 5)
    assert fetch_landed_objects(remote, paths, now=NOW) == [paths.landing / "2013-01.csv"]
    assert (paths.landing / "2013-01.csv").read_text() == "second delivery, corrected"
    assert fetch_landed_objects(remote, paths, now=NOW) == []


def test_an_object_changing_while_copied_is_left_for_later(
    config: AirloopConfig, paths: StatePaths, bucket: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, location = bucket
    remote = with_source(config, FileSource(location=location, pattern="*.csv"))
    put(directory / "2013-01.csv", "half", NOW - 10)
    copy = shutil.copyfileobj

    def copy_while_the_writer_appends(source: IO[bytes], destination: IO[bytes]) -> None:
        copy(source, destination)
        put(directory / "2013-01.csv", "half and the rest", NOW - 9)

    with monkeypatch.context() as patched:
        patched.setattr(shutil, "copyfileobj", copy_while_the_writer_appends)
        assert fetch_landed_objects(remote, paths, now=NOW) == []
    assert list(paths.landing.iterdir()) == [], "the staging copy is removed"
    assert fetch_landed_objects(remote, paths, now=NOW) == [paths.landing / "2013-01.csv"]
    assert (paths.landing / "2013-01.csv").read_text() == "half and the rest"


def test_nothing_to_fetch_without_a_location(
    config: AirloopConfig, paths: StatePaths, tmp_path: Path
) -> None:
    put(paths.landing / "2013-01.csv", "a", NOW - 10)
    assert fetch_landed_objects(config, paths, now=NOW) == []
    own_landing = with_source(config, FileSource(location=paths.landing.as_uri()))
    assert fetch_landed_objects(own_landing, paths, now=NOW) == []
    not_yet = with_source(config, FileSource(location=(tmp_path / "no-such-prefix").as_uri()))
    assert fetch_landed_objects(not_yet, paths, now=NOW) == []


# --------------------------------------------------------------------------- SQL through a Connection


def test_sqlalchemy_url_names_the_pinned_driver() -> None:
    assert sqlalchemy_url("postgres://u:p%40ss@db:5432/x?sslmode=require") == (
        "postgresql+psycopg2://u:p%40ss@db:5432/x?sslmode=require"
    )
    assert sqlalchemy_url("postgresql://u@db/x") == "postgresql+psycopg2://u@db/x"
    assert sqlalchemy_url("postgresql+psycopg://u@db/x") == "postgresql+psycopg://u@db/x"
    assert sqlalchemy_url("mysql://u@db/x") == "mysql://u@db/x"


def test_canonical_order_does_not_depend_on_row_order() -> None:
    frame = pd.DataFrame({"a": [2, 1, 1, None], "b": ["x", None, "y", "z"]})
    shuffled = frame.sample(frac=1, random_state=3)
    pd.testing.assert_frame_equal(canonical_order(frame), canonical_order(shuffled))
    assert canonical_order(frame)["a"].tolist()[:3] == [1, 1, 2]
    mixed = pd.DataFrame({"a": [1, "one", 2.5]})
    pd.testing.assert_frame_equal(canonical_order(mixed), canonical_order(mixed.iloc[::-1]))


@pytest.fixture
def flights_db(flights_month: Callable) -> Iterator[tuple[str, pd.DataFrame]]:
    """A fresh database holding 1,000 sampled real flights from each of January and February
    2013 (nulls included) as table `flights`; dropped afterwards, whatever the test did."""
    with postgres_database() as name:
        rows = pd.concat([flights_month(m).sample(1000, random_state=m) for m in (1, 2)], ignore_index=True)
        engine = sa.create_engine(f"{POSTGRES}/{name}", poolclass=sa.NullPool)
        rows.to_sql("flights", engine, index=False)
        engine.dispose()
        yield name, rows


MONTH_QUERY = (
    "SELECT * FROM flights WHERE to_char(make_date(year::int, month::int, 1), 'YYYY-MM') = :partition"
)


def nulls_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns with None for null, as read back from the database (the CSV-born source has NaN)."""
    text = frame.select_dtypes("object").columns
    return frame.assign(**{c: frame[c].astype(object).where(frame[c].notna(), None) for c in text})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_extracts_a_partition_through_a_connection(
    flights_db: tuple[str, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, rows = flights_db
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRLOOP_TEST_WAREHOUSE", f"postgres://postgres@127.0.0.1:5432/{database}"
    )
    source = SqlSource(kind="sql", conn_id="airloop_test_warehouse", query=MONTH_QUERY)
    landing = tmp_path / "landing"

    uri = connection_uri(source.conn_id)
    assert uri == f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
    landed = extract_partition(source, "2013-01", uri, landing)

    assert landed == landing / "2013-01.parquet"
    assert [p.name for p in landing.iterdir()] == ["2013-01.parquet"], "no staging file is left behind"
    expected = nulls_as_none(canonical_order(rows[rows["month"] == 1]))
    extracted = read_table(landed)
    assert list(extracted.columns) == list(rows.columns)
    assert len(extracted) == 1000 and extracted["dep_time"].isna().any()
    pd.testing.assert_frame_equal(extracted, expected)

    # The same rows in another physical order still give the same bytes (and DVC hash).
    first = sha256(landed)
    with sa.create_engine(uri, poolclass=sa.NullPool).begin() as connection:
        connection.execute(sa.text("CREATE TABLE shuffled AS SELECT * FROM flights ORDER BY random()"))
        connection.execute(sa.text("DROP TABLE flights"))
        connection.execute(sa.text("ALTER TABLE shuffled RENAME TO flights"))
    assert sha256(extract_partition(source, "2013-01", uri, landing)) == first

    # A partition with no rows is still a readable file, with the query's columns.
    empty = read_table(extract_partition(source, "2014-07", uri, landing))
    assert empty.empty and list(empty.columns) == list(rows.columns)


def test_connection_lookup_inside_a_task_uses_the_task_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.connection import Connection as StoredConnection
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_TEST_TASK", "postgres://reader:s3cret@warehouse:5432/sales")
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", object(), raising=False)

    def core_lookup(conn_id: str) -> None:
        raise AssertionError("a task must look connections up through the Task SDK")

    monkeypatch.setattr(StoredConnection, "get_connection_from_secrets", core_lookup)
    assert connection_uri("airloop_test_task") == "postgresql+psycopg2://reader:s3cret@warehouse:5432/sales"


def test_an_unknown_connection_is_named() -> None:
    from airflow.exceptions import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException, match="airloop_no_such_connection"):
        connection_uri("airloop_no_such_connection")


def test_a_partition_must_name_a_plain_file(tmp_path: Path) -> None:
    source = SqlSource(kind="sql", conn_id="unused", query="SELECT :partition")
    for bad in ("", ".hidden", "../escape", "a/b"):
        with pytest.raises(ValueError, match="cannot name a landed file"):
            extract_partition(source, bad, "postgresql+psycopg2://unused", tmp_path)


def test_a_sql_partition_goes_through_ingestion(
    flights_db: tuple[str, pd.DataFrame],
    config: AirloopConfig,
    paths: StatePaths,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airloop.pipelines.ingest_data import extract_from_database, ingest_landed

    database, _ = flights_db
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRLOOP_TEST_WAREHOUSE", f"postgres://postgres@127.0.0.1:5432/{database}"
    )
    sql_config = with_source(
        config, SqlSource(kind="sql", conn_id="airloop_test_warehouse", query=MONTH_QUERY)
    )

    extract_from_database(sql_config, paths, "2013-01")
    [outcome] = ingest_landed(sql_config, paths)
    assert outcome["accepted"], outcome
    assert (outcome["partition"], outcome["rows"]) == ("2013-01", 1000)


def test_objects_fetched_into_landing_go_through_ingestion(
    config: AirloopConfig, paths: StatePaths, tmp_path: Path, flights_month: Callable
) -> None:
    from airloop.pipelines.ingest_data import fetch_from_object_storage, ingest_landed

    bucket = tmp_path / "bucket"
    bucket.mkdir()
    flights_month(1, 2000).to_csv(bucket / "2013-01.csv", index=False)
    object_config = with_source(config, FileSource(location=bucket.as_uri(), pattern="*.csv"))

    assert fetch_from_object_storage(object_config, paths) == [str(paths.landing / "2013-01.csv")]
    [outcome] = ingest_landed(object_config, paths)
    assert outcome["accepted"], outcome
    assert (bucket / "2013-01.csv").exists(), "the source object stays where it was"
    assert fetch_from_object_storage(object_config, paths) == []
