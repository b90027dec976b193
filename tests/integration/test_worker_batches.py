"""Batches: key ranges cover a table exactly once; re-runs, races and leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ferry.worker import batch as batch_module
from ferry.worker.errors import DataError
from ferry.worker.plan import load_plan
from ferry.worker.source import BatchReader
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

HOSTILE_TABLE = 'we"ird; DROP TABLE victims; --'
HOSTILE_COLUMN = "val'); DROP TABLE victims; --"
HOSTILE_VALUE = "x'); DROP TABLE victims; --"


@pytest.fixture(scope="module")
def dsn(pg_db: str) -> str:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE victims (id int)")
        conn.execute("INSERT INTO victims VALUES (1)")
        conn.execute("CREATE FUNCTION wipe_victims() RETURNS int LANGUAGE sql AS "
                     "'DELETE FROM victims; SELECT 0'")
        # Skewed keys: most rows in one small range, some NULL keys, gaps.
        conn.execute("CREATE TABLE skewed (k bigint, payload text)")
        conn.execute("""
            INSERT INTO skewed
            SELECT CASE WHEN g % 10 = 0 THEN NULL WHEN g < 900 THEN g % 7 ELSE g * 1000 END,
                   'row ' || g
            FROM generate_series(1, 1000) g""")
        conn.execute("CREATE TABLE single (k int, v text)")
        conn.execute("INSERT INTO single VALUES (42, 'only')")
        conn.execute(f'CREATE TABLE "{HOSTILE_TABLE.replace(chr(34), chr(34) * 2)}" '
                     f'(id int, "{HOSTILE_COLUMN}" text)')
        conn.execute(f'INSERT INTO "{HOSTILE_TABLE.replace(chr(34), chr(34) * 2)}" '
                     "VALUES (1, %s), (2, 'other')", (HOSTILE_VALUE,))
    return pg_db


def batch_ids(client: Any, bucket: str, plan: dict[str, Any], batch: int) -> list[Any]:
    manifest = get_json(client, bucket, manifest_key(plan, batch))
    _, lines = read_files(client, bucket, manifest["files"], "jsonl", "none")
    return [json.loads(line)["payload"] for line in lines]


@pytest.mark.parametrize(("table", "ranges"), [
    ("skewed", [(None, 0), (0, 3), (3, 7), (7, 950_000), (950_000, None)]),
    ("single", [(None, 42), (42, 43), (43, None)]),
])
def test_key_range_batches_cover_table_exactly_once(
        dsn: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory, tmp_path: Path,
        table: str, ranges: list[tuple[int | None, int | None]]) -> None:
    plan_run = make_plan()["run"]
    exported: list[Any] = []
    for index, (lo, hi) in enumerate(ranges):
        plan = make_plan(
            run=plan_run, source={"table": table}, format="jsonl", batchIndex=index,
            batchCount=len(ranges),
            keyRange={"column": "k", "lo": lo, "hi": hi, "includeNulls": index == 0})
        result = run_worker(plan, dsn, s3, tmp_path)
        assert result.code == 0, result.raw_message
        manifest = get_json(s3.client(), s3_bucket, manifest_key(plan, index))
        _, lines = read_files(s3.client(), s3_bucket, manifest["files"], "jsonl", "none")
        exported.extend(json.dumps(json.loads(line), sort_keys=True) for line in lines)
    with psycopg.connect(dsn) as conn:
        source = [json.dumps(r[0], sort_keys=True) for r in conn.execute(
            f"SELECT row_to_json(t) FROM {table} t").fetchall()]
    assert sorted(exported) == sorted(source)
    assert len(exported) == len(set(exported)) or table == "single"


@pytest.mark.parametrize(("table", "count"), [("skewed", 4), ("single", 3)])
def test_key_partitions_cover_table_exactly_once(
        dsn: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory, tmp_path: Path,
        table: str, count: int) -> None:
    """Hash partitions (what the controller plans for batching on keyColumn)."""
    plan_run = make_plan()["run"]
    exported: list[str] = []
    for index in range(count):
        plan = make_plan(run=plan_run, source={"table": table}, format="jsonl",
                         batchIndex=index, batchCount=count,
                         keyPartition={"column": "k", "index": index, "count": count})
        result = run_worker(plan, dsn, s3, tmp_path)
        assert result.code == 0, result.raw_message
        manifest = get_json(s3.client(), s3_bucket, manifest_key(plan, index))
        _, lines = read_files(s3.client(), s3_bucket, manifest["files"], "jsonl", "none")
        exported.extend(json.dumps(json.loads(line), sort_keys=True) for line in lines)
    with psycopg.connect(dsn) as conn:
        source = [json.dumps(r[0], sort_keys=True) for r in conn.execute(
            f"SELECT row_to_json(t) FROM {table} t").fetchall()]
    assert sorted(exported) == sorted(source)


def test_rerun_replaces_files_instead_of_adding(dsn: str, s3: S3Server, s3_bucket: str,
                                                make_plan: PlanFactory, tmp_path: Path) -> None:
    plan = make_plan(source={"table": "skewed"}, format="csv", fileSplitSize=4096)
    first = run_worker(plan, dsn, s3, tmp_path)
    assert first.code == 0
    client = s3.client()
    first_manifest = get_json(client, s3_bucket, manifest_key(plan))
    second = run_worker(plan, dsn, s3, tmp_path)
    assert second.code == 0
    manifest = get_json(client, s3_bucket, manifest_key(plan))
    assert manifest["attempt"] != first_manifest["attempt"]
    data_keys = [k for k in list_keys(client, s3_bucket, f"exports/items/{plan['run']}/")
                 if "/_" not in k]
    assert data_keys == sorted(f["key"] for f in manifest["files"])
    _, rows = read_files(client, s3_bucket, manifest["files"], "csv", "none")
    assert len(rows) == 1000


def test_leftovers_of_a_killed_attempt_are_swept(dsn: str, s3: S3Server, s3_bucket: str,
                                                 make_plan: PlanFactory,
                                                 tmp_path: Path) -> None:
    """Killed after uploading, before its manifest: files and an open upload remain."""
    plan = make_plan(source={"table": "single"})
    prefix = f"exports/items/{plan['run']}/items-0-"
    client = s3.client()
    client.put_object(Bucket=s3_bucket, Key=f"{prefix}0-deadbeef.csv", Body=b"k,v\n42,old\n")
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key=f"{prefix}1-deadbeef.csv")
    client.upload_part(Bucket=s3_bucket, Key=f"{prefix}1-deadbeef.csv", PartNumber=1,
                       UploadId=upload["UploadId"], Body=b"partial")
    time.sleep(2.1)  # leftovers must predate the commit by more than the sweep margin
    result = run_worker(plan, dsn, s3, tmp_path)
    assert result.code == 0, result.raw_message
    manifest = get_json(client, s3_bucket, manifest_key(plan))
    data_keys = [k for k in list_keys(client, s3_bucket, f"exports/items/{plan['run']}/")
                 if "/_" not in k]
    assert data_keys == [f["key"] for f in manifest["files"]]
    uploads = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert [u for u in uploads if u["Key"].startswith(prefix)] == []


def test_racing_attempts_commit_exactly_once(dsn: str, s3: S3Server, s3_bucket: str,
                                             make_plan: PlanFactory, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pods on one index: B commits while A streams; A must yield to B."""
    plan = make_plan(source={"table": "skewed"}, format="jsonl")
    original = batch_module.BatchReader.describe
    raced: list[int] = []

    def describe_then_let_b_win(self: Any) -> Any:
        if not raced:
            raced.append(-1)
            raced[0] = run_worker(plan, dsn, s3, tmp_path).code  # pod B, start to end
        return original(self)

    monkeypatch.setattr(batch_module.BatchReader, "describe", describe_then_let_b_win)
    client = s3.client()
    result = run_worker(plan, dsn, s3, tmp_path)  # pod A
    assert raced == [0]
    assert result.code == 0
    assert result.message["note"].startswith("batch already committed by attempt")
    manifest = get_json(client, s3_bucket, manifest_key(plan))
    data_keys = [k for k in list_keys(client, s3_bucket, f"exports/items/{plan['run']}/")
                 if "/_" not in k]
    assert data_keys == [f["key"] for f in manifest["files"]]
    assert result.message["files"][0]["key"] == manifest["files"][0]["key"]
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_hostile_identifiers_and_values(dsn: str, s3: S3Server, s3_bucket: str,
                                        make_plan: PlanFactory, tmp_path: Path) -> None:
    plan = make_plan(source={"table": HOSTILE_TABLE}, columns=["id", HOSTILE_COLUMN],
                     format="jsonl",
                     filters=[{"column": HOSTILE_COLUMN, "op": "in",
                               "values": [HOSTILE_VALUE, "'; SELECT 1; --"]}])
    result = run_worker(plan, dsn, s3, tmp_path)
    assert result.code == 0, result.raw_message
    manifest = get_json(s3.client(), s3_bucket, manifest_key(plan))
    _, lines = read_files(s3.client(), s3_bucket, manifest["files"], "jsonl", "none")
    assert [json.loads(line) for line in lines] == [{"id": 1, HOSTILE_COLUMN: HOSTILE_VALUE}]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM victims").fetchone() == (1,)


def test_query_source_runs_read_only(dsn: str, s3: S3Server, make_plan: PlanFactory,
                                     tmp_path: Path) -> None:
    plan = make_plan(source={"query": "SELECT wipe_victims() AS n"})
    result = run_worker(plan, dsn, s3, tmp_path)
    assert result.code == 3
    assert "read-only transaction" in result.message["reason"]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM victims").fetchone() == (1,)


def test_entry_point_exit_codes(dsn: str, s3: S3Server, make_plan: PlanFactory,
                                tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "ferry.worker.main"]
    helped = subprocess.run([*exe, "export", "--help"], capture_output=True, text=True,
                            check=False)
    assert helped.returncode == 0 and "FERRY_PLAN" in helped.stdout
    term = tmp_path / "term"
    env = {**os.environ, "FERRY_PLAN": json.dumps(make_plan(format="xml")),
           "FERRY_SOURCE_DSN": dsn, "FERRY_TERMINATION_MESSAGE_PATH": str(term)}
    bad = subprocess.run([*exe, "export"], env=env, capture_output=True, text=True, check=False)
    assert bad.returncode == 3
    assert json.loads(term.read_text())["reason"].startswith("plan.format: must be one of")
    assert "ferry-test-pg-secret" not in bad.stderr + term.read_text()


def test_a_slow_source_is_handed_on_every_second_in_whole_records(
        dsn: str, make_plan: PlanFactory) -> None:
    """Rows trickling in (3 s in all) come out in several chunks, not one at the end, so
    progress moves; every chunk holds whole records at exactly the offsets it reports."""
    query = ("SELECT i, repeat('x', 3000) || pg_sleep(0.05)::text AS pad "
             "FROM generate_series(1, 60) AS i")
    plan = load_plan({"FERRY_PLAN": json.dumps(make_plan(source={"query": query},
                                                         format="csv"))})
    records: list[bytes] = []
    chunks = 0
    with BatchReader(dsn, plan) as reader:
        columns = reader.describe()
        for chunk in reader.rows(columns, chunk_bytes=1 << 30):
            chunks += 1
            starts = [0, *chunk.ends[:-1]]
            records.extend(bytes(chunk.data[a:b]) for a, b in zip(starts, chunk.ends, strict=True))
    assert chunks >= 2
    assert records == [f"{i},{'x' * 3000}\n".encode() for i in range(1, 61)]


def test_sigterm_while_the_reader_waits_for_rows_fails_the_batch_at_once(
        dsn: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory,
        tmp_path: Path) -> None:
    """Pod deletion while the reader waits inside the C read loop for a slow source: the
    signal ends the wait, the batch fails as transient with the reason in its termination
    message and error report, nothing is committed and the COPY's session is gone."""
    query = "SELECT i, pg_sleep(0.2)::text AS pad FROM generate_series(1, 600) AS i"
    plan = make_plan(source={"query": query}, format="csv")
    term = tmp_path / "term"
    env = {**os.environ, "FERRY_PLAN": json.dumps(plan), "FERRY_SOURCE_DSN": dsn,
           "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
           "FERRY_TERMINATION_MESSAGE_PATH": str(term), "FERRY_MAX_ATTEMPTS": "1"}
    copying = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
               "AND application_name = 'ferry-worker' AND query LIKE 'COPY%'")
    worker = subprocess.Popen([sys.executable, "-m", "ferry.worker.main", "export"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while conn.execute(copying).fetchone() != (1,) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.5)  # rows are arriving, one every 0.2 s
            worker.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = worker.wait(timeout=30)
            exited_in = time.monotonic() - signalled
            left = conn.execute(copying).fetchone()  # cancelled, not left to notice
    finally:
        if worker.poll() is None:
            worker.kill()
    reason = "terminated by SIGTERM (pod deleted or evicted)"
    assert code == 75
    assert json.loads(term.read_text())["reason"] == reason
    assert exited_in < 5
    assert left == (0,)
    run_folder = f"exports/items/{plan['run']}/"
    assert list_keys(s3.client(), s3_bucket, run_folder) == [f"{run_folder}_errors/batch-0.jsonl"]
    report = s3.client().get_object(Bucket=s3_bucket, Key=f"{run_folder}_errors/batch-0.jsonl")
    assert json.loads(report["Body"].read())["reason"] == reason


def test_chunks_hold_whole_rows_whatever_their_size(dsn: str, make_plan: PlanFactory) -> None:
    """The C read loop hands over the same bytes and counts however the rows are cut into
    chunks: a limit of one byte gives one row per chunk, a huge one a single chunk."""
    query = ("SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'é\"' || repeat('\n', i % 3) END AS t "
             "FROM generate_series(1, 3000) AS i")
    plan = load_plan({"FERRY_PLAN": json.dumps(make_plan(source={"query": query},
                                                         format="csv"))})
    streams: dict[int, tuple[bytes, list[int]]] = {}
    for limit in (1, 4096, 1 << 30):
        with BatchReader(dsn, plan) as reader:
            chunks = list(reader.rows(reader.describe(), chunk_bytes=limit))
        streams[limit] = (b"".join(bytes(c.data) for c in chunks), [c.records for c in chunks])
    whole, counts = streams[1 << 30]
    assert counts == [3000]
    assert whole.startswith(b'1,"\xc3\xa9""\n"\n2,"\xc3\xa9""\n\n"\n3,"\xc3\xa9"""\n')
    assert streams[1] == (whole, [1] * 3000)
    data, counts = streams[4096]
    assert data == whole and sum(counts) == 3000 and len(counts) > 1


def test_an_error_mid_stream_is_a_data_error(dsn: str, make_plan: PlanFactory) -> None:
    """A query that fails at its 50,000th row has streamed rows before it: the failure
    still surfaces, as a data error (exit code 4) with the server's message."""
    query = "SELECT i, 1 / (50000 - i) AS q FROM generate_series(1, 100000) AS i"
    plan = load_plan({"FERRY_PLAN": json.dumps(make_plan(source={"query": query},
                                                         format="csv"))})
    records = 0
    with BatchReader(dsn, plan) as reader, pytest.raises(DataError) as failure:
        for chunk in reader.rows(reader.describe(), chunk_bytes=4096):
            records += chunk.records
    assert str(failure.value) == "database: division by zero"
    assert 0 < records < 50000
