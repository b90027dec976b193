"""Source filters and the three formats through the operator, read back from MinIO with
tools the project did not write (csv, json, pyarrow) and compared with the source table
row by row.

One table, `contacts`, holds every combination of the filtered columns' values
(including NULLs), so that each filter alone removes rows the others keep: a filter
that were ignored, or a NULL handled other than as documented, changes the result.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, request
from .support import Kubectl, wait_until

START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
COLUMNS = ["id", "created_at", "media_type", "channel", "region", "deleted_at",
           "reviewed_at", "amount", "score", "active", "payload", "note", "day"]
MEDIA = ["chat", "email", "voice", "sms"]
CHANNELS = ["web", "app", "test", None]
REGIONS = ["eu", "us"]
NOTES = ["plain", 'a "quoted", comma', "two\nlines", "unicode: ä ö ü € 日本",
         "sep\u2028ara\u2029tors\u0085", None, "tab\tand\rcarriage"]


def make_rows() -> list[dict[str, Any]]:
    rows = []
    combos = itertools.product(MEDIA, CHANNELS, REGIONS, [False, True], [False, True], range(2))
    for i, (media, channel, region, deleted, reviewed, _) in enumerate(combos):
        created = START + dt.timedelta(minutes=7 * i, microseconds=123456 * (i % 3))
        rows.append({
            "id": i + 1,
            "created_at": created,
            "media_type": media,
            "channel": channel,
            "region": region,
            "deleted_at": created + dt.timedelta(days=1) if deleted else None,
            "reviewed_at": created + dt.timedelta(hours=2) if reviewed else None,
            "amount": None if i % 11 == 0 else Decimal(i * 37 % 100000) / 100 - 100,
            "score": None if i % 13 == 0 else (i * 0.1 if i % 2 else -1.5e-7 * i),
            "active": None if i % 17 == 0 else i % 2 == 0,
            # an SQL NULL, a JSON null, an object with nesting
            "payload": None if i % 19 == 0 else ("null" if i % 23 == 0 else json.dumps(
                {"n": i, "tags": [media, region], "nested": {"ok": i % 2 == 0}})),
            "note": NOTES[i % len(NOTES)],
            "day": (START + dt.timedelta(days=i % 40)).date(),
        })
    return rows


def select(conn: psycopg.Connection[Any], query: str) -> list[dict[str, Any]]:
    cur = conn.execute(query.encode())
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@pytest.fixture(scope="module")
def source(pg_db: str) -> list[dict[str, Any]]:
    """`contacts`, as psycopg reads it back (the reference the exports are compared with)."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE contacts (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, "
            "media_type text NOT NULL, channel text, region text NOT NULL, "
            "deleted_at timestamptz, reviewed_at timestamptz, amount numeric(10,2), "
            "score double precision, active boolean, payload jsonb, note text, day date)")
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO contacts ({', '.join(COLUMNS)}) VALUES "
                f"({', '.join(['%s'] * len(COLUMNS))})",
                [[r[c] for c in COLUMNS] for r in make_rows()])
        return select(conn, f"SELECT {', '.join(COLUMNS)} FROM contacts ORDER BY id")


@pytest.fixture(scope="module")
def source_text(pg_db: str, source: list[dict[str, Any]]) -> dict[int, dict[str, str | None]]:
    """Every value in PostgreSQL's text form (what CSV holds, docs/worker.md), in UTC,
    by id. A cast to text is the type's output function, except for booleans (`true`,
    where the text form is `t`)."""
    texts = [f"{c}::text AS {c}" if c != "active" else
             "CASE WHEN active THEN 't' WHEN NOT active THEN 'f' END AS active"
             for c in COLUMNS]
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        rows = select(conn, f"SELECT {', '.join(texts)} FROM contacts")
    return {int(r["id"]): r for r in rows}


def contacts_job(name: str, wiring: Wiring, s3: S3Server, **spec: Any) -> dict[str, Any]:
    manifest = export_job(name, wiring, s3, **spec)
    manifest["spec"]["source"]["table"] = "contacts"
    manifest["spec"]["concurrency"] = {"key": f"formats-{name}"}
    return manifest


def run_to_end(kubectl: Kubectl, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    name = manifest["metadata"]["name"]
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, name, ANNOTATION_RUN_REQUESTED_AT)
    entry: dict[str, Any] = wait_until(
        lambda: (get(kubectl, ns, f"exportjob/{name}").get("status") or {}).get("lastRun"),
        what=f"the run of {name} to end", timeout=180)
    assert entry["phase"] == "Succeeded", entry
    return entry


def committed_files(s3: S3Server, bucket: str, job: str, run_id: str) -> list[bytes]:
    """The bodies of the files the run's batch manifests list, in batch and file order."""
    client = s3.client()
    prefix = f"e2e/{job}/{run_id}/_manifests/"
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    bodies = []
    for obj in sorted(listed, key=lambda o: o["Key"]):
        manifest = json.loads(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        for entry in manifest["files"]:
            bodies.append(client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read())
    assert bodies, f"no committed files under {prefix}"
    return bodies


def read_csv(bodies: list[bytes]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for body in bodies:
        reader = csv.DictReader(io.StringIO(body.decode("utf-8"), newline=""))
        assert reader.fieldnames == COLUMNS
        rows += list(reader)
    return rows


# --- filters ---------------------------------------------------------------------------------


FILTERS = [
    {"column": "media_type", "in": ["chat", "email"]},
    {"column": "channel", "notIn": ["test"]},
    {"column": "region", "equals": "eu"},
    {"column": "deleted_at", "isNull": True},
    {"column": "reviewed_at", "isNull": False},
]


PREDICATES = [
    lambda r: r["media_type"] in ("chat", "email"),
    lambda r: r["channel"] is not None and r["channel"] != "test",
    lambda r: r["region"] == "eu",
    lambda r: r["deleted_at"] is None,
    lambda r: r["reviewed_at"] is not None,
]
"""FILTERS as docs/user-guide.md and docs/api.md state them, one for one: `notIn` drops
NULLs (SQL semantics); `isNull: true` keeps the NULLs, `false` the others."""


def keeps(row: dict[str, Any], predicates: list[Any] = PREDICATES) -> bool:
    """The filters are ANDed."""
    return all(p(row) for p in predicates)


def test_filters_of_every_kind_export_exactly_the_matching_rows(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source: list[dict[str, Any]], source_text: dict[int, dict[str, str | None]],
) -> None:
    manifest = contacts_job("filtered", wiring, s3)
    manifest["spec"]["source"]["filters"] = FILTERS
    entry = run_to_end(kubectl, wiring.namespace, manifest)

    rows = read_csv(committed_files(s3, wiring.bucket, "filtered", entry["id"]))

    expected = [r["id"] for r in source if keeps(r)]
    # Each filter on its own removes rows that all the others keep, so none can be
    # ignored unnoticed.
    for dropped in range(len(PREDICATES)):
        others = [p for i, p in enumerate(PREDICATES) if i != dropped]
        assert len([r for r in source if keeps(r, others)]) > len(expected), FILTERS[dropped]
    assert 0 < len(expected) < len(source) // 10
    assert sorted(int(r["id"]) for r in rows) == expected
    assert entry["records"] == len(expected)
    # Row by row, every value as PostgreSQL's text form (CSV: NULL is an empty field).
    for row in rows:
        reference = source_text[int(row["id"])]
        assert row == {c: "" if reference[c] is None else reference[c] for c in COLUMNS}


def test_an_in_filter_listing_every_media_type_keeps_every_row(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source: list[dict[str, Any]], source_text: dict[int, dict[str, str | None]],
) -> None:
    """"Media types: chat, email" (omit = all): listing all of them is the same as none."""
    manifest = contacts_job("all-media", wiring, s3)
    manifest["spec"]["source"]["filters"] = [{"column": "media_type", "in": MEDIA}]
    entry = run_to_end(kubectl, wiring.namespace, manifest)

    rows = read_csv(committed_files(s3, wiring.bucket, "all-media", entry["id"]))

    assert sorted(int(r["id"]) for r in rows) == [r["id"] for r in source]
    for row in rows:
        reference = source_text[int(row["id"])]
        assert row == {c: "" if reference[c] is None else reference[c] for c in COLUMNS}


# --- JSON Lines and Parquet -------------------------------------------------------------------


def test_json_lines_export_holds_every_row_as_its_values(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source: list[dict[str, Any]],
) -> None:
    manifest = contacts_job("as-jsonl", wiring, s3,
                            batching={"batches": 2, "parallelism": 2})
    manifest["spec"]["source"]["keyColumn"] = "id"
    manifest["spec"]["output"]["format"] = "jsonl"
    entry = run_to_end(kubectl, wiring.namespace, manifest)

    bodies = committed_files(s3, wiring.bucket, "as-jsonl", entry["id"])

    records: list[dict[str, Any]] = []
    for body in bodies:
        text = body.decode("utf-8")
        # every line one record, also for readers splitting on U+2028/U+2029/U+0085
        assert not {"\u2028", "\u2029", "\x85"} & set(text)
        lines = text.splitlines()
        records += [json.loads(line, parse_float=Decimal) for line in lines]
    assert entry["records"] == len(source)
    by_id = {r["id"]: r for r in records}
    assert sorted(by_id) == [r["id"] for r in source] and len(records) == len(source)
    for row in source:
        got = by_id[row["id"]]
        assert list(got) == COLUMNS, "keys in the table's column order"
        assert dt.datetime.fromisoformat(got["created_at"]) == row["created_at"]
        for column in ("deleted_at", "reviewed_at"):
            value = got[column]
            assert (value and dt.datetime.fromisoformat(value)) == row[column], column
        assert got["amount"] == row["amount"]  # Decimal, every digit
        assert (None if got["score"] is None else float(got["score"])) == row["score"]
        assert got["day"] == (row["day"].isoformat() if row["day"] else None)
        # SQL NULL and JSON null are both null (docs/worker.md); psycopg reads both as None
        assert got["payload"] == row["payload"]
        for column in ("id", "media_type", "channel", "region", "active", "note"):
            assert got[column] == row[column], column


def test_parquet_export_has_the_documented_types_and_every_row(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source: list[dict[str, Any]],
) -> None:
    manifest = contacts_job("as-parquet", wiring, s3)
    manifest["spec"]["output"]["format"] = "parquet"
    manifest["spec"]["output"]["compression"] = "zstd"
    entry = run_to_end(kubectl, wiring.namespace, manifest)

    bodies = committed_files(s3, wiring.bucket, "as-parquet", entry["id"])

    tables = [pq.read_table(io.BytesIO(body)) for body in bodies]
    schema = tables[0].schema
    assert [(f.name, f.type) for f in schema] == [
        ("id", pa.int64()), ("created_at", pa.timestamp("us", tz="UTC")),
        ("media_type", pa.string()), ("channel", pa.string()), ("region", pa.string()),
        ("deleted_at", pa.timestamp("us", tz="UTC")),
        ("reviewed_at", pa.timestamp("us", tz="UTC")), ("amount", pa.decimal128(10, 2)),
        ("score", pa.float64()), ("active", pa.bool_()), ("payload", pa.string()),
        ("note", pa.string()), ("day", pa.date32())]
    codecs = {pq.ParquetFile(io.BytesIO(body)).metadata.row_group(0).column(0).compression
              for body in bodies}
    assert codecs == {"ZSTD"}
    records = [r for t in tables for r in t.to_pylist()]
    assert entry["records"] == len(records) == len(source)
    by_id = {r["id"]: r for r in records}
    inserted = {r["id"]: r["payload"] for r in make_rows()}
    for row in source:
        got = dict(by_id[row["id"]])
        payload = got.pop("payload")
        assert got == {c: row[c] for c in COLUMNS if c != "payload"}
        if inserted[row["id"]] is None:
            assert payload is None, "an SQL NULL is a null"
        elif inserted[row["id"]] == "null":
            assert payload == "null", "a JSON null is the string 'null' (docs/worker.md)"
        else:
            assert json.loads(payload) == row["payload"]
    assert None in inserted.values() and "null" in inserted.values()
