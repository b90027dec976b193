"""The import plan: a full plan round-trips, every bad field is named, batches share."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ferry.contract.importplan import (
    ColumnMapping,
    CsvOptions,
    ErrorsLocation,
    FromExport,
    ImportDestination,
    ImportPlan,
    MaxErrors,
    S3Connection,
    S3Files,
    Table,
    audit_log_name,
    batch_share,
    decode_import_plan,
    encode_import_plan,
)
from ferry.contract.plan import PlanError
from ferry.contract.progress import Progress, decode_progress, encode_progress
from ferry.contract.report import batch_report
from ferry.contract.summary import (
    BatchImported,
    decode_summary,
    encode_summary,
    json_object,
)
from ferry.worker.errors import ConfigError
from ferry.worker.plan import load_import_plan

BASE: dict[str, Any] = {
    "job": "contacts", "namespace": "team-a", "jobUid": "0a1b-2c", "run": "contacts.4",
    "batchCount": 3, "batchIndex": 1,
    "source": {"s3": {"bucket": "landing", "prefix": "in/contacts", "glob": "*.csv.gz"},
               "endpoint": "http://minio:9000", "region": "eu-west-1", "pathStyle": True},
    "format": {"type": "csv", "header": True, "delimiter": ";", "quote": "'",
               "nullString": "NULL"},
    "destination": {"table": "crm.contacts", "columns": [{"name": "id", "from": "ID"}],
                    "unknownColumns": "Ignore", "missingColumns": "Default"},
    "mode": "Merge", "keyColumns": ["id"], "newFilesOnly": True, "maxErrors": "2.5%",
    "errors": {"bucket": "audit", "prefix": "imports"},
}


def decode(doc: dict[str, Any], index: int = 0) -> ImportPlan:
    return decode_import_plan(doc, lambda: index)


def changed(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[part]
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


def test_a_full_plan_decodes_and_round_trips() -> None:
    plan = decode(BASE)
    assert plan == ImportPlan(
        job="contacts", namespace="team-a", job_uid="0a1b-2c", run="contacts.4",
        batch_index=1, batch_count=3,
        connection=S3Connection("http://minio:9000", "eu-west-1", True),
        files=S3Files("landing", "in/contacts", "*.csv.gz"), format="csv",
        csv=CsvOptions(True, ";", "'", "NULL"),
        destination=ImportDestination(Table("contacts", "crm"), (ColumnMapping("id", "ID"),),
                                      "Ignore", "Default"),
        mode="Merge", key_columns=("id",), new_files_only=True,
        max_errors=MaxErrors(count=None, percent=2.5),
        errors=ErrorsLocation("audit", "imports"))
    assert decode(json.loads(encode_import_plan(plan))) == plan


def test_defaults_and_from_export() -> None:
    plan = decode({"job": "j", "namespace": "ns", "run": "j.1",
                   "source": {"fromExport": {"bucket": "exports", "prefix": "team",
                                             "runFolder": "orders/orders.42"}},
                   "destination": {"table": "orders"}}, index=0)
    assert plan.from_export == FromExport("exports", "team", "orders/orders.42")
    assert (plan.format, plan.mode, plan.csv, plan.max_errors) == (
        "csv", "Append", CsvOptions(), MaxErrors())
    assert plan.destination == ImportDestination(Table("orders"))
    assert decode(json.loads(encode_import_plan(plan))) == plan
    assert decode({**BASE, "format": "parquet"}).format == "parquet"


def test_the_completion_index_and_a_retry_s_batch_indexes() -> None:
    doc = changed("batchIndex", None)
    assert decode(doc, index=2).batch_index == 2
    retry = {**doc, "batchIndexes": [0, 2]}
    assert decode(retry, index=1).batch_index == 2
    assert decode(json.loads(encode_import_plan(decode(retry, 1)))).batch_index == 2


@pytest.mark.parametrize(("path", "value", "field", "says"), [
    ("job", "Bad_Name", "plan.job", "DNS label"),
    ("namespace", None, "plan.namespace", "is required"),
    ("run", "a/b", "plan.run", "must match"),
    ("batchIndex", 3, "plan.batchIndex", "not below batchCount"),
    ("batchCount", 0, "plan.batchCount", "1-1000"),
    ("source.s3", None, "plan.source", "exactly one of s3 or fromExport"),
    ("source.fromExport", {"bucket": "b1b", "runFolder": "x/y"}, "plan.source",
     "exactly one"),
    ("source.s3.bucket", "Not_A_Bucket", "plan.source.s3.bucket", "not a valid S3 bucket"),
    ("source.s3.prefix", "a/../b", "plan.source.s3.prefix", "not allowed"),
    ("source.endpoint", "http://user:pw@host", "plan.source.endpoint", "without credentials"),
    ("source.s3.glob", "a\nb", "plan.source.s3.glob", "control characters"),
    ("format.type", "xml", "plan.format.type", "one of csv, jsonl, parquet"),
    ("format.delimiter", ";;", "plan.format.delimiter", "one character"),
    ("format.quote", ";", "plan.format.quote", "differ from the delimiter"),
    ("destination.table", "a.b.c", "plan.destination.table", "schema.table"),
    ("destination.table", "x" * 64, "plan.destination.table", "longer than 63"),
    ("destination.unknownColumns", "Drop", "plan.destination.unknownColumns", "Refuse, Ignore"),
    ("destination.columns", [{"name": "a"}, {"name": "a"}], "plan.destination.columns",
     "twice"),
    ("mode", "Upsert", "plan.mode", "Append, Merge, Overwrite"),
    ("keyColumns", None, "plan.keyColumns", "required with mode Merge"),
    ("keyColumns", ["email"], "plan.keyColumns", "not in destination.columns"),
    ("maxErrors", "150%", "plan.maxErrors", "percentage"),
    ("maxErrors", True, "plan.maxErrors", "a count"),
    ("errors", {"bucket": "b"}, "plan.errors.bucket", "not a valid S3 bucket"),
    ("extra", 1, "plan.extra", "unknown field"),
])
def test_each_bad_field_is_named(path: str, value: Any, field: str, says: str) -> None:
    with pytest.raises(PlanError) as caught:
        decode(changed(path, value))
    assert caught.value.path == field
    assert says in caught.value.message


def test_mode_rules() -> None:
    overwrite = {**BASE, "mode": "Overwrite", "keyColumns": [], "newFilesOnly": False}
    with pytest.raises(PlanError, match=r"plan.batchCount: must be 1 with mode Overwrite"):
        decode(overwrite)
    with pytest.raises(PlanError, match=r"plan.newFilesOnly: cannot be combined"):
        decode({**overwrite, "batchCount": 1, "batchIndex": 0, "newFilesOnly": True})
    with pytest.raises(PlanError, match=r"plan.keyColumns: only with mode Merge"):
        decode({**BASE, "mode": "Append"})


def test_max_errors_counts_or_percentages() -> None:
    assert not MaxErrors().exceeded(0, 10)
    assert MaxErrors().exceeded(1, 10)
    assert not MaxErrors(count=3).exceeded(3, 10)
    assert MaxErrors(count=None, percent=10).exceeded(2, 19)
    assert not MaxErrors(count=None, percent=10).exceeded(2, 20)


def test_batch_share_is_a_deterministic_partition() -> None:
    keys = [f"k{i:02}" for i in range(10)]
    shares = [batch_share(keys, i, 3) for i in range(3)]
    assert sorted(k for share in shares for k in share) == keys
    assert shares[0] == ["k00", "k03", "k06", "k09"]
    assert batch_share(keys, 5, 20) == ["k05"]
    assert audit_log_name(4) == "_rejects/batch-4.jsonl.gz"


def test_the_worker_reads_it_from_the_environment() -> None:
    plan = load_import_plan({"FERRY_PLAN": json.dumps(changed("batchIndex", None)),
                             "JOB_COMPLETION_INDEX": "2"})
    assert plan.batch_index == 2
    with pytest.raises(ConfigError, match=r"plan\.mode"):
        load_import_plan({"FERRY_PLAN": json.dumps(changed("mode", "x"))})


def test_the_termination_message_and_progress_of_an_import() -> None:
    summary = BatchImported(batch=2, records=990, rejected=10, bytes=4096, file_count=3,
                            files_skipped=1, audit_log="imports/c/c.4/_rejects/batch-2.jsonl.gz",
                            note="1 file(s) loaded by an earlier attempt of this run")
    text = encode_summary(summary)
    assert json.loads(text)["status"] == "Imported"
    assert decode_summary(json_object(text)) == summary
    report = batch_report(json_object(text))
    assert (report.records, report.bytes, report.files) == (990, 4096, 3)
    progress = Progress(batch=2, phase="Running", records=5, total=50, bytes=1, files=0,
                        rejected=1)
    assert decode_progress(json.loads(encode_progress(progress))) == progress
    export = Progress(batch=0, phase="Running", records=5, total=None, bytes=1, files=0)
    assert "rejected" not in encode_progress(export)
