"""This machine's PostgreSQL and Redis for tests: each test gets its own database and drops it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS = "redis://127.0.0.1:6379"
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


@contextmanager
def postgres_database(prefix: str = "airloop_test") -> Iterator[str]:
    """A new, empty PostgreSQL database (its name); dropped afterwards, whatever happened."""
    import sqlalchemy as sa

    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        pytest.fail(f"no PostgreSQL on 127.0.0.1:5432 ({error.orig}); start it: {START_POSTGRES}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def redis_database() -> Iterator[str]:
    """The URL of an empty Redis database (of 1-15) claimed for this test; emptied afterwards."""
    import redis

    for index in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS}/{index}")
        try:
            # Claimed atomically: another test run picking the same index sees the key.
            claimed = client.dbsize() == 0 and client.set("airloop-test-claim", "1", nx=True)
        except redis.ConnectionError as error:
            pytest.fail(f"no Redis on 127.0.0.1:6379 ({error}); start it: {START_REDIS}")
        if claimed:
            try:
                yield f"{REDIS}/{index}"
            finally:
                client.flushdb()
            return
    pytest.fail("no empty Redis database among 1-15 on 127.0.0.1:6379")


@contextmanager
def s3_server(monkeypatch: pytest.MonkeyPatch, bucket: str = "airloop") -> Iterator[str]:
    """moto's S3 API server on a free loopback port, with `bucket` made; this process's AWS
    settings point at it (boto3 and pyarrow read AWS_ENDPOINT_URL). Yields the endpoint;
    the server is stopped by its pid."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import requests

    from airloop.ops.stack import free_port

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(endpoint, timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"moto_server did not start on {endpoint}")
                time.sleep(0.2)
        for key, value in {
            "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():  # fmt: skip
            monkeypatch.setenv(key, value)
        import boto3

        boto3.client("s3").create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
