"""``ferry-worker import`` against real PostgreSQL and S3: formats, modes, the ledger."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from ferry.worker.main import build_parser
from tests.fixtures.services import S3Server
from tests.integration.conftest import WorkerRun

pytestmark = pytest.mark.integration


def run_import(plan: dict[str, Any], dsn: str, s3: S3Server, tmp_path: Path,
               extra_env: dict[str, str] | None = None) -> WorkerRun:
    """``ferry-worker import`` in-process, with the env a pod would get."""
    term = tmp_path / f"termination-{len(list(tmp_path.iterdir()))}"
    env = {"FERRY_PLAN": json.dumps(plan), "FERRY_DESTINATION_DSN": dsn,
           "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
           "FERRY_TERMINATION_MESSAGE_PATH": str(term), "FERRY_MAX_ATTEMPTS": "1",
           **(extra_env or {})}
    previous = signal.getsignal(signal.SIGTERM)
    try:
        args = build_parser().parse_args(["import"])
        code = args.run(args, env)
    finally:
        signal.signal(signal.SIGTERM, previous)
    raw = term.read_text() if term.exists() else ""
    return WorkerRun(code, json.loads(raw) if raw else {}, raw)


class Env:
    """One test's database, bucket and plan factory."""

    def __init__(self, dsn: str, s3: S3Server, bucket: str, tmp_path: Path, name: str) -> None:
        self.dsn = dsn
        self.s3 = s3
        self.client = s3.client()
        self.bucket = bucket
        self.tmp_path = tmp_path
        self.prefix = "landing/" + "".join(c if c.isalnum() else "-" for c in name)[:60]

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def put(self, name: str, body: bytes) -> str:
        key = f"{self.prefix}/{name}"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        return key

    def plan(self, table: str, **fields: Any) -> dict[str, Any]:
        plan: dict[str, Any] = {
            "job": "contacts", "namespace": "team-a", "jobUid": "uid-1",
            "run": f"contacts.{time.monotonic_ns()}",
            "source": {"s3": {"bucket": self.bucket, "prefix": self.prefix},
                       "endpoint": self.s3.endpoint_url, "region": self.s3.region,
                       "pathStyle": True},
            "destination": {"table": table},
            "errors": {"bucket": self.bucket, "prefix": "audit"},
        }
        plan.update(fields)
        return plan

    def run(self, plan: dict[str, Any], **env: str) -> WorkerRun:
        return run_import(plan, self.dsn, self.s3, self.tmp_path, env)

    def audit(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        body = self.client.get_object(Bucket=self.bucket, Key=message["auditLog"])["Body"]
        return [json.loads(line) for line in gzip.decompress(body.read()).splitlines()]


@pytest.fixture
def env(pg_db: str, s3: S3Server, s3_bucket: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> Env:
    return Env(pg_db, s3, s3_bucket, tmp_path, request.node.name)


CONTACTS = """
    CREATE TABLE {name} (
        id integer PRIMARY KEY, email text NOT NULL, score integer CHECK (score >= 0),
        note text, created timestamptz NOT NULL DEFAULT now())"""


def contacts(env: Env, name: str) -> str:
    env.sql(f"DROP TABLE IF EXISTS {name}")
    env.sql(CONTACTS.format(name=name))
    return name


def csv_rows(first: int, count: int) -> bytes:
    return "".join(f"{i},user{i}@example.com,{i % 100},note {i}\n"
                   for i in range(first, first + count)).encode()


HEADER = b"id,email,score,note\n"


def test_append_csv_plain_gzip_zstd(env: Env) -> None:
    table = contacts(env, "append_formats")
    env.put("a.csv", HEADER + b'1,a@x,5,"two\nlines, ""quoted"""\n2,b@x,6,\n3,c@x,7,""\n')
    env.put("b.csv.gz", gzip.compress(HEADER + csv_rows(10, 500)))
    env.put("c.csv.zst", zstandard.ZstdCompressor().compress(HEADER + csv_rows(1000, 300)))
    env.put("skip/_manifests/x.csv", HEADER + csv_rows(5000, 1))
    run = env.run(env.plan(table))
    assert run.code == 0, run.message
    assert run.message["status"] == "Imported"
    assert (run.message["records"], run.message["fileCount"], run.message["rejected"]) == (
        803, 3, 0)
    assert "auditLog" not in run.message
    rows = dict(env.sql(f"SELECT id, note FROM {table} WHERE id <= 3"))
    assert rows == {1: 'two\nlines, "quoted"', 2: None, 3: ""}
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 803
    ledger = env.sql("SELECT file_key, rows FROM ferry_import_ledger WHERE run_id = %s "
                     "ORDER BY file_key", (env.plan(table)["run"],))
    assert ledger == []  # another run id: the ledger is per run
    assert env.sql("SELECT count(*) FROM ferry_import_ledger")[0][0] >= 3


def test_retry_of_a_run_skips_what_landed_and_new_files_only_across_runs(env: Env) -> None:
    table = contacts(env, "exactly_once")
    env.put("one.csv", HEADER + csv_rows(1, 100))
    env.put("two.csv", HEADER + csv_rows(101, 50))
    plan = env.plan(table, newFilesOnly=True)
    first = env.run(plan)
    assert first.code == 0 and first.message["records"] == 150
    again = env.run(plan)
    assert again.code == 0, again.message
    assert again.message["records"] == 150 and again.message["fileCount"] == 2
    assert "earlier attempt" in again.message["note"]
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 150
    env.put("three.csv", HEADER + csv_rows(151, 10))
    next_run = env.run({**plan, "run": plan["run"] + "-next"})
    assert next_run.code == 0, next_run.message
    assert (next_run.message["records"], next_run.message["filesSkipped"]) == (10, 2)
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 160
    # Without newFilesOnly another run loads every file again (duplicates refused by the key).
    plain = env.run({**plan, "run": plan["run"] + "-plain", "newFilesOnly": False,
                     "maxErrors": "100%"})
    assert plain.code == 0 and plain.message["rejected"] == 160


def test_batches_take_disjoint_shares(env: Env) -> None:
    table = contacts(env, "batched")
    for n in range(7):
        env.put(f"part-{n}.csv", HEADER + csv_rows(n * 10, 10))
    plan = env.plan(table, batchCount=3)
    files = 0
    for index in range(3):
        run = env.run({**plan, "batchIndex": index})
        assert run.code == 0, run.message
        files += run.message["fileCount"]
    assert files == 7
    assert env.sql(f"SELECT count(*), count(DISTINCT id) FROM {table}")[0] == (70, 70)


def test_merge_updates_matching_rows_and_inserts_the_rest(env: Env) -> None:
    table = contacts(env, "merged")
    env.sql(f"INSERT INTO {table} (id, email, score, note) VALUES (1, 'old@x', 1, 'keep'), "
            "(2, 'old2@x', 2, 'keep2')")
    env.put("m.csv", b"id,email,score\n2,new2@x,20\n3,new3@x,30\n3,newer3@x,31\n")
    plan = env.plan(table, mode="Merge", keyColumns=["id"])
    assert env.run(plan).code == 3  # note is missing, and has no default
    plan["destination"]["missingColumns"] = "Default"
    run = env.run(plan)
    assert run.code == 0, run.message
    assert env.sql(f"SELECT id, email, score, note FROM {table} ORDER BY id") == [
        (1, "old@x", 1, "keep"), (2, "new2@x", 20, "keep2"), (3, "newer3@x", 31, None)]


def test_merge_of_a_file_without_repeated_keys_updates_and_inserts(env: Env) -> None:
    # The upsert without DISTINCT ON (no key twice in the file), not the fallback above.
    table = contacts(env, "merged_unique")
    env.sql(f"INSERT INTO {table} (id, email, score, note) SELECT g, 'old', g, 'n' || g "
            "FROM generate_series(1, 2000, 2) g")
    env.put("m.csv", HEADER + csv_rows(1, 2000))
    run = env.run(env.plan(table, mode="Merge", keyColumns=["id"]))
    assert run.code == 0, run.message
    assert env.sql(f"SELECT id, email, score, note FROM {table} ORDER BY id") == [
        (i, f"user{i}@example.com", i % 100, f"note {i}") for i in range(1, 2001)]


def test_merge_without_a_unique_index_names_table_and_columns(env: Env) -> None:
    table = contacts(env, "merge_nokey")
    env.put("m.csv", b"id,email\n1,a@x\n")
    run = env.run(env.plan(table, mode="Merge", keyColumns=["email"]))
    assert run.code == 3
    assert "no unique index or primary key" in run.message["reason"]
    assert "merge_nokey" in run.message["reason"] and "(email)" in run.message["reason"]


def test_overwrite_is_atomic_for_readers_and_a_failure_keeps_the_table(env: Env) -> None:
    table = contacts(env, "overwritten")
    env.sql(f"INSERT INTO {table} (id, email) SELECT g, 'old' FROM generate_series(1, 1000) g")
    env.put("new-1.csv", HEADER + csv_rows(1, 30000))
    env.put("new-2.csv", HEADER + csv_rows(30001, 30000))
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(env.dsn, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                assert row is not None
                seen.add(row[0])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run = env.run(env.plan(table, mode="Overwrite"))
    finally:
        stop.set()
        watcher.join()
    assert run.code == 0, run.message
    assert seen <= {1000, 60000} and 1000 in seen
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 60000
    env.put("new-3.csv", b"id,email,score,bogus\n1,x,1,2\n")
    failed = env.run(env.plan(table, mode="Overwrite"))
    assert failed.code == 3 and "bogus" in failed.message["reason"]
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 60000


BAD = (HEADER + b"1,a@x,1,ok\n"
       b"2,b@x,notanumber,bad type\n"
       b"3,,3,empty is not null\n"
       b"4,d@x,-4,check fails\n"
       b"5,e@x,5,ok\n"
       b"6,f@x,6,too,many\n"
       b"1,dup@x,7,duplicate key\n"
       b"8,h@x,8,ok\n")


def test_bad_rows_go_to_the_audit_log_and_the_rest_loads(env: Env) -> None:
    table = contacts(env, "bad_rows")
    env.put("bad.csv.gz", gzip.compress(BAD))
    env.put("good.csv", HEADER + csv_rows(100, 20))
    run = env.run(env.plan(table, maxErrors=10))
    assert run.code == 0, run.message
    assert (run.message["records"], run.message["rejected"]) == (23, 5)
    assert [r[0] for r in env.sql(f"SELECT id FROM {table} WHERE id < 100 ORDER BY id")] == [
        1, 5, 8]
    audit = env.audit(run.message)
    assert [(a["line"], a["column"]) for a in audit] == [
        (3, "score"), (4, "email"), (5, None), (7, None), (8, None)]
    assert audit[1]["value"] == "3,,3,empty is not null"
    assert all(a["file"].endswith("bad.csv.gz") for a in audit)
    assert audit[0]["value"] == "notanumber" and "integer" in audit[0]["reason"]
    assert "not-null" in audit[1]["reason"]
    assert "check constraint" in audit[2]["reason"]
    assert "extra data" in audit[3]["reason"] and "too,many" in audit[3]["value"]
    assert "duplicate key" in audit[4]["reason"]


def test_over_max_errors_commits_nothing_of_the_batch(env: Env) -> None:
    table = contacts(env, "too_many")
    env.put("a-good.csv", HEADER + csv_rows(100, 20))
    env.put("b-bad.csv", BAD)
    run = env.run(env.plan(table, maxErrors=2))
    assert run.code == 4, run.message
    assert "maxErrors" in run.message["reason"] and "audit" in run.message["reason"]
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 0
    percent = env.run(env.plan(table, maxErrors="10%"))
    assert percent.code == 4 and "5 of 28 rows" in percent.message["reason"]
    enough = env.run(env.plan(table, maxErrors="20%"))
    assert enough.code == 0 and enough.message["rejected"] == 5


def test_jsonl_with_a_broken_line_and_parquet(env: Env) -> None:
    table = contacts(env, "jsonl_parquet")
    lines = [{"id": 1, "email": "a@x", "score": 1, "note": "tab\there \\ back"},
             {"id": 2, "email": "b@x", "score": None},
             "{not json",
             {"id": 4, "email": "d@x", "note": {"nested": [1, 2]}}]
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    env.put("a.jsonl.gz", gzip.compress(text.encode() + b"\n"))
    plan = env.plan(table, format={"type": "jsonl"}, maxErrors=1)
    plan["source"]["s3"]["glob"] = "*.jsonl*"
    run = env.run(plan)
    assert run.code == 0, run.message
    assert (run.message["records"], run.message["rejected"]) == (3, 1)
    assert env.audit(run.message)[0]["line"] == 3
    assert env.sql(f"SELECT id, note, score FROM {table} ORDER BY id") == [
        (1, "tab\there \\ back", 1), (2, None, None), (4, '{"nested": [1, 2]}', None)]
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(10, 20010)),
                             "email": [f"p{i}" for i in range(20000)],
                             "score": [i % 7 for i in range(20000)],
                             "created": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
                                                  + dt.timedelta(seconds=i)
                                                  for i in range(20000)],
                                                 pa.timestamp("us", "UTC"))}), buffer,
                   row_group_size=4000)
    env.put("p.parquet", buffer.getvalue())
    plan = env.plan(table, format="parquet")
    plan["source"]["s3"]["glob"] = "*.parquet"
    plan["destination"]["missingColumns"] = "Default"
    run = env.run(plan)
    assert run.code == 0, run.message
    assert run.message["records"] == 20000
    assert env.sql(f"SELECT count(*), sum(score) FROM {table} WHERE id >= 10")[0] == (
        20000, sum(i % 7 for i in range(20000)))
    assert env.sql(f"SELECT created FROM {table} WHERE id = 20009")[0][0] == dt.datetime(
        2024, 1, 1, 5, 33, 19, tzinfo=dt.UTC)


def test_parquet_with_a_bad_value_and_a_binary_column(env: Env) -> None:
    env.sql("DROP TABLE IF EXISTS blobs")
    env.sql("CREATE TABLE blobs (id integer PRIMARY KEY, body bytea, label text, "
            "day date CHECK (day > '2000-01-01'))")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": [1, 2, 3], "body": [b"\x00\x01\\", None, b"x"],
                             "label": ['a "q",\nb', "", None],
                             "day": [dt.date(2024, 1, 1), dt.date(1999, 1, 1),
                                     dt.date(2024, 1, 3)]}), buffer)
    env.put("binary.parquet", buffer.getvalue())
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": [10, 11, 12], "label": ['x "q",\ny', None, ""],
                             "day": [dt.date(2024, 1, 1), dt.date(1999, 1, 1),
                                     dt.date(2024, 1, 3)]}), buffer)
    env.put("text.parquet", buffer.getvalue())
    plan = env.plan("blobs", format="parquet", maxErrors=2)
    plan["destination"]["missingColumns"] = "Default"
    run = env.run(plan)
    assert run.code == 0, run.message
    assert (run.message["records"], run.message["rejected"]) == (4, 2)
    assert env.sql("SELECT id, body, label FROM blobs ORDER BY id") == [
        (1, b"\x00\x01\\", 'a "q",\nb'), (3, b"x", None), (10, None, 'x "q",\ny'),
        (12, None, "")]
    assert [(a["row"], "check constraint" in a["reason"]) for a in env.audit(run.message)] == [
        (2, True), (2, True)]
