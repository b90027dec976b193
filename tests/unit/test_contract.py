"""The operator's side and the worker's side of ferry.contract agree.

Each limit is checked where it bites on both sides: the ExportJob model refuses one
more than the limit, and so does the worker's plan parser (the file split: the worker
takes every split the API admits); each exit code the Job spec treats as fatal is one
the worker uses for its fatal failures; the file names the worker writes are those the
CLI and the status URLs use. Every document the two exchange (the plan, the progress
annotation, the termination message) decodes to what was encoded.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import json
from typing import Any

import pytest
from pydantic import ValidationError

from ferry.api.exportjob import ExportJobSpec
from ferry.api.output import MIN_FILE_SPLIT_QUANTITY, MSG_FILE_SPLIT_MIN
from ferry.api.status import HistoryEntry, RunPhase
from ferry.api.units import parse_quantity
from ferry.contract import layout, summary
from ferry.contract import plan as contract_plan
from ferry.contract.exitcodes import FATAL_EXIT_CODES, ExitCode
from ferry.contract.limits import (
    MAX_BATCHES,
    MAX_FILTER_VALUES,
    MAX_FILTERS,
    MAX_IDENTIFIER_BYTES,
    MAX_MESSAGE_CHARACTERS,
    MAX_PREFIX_CHARACTERS,
    MAX_QUERY_CHARACTERS,
    MAX_SELECTED_COLUMNS,
    MAX_SHORT_TEXT_CHARACTERS,
    MIN_FILE_SPLIT_BYTES,
    TERMINATION_MESSAGE_BYTES,
    min_worker_split_bytes,
)
from ferry.contract.progress import Progress, decode_progress, encode_progress
from ferry.contract.report import batch_report
from ferry.reconcile.batches import Slice
from ferry.reconcile.jobspec import Owner, WorkerDefaults, build_job, worker_plan
from ferry.worker import layout as worker_layout
from ferry.worker.errors import ConfigError, DataError, TransientError
from ferry.worker.plan import parse_plan

from .builders import spec

PLAN: dict[str, Any] = {
    "job": "orders", "run": "orders.7", "source": {"table": "orders"}, "format": "csv",
    "destination": {"bucket": "exports"}, "batchCount": 1,
}


def api_accepts(doc: dict[str, Any]) -> bool:
    try:
        ExportJobSpec.model_validate(doc)
    except ValidationError:
        return False
    return True


def worker_accepts(plan: dict[str, Any]) -> bool:
    try:
        parse_plan(plan, {}, batch_index=0)
    except ConfigError:
        return False
    return True


def job_doc(**source: Any) -> dict[str, Any]:
    doc = copy.deepcopy(spec().doc)
    doc["source"].update(source)
    return doc


@pytest.mark.parametrize("count", [MAX_FILTER_VALUES, MAX_FILTER_VALUES + 1])
def test_filter_values_limit_is_the_same_on_both_sides(count: int) -> None:
    values = [f"v{i}" for i in range(count)]
    api = api_accepts(job_doc(filters=[{"column": "kind", "in": values}]))
    worker = worker_accepts({**PLAN, "filters": [{"column": "kind", "op": "in",
                                                  "values": values}]})
    assert api == worker == (count <= MAX_FILTER_VALUES)


@pytest.mark.parametrize("count", [MAX_FILTERS, MAX_FILTERS + 1])
def test_filter_count_limit_is_the_same_on_both_sides(count: int) -> None:
    api = api_accepts(job_doc(filters=[{"column": f"c{i}", "isNull": True}
                                       for i in range(count)]))
    worker = worker_accepts({**PLAN, "filters": [{"column": f"c{i}", "op": "isNull"}
                                                 for i in range(count)]})
    assert api == worker == (count <= MAX_FILTERS)


@pytest.mark.parametrize("count", [MAX_SELECTED_COLUMNS, MAX_SELECTED_COLUMNS + 1])
def test_column_list_limit_is_the_same_on_both_sides(count: int) -> None:
    columns = [f"c{i}" for i in range(count)]
    api = api_accepts(job_doc(columns=columns))
    worker = worker_accepts({**PLAN, "columns": columns})
    assert api == worker == (count <= MAX_SELECTED_COLUMNS)


@pytest.mark.parametrize("length", [MAX_QUERY_CHARACTERS, MAX_QUERY_CHARACTERS + 1])
def test_query_length_limit_is_the_same_on_both_sides(length: int) -> None:
    query = "SELECT 1" + " " * (length - len("SELECT 1"))
    doc = job_doc(query=query)
    del doc["source"]["table"]
    api = api_accepts(doc)
    worker = worker_accepts({**PLAN, "source": {"query": query}})
    assert api == worker == (length <= MAX_QUERY_CHARACTERS)


def test_status_text_limits_are_the_contracts() -> None:
    fields = HistoryEntry.model_json_schema()["properties"]
    assert fields["message"]["anyOf"][0]["maxLength"] == MAX_MESSAGE_CHARACTERS
    assert fields["startedBy"]["anyOf"][0]["maxLength"] == MAX_SHORT_TEXT_CHARACTERS
    assert fields["failedBatches"]["anyOf"][0]["maxItems"] == MAX_BATCHES


def test_the_job_fails_an_index_at_once_exactly_on_the_workers_fatal_exit_codes() -> None:
    job = build_job(Owner("orders", "team-a", "uid"), spec().build(), 1, "orders.1",
                    [Slice(0, 1, None, None)], WorkerDefaults("ferry-worker", "ferry-worker"))
    [fail_index] = [r for r in job["spec"]["podFailurePolicy"]["rules"]
                    if r["action"] == "FailIndex"]
    assert set(fail_index["onExitCodes"]["values"]) == {int(c) for c in FATAL_EXIT_CODES}
    assert {ConfigError.exit_code, DataError.exit_code} == set(FATAL_EXIT_CODES)
    assert TransientError.exit_code == ExitCode.TRANSIENT not in FATAL_EXIT_CODES


def test_the_worker_writes_the_names_readers_look_for() -> None:
    plan = parse_plan({**PLAN, "destination": {"bucket": "exports", "prefix": "p"}},
                      {}, batch_index=0)
    folder = "p/orders/orders.7/"
    assert worker_layout.manifest_key(plan) == folder + layout.manifest_name(0)
    assert worker_layout.manifest_key(plan).startswith(folder + layout.MANIFESTS)
    assert worker_layout.error_key(plan) == folder + layout.error_report_name(0)
    assert worker_layout.error_key(plan).startswith(folder + layout.ERRORS)
    assert worker_layout.run_marker_key(plan) == folder + layout.RUN_MARKER
    entry = HistoryEntry(id="orders.7", number=7, trigger="manual", phase=RunPhase.FAILED)
    assert entry.folder == "orders.7"


# ------------------------------------------------------------------ the file split floor


def output_doc(split: int, fmt: str = "csv") -> dict[str, Any]:
    doc = copy.deepcopy(spec().doc)
    doc["output"].update(fileSplitSize=split, format=fmt)
    return doc


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_the_worker_takes_every_file_split_the_api_admits(fmt: str) -> None:
    """The API's 1Mi is the floor an ExportJob gets; the worker's own floors are lower on
    purpose (contract.limits) and never above it, so no admitted split fails a batch."""
    assert api_accepts(output_doc(MIN_FILE_SPLIT_BYTES, fmt))
    assert not api_accepts(output_doc(MIN_FILE_SPLIT_BYTES - 1, fmt))
    assert worker_accepts({**PLAN, "format": fmt, "fileSplitSize": MIN_FILE_SPLIT_BYTES})
    floor = min_worker_split_bytes(fmt)
    assert floor <= MIN_FILE_SPLIT_BYTES
    assert worker_accepts({**PLAN, "format": fmt, "fileSplitSize": floor})
    assert not worker_accepts({**PLAN, "format": fmt, "fileSplitSize": floor - 1})


def test_the_api_says_its_file_split_floor_as_the_contract_has_it() -> None:
    assert MSG_FILE_SPLIT_MIN.startswith(
        f"fileSplitSize must be at least {MIN_FILE_SPLIT_QUANTITY} ")
    assert parse_quantity(MIN_FILE_SPLIT_QUANTITY) == MIN_FILE_SPLIT_BYTES


@pytest.mark.parametrize("length", [MAX_PREFIX_CHARACTERS, MAX_PREFIX_CHARACTERS + 1])
def test_prefix_length_limit_is_the_same_on_both_sides(length: int) -> None:
    prefix = "/".join(["a" * 99] * 6)[:length - 1] + "b"
    doc = copy.deepcopy(spec().doc)
    doc["output"]["s3"]["prefix"] = prefix
    worker = worker_accepts({**PLAN, "destination": {"bucket": "exports", "prefix": prefix}})
    assert api_accepts(doc) == worker == (length <= MAX_PREFIX_CHARACTERS)


@pytest.mark.parametrize("length", [MAX_IDENTIFIER_BYTES, MAX_IDENTIFIER_BYTES + 1])
def test_identifier_limit_is_the_same_on_both_sides(length: int) -> None:
    column = "c" * length
    api = api_accepts(job_doc(columns=[column]))
    worker = worker_accepts({**PLAN, "columns": [column]})
    assert api == worker == (length <= MAX_IDENTIFIER_BYTES)


def test_the_termination_message_fits_what_the_kubelet_keeps() -> None:
    assert TERMINATION_MESSAGE_BYTES < 4096


# ------------------------------------------------------------------ one encoding each

WINDOW = contract_plan.Window("created_at", dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                              dt.datetime(2026, 1, 2, 6, 30, tzinfo=dt.UTC))
BATCH_PLAN = contract_plan.Plan(
    job="orders", job_uid="0f6c-uid", run="orders.7",
    source=contract_plan.Source(table="orders", schema="public"),
    destination=contract_plan.Destination(bucket="exports", prefix="team-a/x",
                                          endpoint="https://s3.example", region="eu-west-1",
                                          path_style=True),
    format="parquet", compression="zstd", compression_level=3, batch_index=2, batch_count=4,
    columns=("id", "total"),
    filters=(contract_plan.Filter("kind", "in", ("chat", "email")),
             contract_plan.Filter("kind", "notIn", (1, 2.5)),
             contract_plan.Filter("flag", "eq", (True,)),
             contract_plan.Filter("total", "ge", (10,)),
             contract_plan.Filter("note", "isNull"), contract_plan.Filter("note", "notNull")),
    window=WINDOW,
    key_range=contract_plan.KeyRange("id", 0, 1000, include_nulls=True),
    key_partition=contract_plan.KeyPartition("id", 2, 4),
    file_split_size=MIN_FILE_SPLIT_BYTES, totals="estimate",
    reuse_committed_since=dt.datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=dt.UTC),
)


@pytest.mark.parametrize("plan", [
    BATCH_PLAN,
    dataclasses.replace(BATCH_PLAN, compression="gzip", compression_level=9, totals="none"),
    dataclasses.replace(BATCH_PLAN, compression="none", compression_level=0, format="csv",
                        filters=(), columns=(), window=None, key_range=None,
                        key_partition=None, file_split_size=None, totals="count",
                        reuse_committed_since=None, job_uid=None, batch_index=0,
                        batch_count=1),
    dataclasses.replace(BATCH_PLAN, source=contract_plan.Source(query="SELECT 1 AS id"),
                        window=contract_plan.Window("ts", None, WINDOW.end),
                        key_range=contract_plan.KeyRange("k", "a", None, include_nulls=False),
                        destination=contract_plan.Destination("exports", "", None, None, False)),
])
def test_a_batch_plan_round_trips(plan: contract_plan.Plan) -> None:
    text = contract_plan.encode_plan(plan)
    assert contract_plan.decode_plan(json.loads(text), lambda: 0) == plan
    assert parse_plan(json.loads(text), {}) == plan


def test_a_seal_plan_round_trips() -> None:
    plan = dataclasses.replace(BATCH_PLAN, batch_index=0,
                               seal=contract_plan.Seal("orders.9", "PartiallySucceeded"))
    decoded = contract_plan.decode_plan(json.loads(contract_plan.encode_plan(plan)),
                                        lambda: 3, sealing=True)
    assert decoded == plan


def test_each_pod_of_the_operators_job_decodes_its_own_slice() -> None:
    """What jobspec means for completion index i is what pod i reads."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    slices = [Slice(i, 3, start + dt.timedelta(hours=i), start + dt.timedelta(hours=i + 1))
              for i in range(3)]
    slices[0] = Slice(0, 3, None, slices[0].end)
    owner = Owner("orders", "team-a", "uid-1")
    plan = worker_plan(owner, spec().build(), "orders.7", slices, start)
    assert plan.job_uid == "uid-1" and len(plan.slices) == 3
    text = contract_plan.encode_plan(plan)
    for position, piece in enumerate(plan.slices):
        expected = dataclasses.replace(
            plan, slices=(), batch_index=piece.batch_index, window=piece.window,
            key_range=piece.key_range, key_partition=piece.key_partition)
        decoded = contract_plan.decode_plan(json.loads(text), functools.partial(int, position))
        assert decoded == expected
    job = build_job(owner, spec().build(), 7, "orders.7", slices,
                    WorkerDefaults("ferry-worker", "ferry-worker"), start)
    [env] = [e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
             if e["name"] == "FERRY_PLAN"]
    assert env["value"] == text


@pytest.mark.parametrize("progress", [
    Progress(batch=3, phase="Running", records=1200, total=None, bytes=81234, files=1),
    Progress(batch=0, phase="Succeeded", records=5000, total=5000, bytes=9, files=2,
             updated_at="2026-01-01T00:00:02.000Z"),
])
def test_the_progress_annotation_round_trips(progress: Progress) -> None:
    document = json.loads(encode_progress(progress))
    assert decode_progress(document) == progress
    report = batch_report(document)
    assert (report.records, report.total, report.bytes, report.files) == (
        progress.records, progress.total, progress.bytes, progress.files)


FILES = tuple(summary.FileRef(f"team-a/orders/orders.7/orders-1-{i}-5f0c2a9e.csv", 100 + i,
                              "ab" * 32) for i in range(3))
SUMMARIES: list[summary.Summary] = [
    summary.BatchSucceeded(batch=1, records=10, bytes=303, manifest="m.json", files=FILES,
                           file_count=3),
    summary.BatchSucceeded(batch=1, records=10, bytes=303, manifest="m.json", files=FILES,
                           file_count=3, note="batch already committed by attempt 5f0c2a9e"),
    summary.BatchFailed(batch=-1, kind="transient", exit_code=75, reason="S3 unreachable"),
    summary.RunSealed(complete=False, records=20, files=4, bytes=40, marker="r/_run.json",
                      missing=(1,), batches=(
                          summary.SealedBatch(0, 10, 2, 20, "2026-01-01T00:00:00.000Z", None),
                          summary.SealedBatch(2, 10, 2, 20, None, "2026-01-01T00:01:00.000Z"))),
]


@pytest.mark.parametrize("message", SUMMARIES)
def test_a_termination_message_round_trips(message: summary.Summary) -> None:
    assert summary.decode_summary(json.loads(summary.encode_summary(message))) == message


@pytest.mark.parametrize("message", [
    summary.BatchSucceeded(batch=0, records=1, bytes=1, manifest="m", file_count=500,
                           files=FILES * 167),
    summary.BatchFailed(batch=0, kind="config", exit_code=3, reason="bad thing " * 2000),
    summary.RunSealed(complete=False, records=0, files=0, bytes=0, marker="r",
                      missing=tuple(range(1, 1000)), batches=tuple(
                          summary.SealedBatch(0, 1, 1, 1, None, None) for _ in range(200))),
])
def test_a_shortened_termination_message_decodes_as_shortened(message: summary.Summary) -> None:
    text = summary.encode_summary(message)
    assert len(text.encode()) <= TERMINATION_MESSAGE_BYTES
    shortened = summary.fitted(message)
    assert shortened != message
    assert summary.decode_summary(json.loads(text)) == shortened


def test_the_operator_counts_a_batch_from_its_message_as_the_worker_wrote_it() -> None:
    files = FILES * 167
    text = summary.encode_summary(summary.BatchSucceeded(
        batch=0, records=7, bytes=9, manifest="m", files=files, file_count=len(files)))
    report = batch_report(json.loads(text))
    assert (report.records, report.bytes, report.files) == (7, 9, len(files))
    failed = batch_report(json.loads(summary.encode_summary(SUMMARIES[2])))
    assert (failed.reason, failed.kind) == ("S3 unreachable", "transient")


@pytest.mark.parametrize(("bucket", "endpoint"), [
    ("exports", "https://s3.example:9000/base"), ("a.b-c", None), ("Bad_Bucket", None),
    ("ab", None), ("a" * 64, None), ("exports", "http://user:pw@s3.example"),
    ("exports", "ftp://s3.example"), ("exports\n", None), ("exports", "https://s3\n"),
])
def test_bucket_and_endpoint_rules_are_the_same_on_both_sides(bucket: str,
                                                              endpoint: str | None) -> None:
    doc = copy.deepcopy(spec().doc)
    doc["output"]["s3"].update(bucket=bucket, **({"endpoint": endpoint} if endpoint else {}))
    destination = {"bucket": bucket, **({"endpoint": endpoint} if endpoint else {})}
    assert api_accepts(doc) == worker_accepts({**PLAN, "destination": destination})
