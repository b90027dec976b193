"""``ferry-worker import``'s refusals: each names the file (and column) and loads nothing."""

from __future__ import annotations

import gzip
import io
import json
import socket
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.fixtures.services import S3Server
from tests.integration.conftest import run_worker
from tests.integration.test_import_load import HEADER, Env, contacts, csv_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def env(pg_db: str, s3: S3Server, s3_bucket: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> Env:
    return Env(pg_db, s3, s3_bucket, tmp_path, request.node.name)


def refused(env: Env, plan: dict[str, Any], code: int, *fragments: str) -> str:
    run = env.run(plan)
    assert run.code == code, run.message
    reason = str(run.message["reason"])
    for fragment in fragments:
        assert fragment in reason, reason
    return reason


def good_then(env: Env, name: str, body: bytes) -> None:
    env.put("a-good.csv", HEADER + csv_rows(1, 10))
    env.put(name, body)


def test_a_wrong_header_names_file_and_columns(env: Env) -> None:
    table = contacts(env, "wrong_header")
    good_then(env, "b.csv", b"id,mail,score,note,extra\n1,a,1,x,y\n")
    refused(env, env.plan(table), 3, "b.csv", "mail, extra", "unknownColumns: Ignore")
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 0


def test_unknown_columns_ignored_when_asked(env: Env) -> None:
    table = contacts(env, "ignored")
    env.put("a.csv", b'extra,id,email,score,note\n"x,y",1,a@x,1,\n,2,b@x,2,""\n')
    plan = env.plan(table)
    plan["destination"]["unknownColumns"] = "Ignore"
    run = env.run(plan)
    assert run.code == 0, run.message
    assert env.sql(f"SELECT id, note FROM {table} ORDER BY id") == [(1, None), (2, "")]


def test_explicit_mapping_and_a_csv_without_header(env: Env) -> None:
    table = contacts(env, "mapped")
    env.put("a.csv", b"Mail;ID;Other\nm1;1;zz\nm2;2;zz\n")
    plan = env.plan(table, format={"type": "csv", "delimiter": ";"})
    plan["destination"].update(columns=[{"name": "id", "from": "ID"},
                                        {"name": "email", "from": "Mail"}],
                               missingColumns="Default")
    run = env.run(plan)
    assert run.code == 0, run.message
    env.put("a.csv", b"3;m3;4;n\n")
    positional = env.plan(table, format={"type": "csv", "delimiter": ";", "header": False})
    positional["destination"]["missingColumns"] = "Default"
    refused(env, positional, 3, "a.csv", "has 4 fields", "created")
    env.sql(f"ALTER TABLE {table} DROP COLUMN created")
    run = env.run(positional)
    assert run.code == 0, run.message
    assert env.sql(f"SELECT id, email, note FROM {table} ORDER BY id") == [
        (1, "m1", None), (2, "m2", None), (3, "m3", "n")]


def test_a_missing_column_without_default_names_it(env: Env) -> None:
    table = contacts(env, "missing_column")
    good_then(env, "b.csv", b"id,score\n1,1\n")
    reason = refused(env, env.plan(table), 3, "b.csv", "email, note", "missingColumns")
    assert "created" not in reason  # it has a default
    plan = env.plan(table)
    plan["destination"]["missingColumns"] = "Default"
    refused(env, plan, 3, "b.csv", "NOT NULL", "email")
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 0


@pytest.mark.parametrize(("name", "body", "what"), [
    ("b.csv.gz", gzip.compress(HEADER + csv_rows(100, 1000))[:-40], "gzip"),
    ("b.csv.gz", b"this is not gzip at all", "gzip"),
    ("b.csv.zst", zstandard.ZstdCompressor().compress(HEADER + csv_rows(100, 99))[:-9], "zstd"),
    ("b.parquet", b"PAR1 garbage PAR1", "Parquet"),
])
def test_a_corrupt_file_fails_the_batch_naming_it(env: Env, name: str, body: bytes,
                                                  what: str) -> None:
    table = contacts(env, "corrupt")
    fmt = "parquet" if what == "Parquet" else "csv"
    if fmt == "parquet":
        buffer = io.BytesIO()
        pq.write_table(pa.table({"id": [1], "email": ["a"], "score": [1], "note": ["n"]}),
                       buffer)
        env.put("a-good.parquet", buffer.getvalue())
        env.put(name, body)
    else:
        good_then(env, name, body)
    refused(env, env.plan(table, format=fmt), 4, name, f"not a valid {what}"
            if what != "Parquet" else "not a readable Parquet file")
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 0


def test_missing_table_and_missing_prefix_are_configuration(env: Env) -> None:
    env.put("a.csv", HEADER + csv_rows(1, 2))
    refused(env, env.plan("public.no_such_table"), 3, "no_such_table does not exist")
    plan = env.plan("whatever")
    plan["source"]["s3"]["prefix"] = "nothing/here"
    refused(env, plan, 3, "no files under", "nothing/here/")
    plan = env.plan("whatever", maxErrors=-1)
    refused(env, plan, 3, "plan.maxErrors")


def test_identifiers_are_quoted_never_spliced(env: Env) -> None:
    env.sql('CREATE SCHEMA IF NOT EXISTS "Odd Schema"')
    env.sql('DROP TABLE IF EXISTS "Odd Schema"."a""b; DROP TABLE x"')
    env.sql('CREATE TABLE "Odd Schema"."a""b; DROP TABLE x" ("Id" int PRIMARY KEY, '
            '"se;lect" text)')
    env.put("a.csv", b'Id,se;lect\n1,x\n')
    plan = env.plan('Odd Schema.a"b; DROP TABLE x', mode="Merge", keyColumns=["Id"])
    run = env.run(plan)
    assert run.code == 0, run.message
    assert env.sql('SELECT * FROM "Odd Schema"."a""b; DROP TABLE x"') == [(1, "x")]
    assert env.sql("SELECT count(*) FROM \"Odd Schema\".ferry_import_ledger")[0][0] == 1


def test_a_database_that_is_not_there_is_transient(env: Env) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env.put("a.csv", HEADER + csv_rows(1, 2))
    run = env.run(env.plan("contacts"), FERRY_MAX_ATTEMPTS="1")
    assert run.code == 3  # the table: this database has none
    dsn = psycopg.conninfo.make_conninfo(env.dsn, port=port, connect_timeout=2)
    from tests.integration.test_import_load import run_import  # noqa: PLC0415

    down = run_import(env.plan("contacts"), dsn, env.s3, env.tmp_path)
    assert down.code == 75, down.message
    assert "ferry-test-pg-secret" not in down.raw_message


def test_from_export_loads_exactly_the_committed_files(env: Env, make_plan: Any) -> None:
    env.sql("CREATE TABLE IF NOT EXISTS items (id integer PRIMARY KEY, label text)")
    env.sql("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 3000) g "
            "ON CONFLICT DO NOTHING")
    export_plan = make_plan(source={"table": "items"}, compression="gzip",
                            fileSplitSize=4096, batchCount=1, batchIndex=0)
    exported = run_worker(export_plan, env.dsn, env.s3, env.tmp_path)
    assert exported.code == 0, exported.message
    folder = f"items/{export_plan['run']}"
    stray = f"exports/{folder}/items-0-99-deadbeef.csv.gz"
    env.client.put_object(Bucket=env.bucket, Key=stray,
                          Body=gzip.compress(b"id,label\n999999,stray\n"))
    env.sql("CREATE TABLE IF NOT EXISTS items_copy (id integer PRIMARY KEY, label text)")
    plan = env.plan("items_copy", batchCount=2)
    plan["source"] = {"fromExport": {"bucket": env.bucket, "prefix": "exports",
                                     "runFolder": folder},
                      "endpoint": env.s3.endpoint_url, "region": env.s3.region,
                      "pathStyle": True}
    files = 0
    for index in range(2):
        run = env.run({**plan, "batchIndex": index})
        assert run.code == 0, run.message
        files += run.message["fileCount"]
    assert files == exported.message["fileCount"] > 2
    assert env.sql("SELECT count(*), max(id) FROM items_copy")[0] == (3000, 3000)
    missing = {**plan, "source": {**plan["source"], "fromExport": {
        "bucket": env.bucket, "prefix": "exports", "runFolder": "items/no-such-run"}}}
    refused(env, missing, 3, "no committed batch", "items/no-such-run/_manifests/")
    assert json.dumps(plan)  # the plan a test writes is what the operator would send
