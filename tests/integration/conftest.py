"""Helpers for the worker's integration tests: run it, find what it committed, read it."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import zstandard

from ferry.worker.main import build_parser, export_command
from tests.fixtures.services import S3Server


@dataclasses.dataclass
class WorkerRun:
    """Exit code and termination message of one in-process worker run."""

    code: int
    message: dict[str, Any]
    raw_message: str


def run_worker(plan: dict[str, Any], dsn: str, s3: S3Server, tmp_path: Path,
               extra_env: dict[str, str] | None = None) -> WorkerRun:
    """Run ``ferry-worker export`` in-process with the env a pod would get."""
    term = tmp_path / f"termination-{id(plan)}-{len(list(tmp_path.iterdir()))}"
    env = {
        "FERRY_PLAN": json.dumps(plan),
        "FERRY_SOURCE_DSN": dsn,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "FERRY_TERMINATION_MESSAGE_PATH": str(term),
        "FERRY_MAX_ATTEMPTS": "1",
        **(extra_env or {}),
    }
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = export_command(build_parser().parse_args(["export"]), env)
    finally:
        signal.signal(signal.SIGTERM, previous)
    raw = term.read_text() if term.exists() else ""
    return WorkerRun(code, json.loads(raw) if raw else {}, raw)


PlanFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def make_plan(s3: S3Server, s3_bucket: str, request: pytest.FixtureRequest) -> PlanFactory:
    """Plans aimed at this module's bucket; each test gets its own run id."""
    counter = iter(range(1_000_000))
    base_run = request.node.name.lower()
    safe = "".join(c if c.isalnum() else "-" for c in base_run)[:40].strip("-")

    def factory(**fields: Any) -> dict[str, Any]:
        plan: dict[str, Any] = {
            "job": "items",
            "run": f"{safe}-{next(counter)}",
            "source": {"table": "items"},
            "destination": {"bucket": s3_bucket, "prefix": "exports", "endpoint": s3.endpoint_url,
                            "region": s3.region, "pathStyle": True},
        }
        plan.update(fields)
        return plan

    return factory


def manifest_key(plan: dict[str, Any], batch: int = 0) -> str:
    return f"exports/{plan['job']}/{plan['run']}/_manifests/batch-{batch}.json"


def get_json(client: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())  # type: ignore[no-any-return]


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def decompress(raw: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.decompress(raw)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()  # type: ignore[no-any-return]
    return raw


def parse_csv(text: str) -> list[list[str | None]]:
    """RFC 4180 parser that keeps NULL (unquoted empty) apart from "" (quoted empty)."""
    rows: list[list[str | None]] = []
    row: list[str | None] = []
    field: list[str] = []
    quoted = in_quotes = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_quotes:
            if ch == '"' and text[i + 1:i + 2] == '"':
                field.append('"')
                i += 1
            elif ch == '"':
                in_quotes = False
            else:
                field.append(ch)
        elif ch == '"':
            in_quotes = quoted = True
        elif ch in ",\n":
            row.append("".join(field) if field or quoted else None)
            field, quoted = [], False
            if ch == "\n":
                rows.append(row)
                row = []
        else:
            field.append(ch)
        i += 1
    assert not row and not field, "CSV did not end with a newline"
    return rows


def read_files(client: Any, bucket: str, files: list[dict[str, Any]], fmt: str,
               compression: str) -> tuple[list[str] | None, list[Any]]:
    """All records of the committed files, in order; (header, rows) for CSV."""
    header: list[str] | None = None
    records: list[Any] = []
    for entry in files:
        raw = client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
        assert len(raw) == entry["size"]
        if fmt == "parquet":
            table = pq.read_table(io.BytesIO(raw))
            assert table.num_rows == entry["records"]
            records.extend(table.to_pylist())
            continue
        text = decompress(raw, compression).decode()
        if fmt == "jsonl":
            lines = text.splitlines()
            assert len(lines) == entry["records"]
            records.extend(lines)
        else:
            rows = parse_csv(text)
            assert rows, "every CSV file has a header"
            file_header = [str(c) for c in rows[0]]
            assert header is None or header == file_header
            header = file_header
            assert len(rows) - 1 == entry["records"]
            records.extend(rows[1:])
    return header, records

