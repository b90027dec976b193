"""Faults during a batch: the database connection is killed mid-COPY."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.services import S3Server
from tests.integration.conftest import (
    PlanFactory,
    get_json,
    list_keys,
    manifest_key,
    read_files,
    run_worker,
)

pytestmark = pytest.mark.integration

ROWS = 400_000


@pytest.fixture(scope="module")
def dsn(pg_db: str) -> str:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE wide (id int, pad text)")
        conn.execute(f"INSERT INTO wide SELECT g, repeat(md5(g::text), 4) "
                     f"FROM generate_series(1, {ROWS}) g")
    return pg_db


def kill_first_copy(dsn: str, killed: list[int], stop: threading.Event) -> None:
    """Terminate the first backend seen running the worker's COPY in this database.

    (Other suites may run workers against the same server at the same time.)
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set() and not killed:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'ferry-worker' "
                "AND datname = current_database() AND query LIKE 'COPY%' "
                "AND state = 'active'").fetchone()
            if row:
                conn.execute("SELECT pg_terminate_backend(%s)", row)
                killed.append(row[0])
            time.sleep(0.005)


def test_connection_killed_mid_stream_is_retried_exactly_once(
        dsn: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory,
        tmp_path: Path) -> None:
    plan = make_plan(source={"table": "wide"}, format="csv", compression="zstd",
                     fileSplitSize=8 * 1024 * 1024)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_first_copy, args=(dsn, killed, stop))
    killer.start()
    try:
        result = run_worker(plan, dsn, s3, tmp_path, {"FERRY_MAX_ATTEMPTS": "2"})
    finally:
        stop.set()
        killer.join()
    assert killed, "the COPY finished before it could be killed"
    assert result.code == 0, result.raw_message
    client = s3.client()
    manifest = get_json(client, s3_bucket, manifest_key(plan))
    _, rows = read_files(client, s3_bucket, manifest["files"], "csv", "zstd")
    assert sorted(int(r[0]) for r in rows) == list(range(1, ROWS + 1))
    run_prefix = f"exports/items/{plan['run']}/"
    data_keys = [k for k in list_keys(client, s3_bucket, run_prefix) if "/_" not in k]
    assert data_keys == sorted(f["key"] for f in manifest["files"])
    report = client.get_object(Bucket=s3_bucket, Key=f"{run_prefix}_errors/batch-0.jsonl")
    error = json.loads(report["Body"].read())
    assert error["kind"] == "transient"
    assert "terminating connection" in error["reason"]
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
