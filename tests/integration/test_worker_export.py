"""The worker against real PostgreSQL and S3: every format read back row by row."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from psycopg import ClientCursor, sql

from ferry.worker import main as worker_main
from ferry.worker.plan import Destination, Secrets, load_plan
from ferry.worker.source import BatchReader
from ferry.worker.sql import jsonl_query
from ferry.worker.upload import make_client
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

COLUMNS = ["id", "big", "label", "note", "ts", "plain_ts", "day", "amount", "free", "ok",
           "doc", "ratio"]

SPECIAL_ROWS: list[tuple[Any, ...]] = [
    (1, 9007199254740993, "plain", "simple", "2024-01-01 00:00:00+00", "2024-01-01 00:00:00",
     "2024-01-01", "1.5", "2.25", True, '{"a": 1}', 0.1),
    (2, -5, "héllo ✓ 日本語 🚀", 'line1\nline2 "quoted", comma\r\nend', "2024-03-10 02:30:00-08",
     "1999-12-31 23:59:59.999999", "0001-01-01", "-1234567890123456789012345678.0123456789",
     "123456789012345678901234567890.123456789012345678", False,
     '{"nested": {"u": "ü", "list": [1, 2.5, null, true]}}', -1.0e-300),
    (3, None, None, None, None, None, None, None, None, None, None, None),
    (4, 0, "", None, "2024-06-30 23:59:59.123456+05:30", None, None, "0", "0", None, "[]",
     float("inf")),
    (5, 1, "NULL", "\\N", "1970-01-01 00:00:00+00", None, None, "0.0000000001", "1e-20", True,
     '"just a string"', float("nan")),
    (6, 2, "C:\\path\\", "tab\there, trailing space ", "2038-01-19 03:14:08+00", None, None,
     "9999999999999999999999999999.9999999999", "-0.5", False, '{"k": "a,\\"b\\"\\n"}', 2.0),
]


@pytest.fixture(scope="module")
def items_dsn(pg_db: str) -> str:
    """A table with every awkward value the formats must carry, plus bulk rows."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE items (
                id integer PRIMARY KEY, big bigint, label text, note text, ts timestamptz,
                plain_ts timestamp, day date, amount numeric(38, 10), free numeric,
                ok boolean, doc jsonb, ratio double precision)""")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO items VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                SPECIAL_ROWS)
            cur.execute("""
                INSERT INTO items
                SELECT g, g * 1000003, 'bulk ' || g, repeat('n', g % 50),
                       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute',
                       timestamp '2024-01-01' + g * interval '1 hour', date '2024-01-01' + g,
                       g / 7.0, g / 3.0, g % 2 = 0, jsonb_build_object('g', g), g / 9.0
                FROM generate_series(100, 2099) g""")
    return pg_db


def expected_rows(dsn: str, where: str = "TRUE") -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(f"SELECT * FROM items WHERE {where} ORDER BY id").fetchall()


def expected_text_rows(dsn: str) -> list[tuple[Any, ...]]:
    """Each column as PostgreSQL's output function writes it (what COPY's CSV carries)."""
    cols = ", ".join(
        "CASE WHEN ok THEN 't' WHEN NOT ok THEN 'f' END" if c == "ok" else f"{c}::text"
        for c in COLUMNS)
    with psycopg.connect(dsn) as conn:
        for setting in ("TimeZone = 'UTC'", "DateStyle = 'ISO, YMD'", "extra_float_digits = 1"):
            conn.execute(f"SET {setting}")
        return conn.execute(f"SELECT {cols} FROM items ORDER BY items.id").fetchall()


def same_float(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def check_parquet(rows: list[dict[str, Any]], expected: list[tuple[Any, ...]]) -> None:
    assert len(rows) == len(expected)
    for got, want in zip(sorted(rows, key=lambda r: r["id"]), expected, strict=True):
        want_d = dict(zip(COLUMNS, want, strict=True))
        for col in ("id", "big", "label", "note", "ts", "plain_ts", "day", "amount", "ok"):
            assert got[col] == want_d[col], (col, got, want_d)
        assert (got["free"] is None) == (want_d["free"] is None)
        if got["free"] is not None:
            assert Decimal(got["free"]) == want_d["free"]
        assert (None if got["doc"] is None else json.loads(got["doc"])) == want_d["doc"]
        assert same_float(got["ratio"], want_d["ratio"])


def check_jsonl(lines: list[str], expected: list[tuple[Any, ...]]) -> None:
    docs = sorted((json.loads(line, parse_float=Decimal) for line in lines),
                  key=lambda d: d["id"])
    assert len(docs) == len(expected)
    for got, want in zip(docs, expected, strict=True):
        want_d = dict(zip(COLUMNS, want, strict=True))
        assert list(got) == COLUMNS
        for col in ("id", "big", "label", "note", "ok", "doc"):
            assert got[col] == want_d[col], col
        for col, parse in (("ts", dt.datetime.fromisoformat),
                           ("plain_ts", dt.datetime.fromisoformat),
                           ("day", dt.date.fromisoformat)):
            assert (None if got[col] is None else parse(got[col])) == want_d[col], col
        if got["ts"] is not None:
            assert got["ts"].endswith("+00:00")  # ISO 8601 in UTC
        for col in ("amount", "free"):
            assert (None if got[col] is None else Decimal(got[col])) == want_d[col], col
        ratio = got["ratio"]
        if isinstance(ratio, str):  # NaN / Infinity are strings in JSON
            ratio = float(ratio)
        assert same_float(None if ratio is None else float(ratio), want_d["ratio"])


FORMATS = [(f, c) for f in ("csv", "jsonl", "parquet") for c in ("none", "gzip", "zstd")]


@pytest.mark.parametrize(("fmt", "compression"), FORMATS)
def test_every_format_round_trips(items_dsn: str, s3: S3Server, s3_bucket: str,
                                  make_plan: PlanFactory, tmp_path: Path,
                                  fmt: str, compression: str) -> None:
    plan = make_plan(format=fmt, compression=compression)
    result = run_worker(plan, items_dsn, s3, tmp_path)
    assert result.code == 0, result.raw_message
    total = len(SPECIAL_ROWS) + 2000
    assert result.message["records"] == total
    client = s3.client()
    manifest = get_json(client, s3_bucket, manifest_key(plan))
    assert manifest["records"] == manifest["total"] == total
    header, records = read_files(client, s3_bucket, manifest["files"], fmt, compression)
    if fmt == "csv":
        assert header == COLUMNS
        records.sort(key=lambda r: int(r[0]))
        assert records == [list(r) for r in expected_text_rows(items_dsn)]
    elif fmt == "jsonl":
        check_jsonl(records, expected_rows(items_dsn))
    else:
        check_parquet(records, expected_rows(items_dsn))


@pytest.mark.parametrize(("fmt", "compression", "limit"),
                         [("csv", "none", 8192), ("csv", "gzip", 4096), ("jsonl", "zstd", 4096),
                          ("jsonl", "none", 20000), ("parquet", "zstd", 65536)])
def test_split_size_is_honoured(items_dsn: str, s3: S3Server, s3_bucket: str,
                                make_plan: PlanFactory, tmp_path: Path,
                                fmt: str, compression: str, limit: int) -> None:
    plan = make_plan(format=fmt, compression=compression, fileSplitSize=limit,
                     columns=["id", "label", "note", "ts", "amount"])
    result = run_worker(plan, items_dsn, s3, tmp_path)
    assert result.code == 0, result.raw_message
    client = s3.client()
    manifest = get_json(client, s3_bucket, manifest_key(plan))
    assert len(manifest["files"]) > 1
    assert all(f["size"] <= limit for f in manifest["files"])
    keys = [f["key"] for f in manifest["files"]]
    assert [k.rsplit("-", 2)[1] for k in keys] == [str(i) for i in range(len(keys))]
    _, records = read_files(client, s3_bucket, manifest["files"], fmt, compression)
    ids = ([int(r[0]) for r in records] if fmt == "csv" else
           [json.loads(r)["id"] for r in records] if fmt == "jsonl" else
           [r["id"] for r in records])
    assert sorted(ids) == [r[0] for r in expected_rows(items_dsn)]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_empty_result_is_a_valid_empty_file(items_dsn: str, s3: S3Server, s3_bucket: str,
                                            make_plan: PlanFactory, tmp_path: Path,
                                            fmt: str) -> None:
    plan = make_plan(format=fmt, compression="gzip" if fmt != "parquet" else "none",
                     filters=[{"column": "id", "op": "lt", "value": 0}])
    result = run_worker(plan, items_dsn, s3, tmp_path)
    assert result.code == 0, result.raw_message
    assert result.message["records"] == 0
    manifest = get_json(s3.client(), s3_bucket, manifest_key(plan))
    assert len(manifest["files"]) == 1
    header, records = read_files(s3.client(), s3_bucket, manifest["files"], fmt,
                                 plan["compression"])
    assert records == []
    if fmt == "csv":
        assert header == COLUMNS


def test_window_is_half_open(items_dsn: str, s3: S3Server, s3_bucket: str,
                             make_plan: PlanFactory, tmp_path: Path) -> None:
    # Bulk row g has ts = 2024-01-01 + g minutes: [g=100, g=110) -> ids 100..109.
    plan = make_plan(format="jsonl", window={
        "column": "ts", "from": "2024-01-01T01:40:00Z", "to": "2024-01-01T03:50:00+02:00"})
    result = run_worker(plan, items_dsn, s3, tmp_path)
    assert result.code == 0, result.raw_message
    manifest = get_json(s3.client(), s3_bucket, manifest_key(plan))
    _, lines = read_files(s3.client(), s3_bucket, manifest["files"], "jsonl", "none")
    assert sorted(json.loads(line)["id"] for line in lines) == list(range(100, 110))


def test_secrets_never_reach_logs_or_messages(items_dsn: str, s3: S3Server,
                                              make_plan: PlanFactory, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """capsys, not capfd: the worker logs to the ``sys.stderr`` it finds at start, which
    capfd does not always see. The log must hold the failure, or the check is hollow."""
    bad_dsn = items_dsn.replace("ferry-test-pg-secret", "wrong-Pa55word")
    result = run_worker(make_plan(), bad_dsn, s3, tmp_path)
    assert result.code == 3
    assert result.message["kind"] == "config"
    assert "password authentication failed" in result.message["reason"]
    out = capsys.readouterr()
    assert "password authentication failed" in out.err
    for text in (result.raw_message, out.out, out.err):
        assert "wrong-Pa55word" not in text
        assert s3.secret_key not in text


def test_fatal_error_has_one_line_reason_and_no_manifest(
        items_dsn: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory,
        tmp_path: Path) -> None:
    plan = make_plan(columns=["id", "no_such_column"])
    result = run_worker(plan, items_dsn, s3, tmp_path)
    assert result.code == 3
    assert "\n" not in result.raw_message.strip()
    assert result.message["status"] == "Failed"
    assert 'column "no_such_column" does not exist' in result.message["reason"]
    client = s3.client()
    run_prefix = f"exports/items/{plan['run']}/"
    keys = list_keys(client, s3_bucket, run_prefix)
    assert keys == [f"{run_prefix}_errors/batch-0.jsonl"]
    report = client.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read().decode()
    assert json.loads(report)["reason"] == result.message["reason"]


def test_error_report_is_written_through_a_brief_s3_outage(
        items_dsn: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The error report's first six reads and first six writes get 503 Service
    Unavailable: botocore tries each call three times (its ``max_attempts=2`` counts
    retries), so the worker's own retrier must try each twice more. The outage is injected at
    botocore's ``before-send`` hook of the worker's own client, in front of the real
    MinIO: an outage this short cannot be staged by stopping the server. The report is
    retried like any S3 call, not dropped."""
    failures = {"GetObject": 6, "PutObject": 6}

    def unavailable(request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        if "/_errors/" not in request.url or not failures.get(operation):
            return None
        failures[operation] -= 1
        body = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
        return AWSResponse(request.url, 503, {"Content-Type": "application/xml"},
                           _Raw(body))

    def flaky_client(dest: Destination, secrets: Secrets) -> Any:
        client = make_client(dest, secrets)
        client.meta.events.register("before-send.s3.GetObject", unavailable)
        client.meta.events.register("before-send.s3.PutObject", unavailable)
        return client

    monkeypatch.setattr(worker_main, "make_client", flaky_client)
    plan = make_plan(columns=["id", "no_such_column"])
    result = run_worker(plan, items_dsn, s3, tmp_path)
    assert result.code == 3
    assert failures == {"GetObject": 0, "PutObject": 0}
    key = f"exports/items/{plan['run']}/_errors/batch-0.jsonl"
    report = s3.client().get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode()
    assert json.loads(report)["reason"] == result.message["reason"]
    log = capsys.readouterr().err
    assert "S3 GetObject error report failed (ServiceUnavailable: injected); retry 2" in log
    assert "S3 PutObject error report failed (ServiceUnavailable: injected); retry 2" in log
    assert "retry 3" not in log
    assert "error report not written" not in log


class _Raw:
    """The raw body botocore reads from an injected response."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@pytest.mark.parametrize(("sql_type", "value", "parquet_type", "problem"), [
    ("numeric(10, 2)", "NaN", "decimal128(10, 2)",
     "The string 'NaN' is not a valid decimal128 number"),
    ("numeric(50, 4)", "NaN", "decimal256(50, 4)",
     "The string 'NaN' is not a valid decimal256 number"),
    ("timestamp", "infinity", "timestamp[us]",
     "CSV conversion error to timestamp[us]: invalid value 'infinity'"),
])
def test_parquet_cannot_hold_a_value_and_says_which_column(
        pg_db: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory, tmp_path: Path,
        sql_type: str, value: str, parquet_type: str, problem: str) -> None:
    """What the user reads (termination message, error report) names the column by its SQL
    name, the record and what to do, not Arrow's "In CSV column #1: Row #2"."""
    table = "cannot_hold_" + re.sub(r"\W+", "_", sql_type).strip("_")
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE {table} (id int, "Odd v" {sql_type})')
        conn.execute(f"INSERT INTO {table} VALUES (1, NULL), (2, %s)", (value,))
    plan = make_plan(format="parquet", source={"table": table}, run=table)  # one per case
    result = run_worker(plan, pg_db, s3, tmp_path)
    assert result.code == 4
    assert result.message["kind"] == "data"
    assert result.message["reason"] == (
        f'Parquet: column "Odd v" ({parquet_type}) cannot hold the value of record 2 of this '
        f'batch: {problem}. Convert the column in a query source (e.g. SELECT "Odd v"::text, '
        "or NULLIF or CASE to drop such values) or export as csv or jsonl")
    run_prefix = f"exports/items/{plan['run']}/"
    assert list_keys(s3.client(), s3_bucket, run_prefix) == [f"{run_prefix}_errors/batch-0.jsonl"]
    report = get_json(s3.client(), s3_bucket, f"{run_prefix}_errors/batch-0.jsonl")
    assert (report["exitCode"], report["reason"]) == (4, result.message["reason"])


def test_jsonl_escapes_line_separators_and_writes_both_nulls_as_null(
        pg_db: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory,
        tmp_path: Path) -> None:
    """U+2028, U+2029 and U+0085 arrive escaped, so ``str.splitlines`` (which splits at
    them) counts the records the manifest lists and json.loads gives the original strings.
    A jsonb JSON null and an SQL NULL are both ``null``, as docs/worker.md says."""
    odd = "a\u2028b\u2029c\u0085d, 20\u00b0C \u201cquoted\u201d"
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE separators (id int, label text, doc jsonb)")
        conn.execute("INSERT INTO separators VALUES (1, %s, %s), (2, 'json null', 'null'), "
                     "(3, 'sql null', NULL)", (odd, json.dumps({odd: [odd]})))
    plan = make_plan(format="jsonl", source={"table": "separators"})
    result = run_worker(plan, pg_db, s3, tmp_path)
    assert result.code == 0, result.raw_message
    client = s3.client()
    manifest = get_json(client, s3_bucket, manifest_key(plan))
    _, lines = read_files(client, s3_bucket, manifest["files"], "jsonl", "none")
    assert [json.loads(line) for line in lines] == [
        {"id": 1, "label": odd, "doc": {odd: [odd]}},
        {"id": 2, "label": "json null", "doc": None},
        {"id": 3, "label": "sql null", "doc": None},
    ]
    assert lines[0].startswith(r'{"id":1,"label":"a\u2028b\u2029c\u0085d, 20°C “quoted”",')


def test_missing_bucket_is_a_config_error(items_dsn: str, s3: S3Server,
                                          make_plan: PlanFactory, tmp_path: Path) -> None:
    plan = make_plan()
    plan["destination"]["bucket"] = "no-such-bucket-here"
    result = run_worker(plan, items_dsn, s3, tmp_path)
    assert result.code == 3
    assert "NoSuchBucket" in result.message["reason"]
    assert 'bucket "no-such-bucket-here" does not exist: create it' in result.message["reason"]


def test_unreachable_s3_is_transient(items_dsn: str, s3: S3Server,
                                     make_plan: PlanFactory, tmp_path: Path) -> None:
    plan = make_plan()
    plan["destination"]["endpoint"] = "http://127.0.0.1:9"
    result = run_worker(plan, items_dsn, s3, tmp_path, {"FERRY_S3_RETRY_SECONDS": "1"})
    assert result.code == 75
    assert result.message["kind"] == "transient"


def test_jsonl_is_built_by_parallel_workers_and_holds_every_row_once(
        pg_db: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory,
        tmp_path: Path) -> None:
    """A table big enough for a parallel plan: the worker's session computes row_to_json
    below a Gather (source.JSONL_SETTINGS), and the files hold each document exactly once,
    byte for byte what a serial row_to_json writes."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id integer, ts timestamptz, label text, "
                     "amount numeric(12, 2)) WITH (parallel_workers = 2)")
        conn.execute("INSERT INTO events SELECT g, timestamptz '2024-01-01 00:00:00+00' "
                     "+ g * interval '1 second', 'event ' || g, g / 100.0 "
                     "FROM generate_series(1, 200000) g")
        conn.execute("ANALYZE events")
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET max_parallel_workers_per_gather = 0")
        serial = sorted(row[0] for row in conn.execute(
            "SELECT row_to_json(e.*)::text FROM events AS e"))
    plan = make_plan(source={"table": "events"}, format="jsonl")
    loaded = load_plan({"FERRY_PLAN": json.dumps(plan)})
    with BatchReader(pg_db, loaded) as reader:
        query, params = jsonl_query(loaded, [c.name for c in reader.describe()])
        with ClientCursor(reader.conn) as cur:
            cur.execute(sql.SQL("EXPLAIN VERBOSE {}").format(query), params)
            explain = "\n".join(row[0] for row in cur.fetchall())
    assert "Gather" in explain
    assert "Parallel Seq Scan" in explain
    assert explain.index("Parallel Seq Scan") < explain.rindex("Output: row_to_json")

    result = run_worker(plan, pg_db, s3, tmp_path)
    assert result.code == 0
    assert result.message["records"] == 200000
    manifest = get_json(s3.client(), s3_bucket, manifest_key(plan))
    _, lines = read_files(s3.client(), s3_bucket, manifest["files"], "jsonl", "none")
    assert sorted(lines) == serial


def _pairs(text: str | None) -> Any:
    """A JSON text parsed with its objects as lists of pairs: key order and duplicate keys
    count in comparisons."""
    return None if text is None else json.loads(text, object_pairs_hook=list)


@pytest.mark.parametrize("split", [None, 65536])
def test_jsonl_json_values_with_line_breaks_stay_one_line(
        pg_db: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory, tmp_path: Path,
        split: int | None) -> None:
    """``json`` keeps its input text, line breaks included, and row_to_json copies it
    verbatim; COPY then quoted the record with its quote character and the file had raw
    \\x01 bytes and a record over several lines. Each record is one line of JSON whose
    values are the stored ones: key order and duplicate keys kept (json, not jsonb), in
    plain columns and in arrays of json; with a split size, files are cut in chunks that
    held such records."""
    table = f"json_docs_{split or 0}"
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int, doc json, docs json[], note text)")
        conn.execute(
            f"INSERT INTO {table} VALUES "
            "(1, %s, ARRAY[%s, %s]::json[], 'dup keys'), (2, %s, NULL, 'crlf'), "
            "(3, 'null', ARRAY['1']::json[], 'json null'), (4, %s, NULL, 'separators'), "
            "(5, NULL, NULL, %s)",
            ('{"b": 1,\n  "a": [1,\n 2], "b": 2}', '{"x":\n1}', "[\r\n]",
             '\r\n{\r\n"k": "line\\nbreak \\u0001 in a string"\r\n}\r\n',
             '{"s": "a\u2028b",\n"t": 1}', "text\nwith a line break"))
        conn.execute(
            f"INSERT INTO {table} SELECT g, format('{{\"g\": %s,\n \"pad\": \"%s\"}}', g, "
            "repeat('x', g % 200))::json, ARRAY[format('[%s,\n%s]', g, g)::json], 'bulk' "
            "FROM generate_series(100, 2099) g")
        stored = conn.execute(f"SELECT id, doc::text, docs::text[], note FROM {table}")
        expected = {row[0]: [("id", row[0]), ("doc", _pairs(row[1])),
                             ("docs", None if row[2] is None else [_pairs(t) for t in row[2]]),
                             ("note", row[3])]
                    for row in stored}
    plan = make_plan(format="jsonl", source={"table": table}, fileSplitSize=split)
    result = run_worker(plan, pg_db, s3, tmp_path)
    assert result.code == 0, result.raw_message
    client = s3.client()
    manifest = get_json(client, s3_bucket, manifest_key(plan))
    assert manifest["records"] == len(expected) == 2005
    assert (len(manifest["files"]) > 1) == (split is not None)
    for entry in manifest["files"]:
        assert b"\x01" not in client.get_object(Bucket=s3_bucket, Key=entry["key"])["Body"].read()
    # read_files: str.splitlines() of every file counts the records its manifest entry lists
    _, lines = read_files(client, s3_bucket, manifest["files"], "jsonl", "none")
    assert len(lines) == len(expected)
    got = {doc[0][1]: doc for doc in map(_pairs, lines)}
    assert got == expected
    assert got[1][1] == ("doc", [("b", 1), ("a", [1, 2]), ("b", 2)])
    assert got[2][1] == ("doc", [("k", "line\nbreak \x01 in a string")])
    by_id = {json.loads(line)["id"]: line for line in lines}
    assert by_id[1] == ('{"id":1,"doc":{"b": 1,   "a": [1,  2], "b": 2},"docs":[{"x": 1},[  ]],'
                        '"note":"dup keys"}')
    assert by_id[4] == r'{"id":4,"doc":{"s": "a\u2028b", "t": 1},"docs":null,"note":"separators"}'


def test_parquet_numeric_beyond_38_digits(pg_db: str, s3: S3Server, s3_bucket: str,
                                          make_plan: PlanFactory, tmp_path: Path) -> None:
    """numeric(p, s) with 39-76 digits is decimal256 (Arrow's CSV reader cannot convert
    to it: the worker failed with exit 1), more than 76 digits and unconstrained numeric
    are strings holding the exact decimal text; every value equals the source's."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE wide_numbers (id int, big numeric(50, 4), "
                     "huge numeric(76, 10), beyond numeric(100, 2), free numeric)")
        conn.execute(
            "INSERT INTO wide_numbers VALUES (1, %s, %s, %s, %s), (2, NULL, NULL, NULL, NULL), "
            "(3, 0, '0.0000000001', '-0.01', 'NaN'), (4, '-0.0001', 1, 2, '1e-40')",
            ("12345678901234567890123456789012345678901234.5678",
             "-" + "9" * 66 + "." + "9" * 10, "1" * 98 + ".25", "3." + "1" * 60))
        conn.execute("INSERT INTO wide_numbers SELECT g, g * 1.0001 + 10 ^ 40, -g / 7.0, "
                     "g * 10 ^ 90, g / 3.0 FROM generate_series(100, 2099) g")
        expected = conn.execute("SELECT id, big, huge, beyond, free::text FROM wide_numbers "
                                "ORDER BY id").fetchall()
    plan = make_plan(format="parquet", source={"table": "wide_numbers"})
    result = run_worker(plan, pg_db, s3, tmp_path)
    assert result.code == 0, result.raw_message
    client = s3.client()
    manifest = get_json(client, s3_bucket, manifest_key(plan))
    raw = client.get_object(Bucket=s3_bucket, Key=manifest["files"][0]["key"])["Body"].read()
    schema = pq.read_schema(io.BytesIO(raw))
    assert [str(t) for t in schema.types] == [
        "int32", "decimal256(50, 4)", "decimal256(76, 10)", "string", "string"]
    _, rows = read_files(client, s3_bucket, manifest["files"], "parquet", "none")
    got = sorted((tuple(r.values()) for r in rows), key=lambda r: r[0])
    assert len(got) == len(expected) == 2004
    for row, want in zip(got, expected, strict=True):
        assert row[:3] == want[:3], (row, want)
        assert (None if row[3] is None else Decimal(row[3])) == want[3], (row, want)
        assert row[4] == want[4]


def test_parquet_numeric_with_negative_scale_or_scale_above_precision(
        pg_db: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory,
        tmp_path: Path) -> None:
    """PostgreSQL 15 takes numeric(5, -2) (rounded to hundreds) and numeric(2, 5) (digits
    after the point only); Parquet's decimals need 0 <= scale <= precision, so these are
    decimal128(7, 0) and decimal128(5, 5), which hold the same values."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE odd_scales (id int, hundreds numeric(5, -2), "
                     "tiny numeric(2, 5), wide numeric(40, -3))")
        conn.execute("INSERT INTO odd_scales VALUES (1, 12345, 0.00012, %s), "
                     "(2, -9999900, -0.00099, 0), (3, NULL, NULL, NULL)", ("1" * 43,))
        expected = conn.execute("SELECT * FROM odd_scales ORDER BY id").fetchall()
    plan = make_plan(format="parquet", source={"table": "odd_scales"})
    result = run_worker(plan, pg_db, s3, tmp_path)
    assert result.code == 0, result.raw_message
    client = s3.client()
    manifest = get_json(client, s3_bucket, manifest_key(plan))
    raw = client.get_object(Bucket=s3_bucket, Key=manifest["files"][0]["key"])["Body"].read()
    assert [str(t) for t in pq.read_schema(io.BytesIO(raw)).types] == [
        "int32", "decimal128(7, 0)", "decimal128(5, 5)", "decimal256(43, 0)"]
    _, rows = read_files(client, s3_bucket, manifest["files"], "parquet", "none")
    assert sorted((tuple(r.values()) for r in rows), key=lambda r: r[0]) == expected
    assert expected[0][1:3] == (Decimal("12300"), Decimal("0.00012"))
