"""The ferry.dev API against a real kube-apiserver: what a user sees on kubectl apply.

Every example is accepted; each invalid manifest is rejected with the exact message
that names the field and the rule; kubectl explain shows the model docs; a
server-side re-apply changes nothing; a started one-time job's spec is frozen.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRD_NAMES = ["exportjobs.ferry.dev", "importjobs.ferry.dev", "jobgroups.ferry.dev"]

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
DELETE = object()

EXPORTJOB: dict[str, Any] = {
    "apiVersion": "ferry.dev/v1alpha1",
    "kind": "ExportJob",
    "metadata": {"name": "orders"},
    "spec": {
        "title": "Orders",
        "source": {
            "type": "postgres",
            "connectionSecretRef": {"name": "warehouse-db", "key": "uri"},
            "table": "sales.orders",
        },
        "output": {"s3": {"bucket": "exports"}},
    },
}
JOBGROUP: dict[str, Any] = {
    "apiVersion": "ferry.dev/v1alpha1",
    "kind": "JobGroup",
    "metadata": {"name": "nightly"},
    "spec": {"title": "Nightly", "members": ["orders", "customers"]},
}
IMPORTJOB: dict[str, Any] = {
    "apiVersion": "ferry.dev/v1alpha1",
    "kind": "ImportJob",
    "metadata": {"name": "contacts-load"},
    "spec": {
        "title": "Contacts",
        "source": {"s3": {"bucket": "landing", "prefix": "partner/lists/"}},
        "format": "csv",
        "destination": {
            "type": "postgres",
            "connectionSecretRef": {"name": "crm-db", "key": "uri"},
            "table": "public.contacts",
        },
    },
}
TS = {"spec.source.timestampColumn": "created_at"}
MERGE = {"spec.mode": "Merge", "spec.keyColumns": ["id"]}
NOT_CHECKED = (
    "<nil>: Invalid value: null: some validation rules were not checked because the object "
    "was invalid; correct the existing errors to complete validation"
)


@dataclass(frozen=True)
class Invalid:
    """A manifest (a base plus changes at dotted paths) and the error line a user sees."""

    id: str
    changes: dict[str, Any]
    expected: str
    base: dict[str, Any] = field(default_factory=lambda: EXPORTJOB)

    def manifest(self) -> dict[str, Any]:
        doc = copy.deepcopy(self.base)
        for path, value in self.changes.items():
            *parents, leaf = path.split(".")
            node = doc
            for part in parents:
                node = node.setdefault(part, {})
            if value is DELETE:
                node.pop(leaf, None)
            else:
                node[leaf] = value
        return doc


def _pattern(path: str, value: str, regex: str) -> str:
    return f"{path}: Invalid value: \"{value}\": {path} in body should match '{regex}'"


def _bound(path: str, value: int, rule: str) -> str:
    return f"{path}: Invalid value: {value}: {path} in body should be {rule}"


def _daily(**extra: Any) -> dict[str, Any]:
    return {"daily": {"at": "02:00"}, **extra}


INVALID = [
    Invalid("title-missing", {"spec.title": DELETE}, "spec.title: Required value"),
    Invalid(
        "title-empty",
        {"spec.title": ""},
        'spec.title: Invalid value: "": spec.title in body should be at least 1 chars long',
    ),
    Invalid(
        "source-table-and-query",
        {"spec.source.query": "SELECT 1"},
        "spec.source: Invalid value: set exactly one of table or query",
    ),
    Invalid(
        "source-neither-table-nor-query",
        {"spec.source.table": DELETE},
        "spec.source: Invalid value: set exactly one of table or query",
    ),
    Invalid(
        "source-type",
        {"spec.source.type": "mysql"},
        'spec.source.type: Unsupported value: "mysql": supported values: "postgres"',
    ),
    Invalid(
        "table-is-an-identifier",
        {"spec.source.table": "orders; DROP TABLE x"},
        _pattern(
            "spec.source.table",
            "orders; DROP TABLE x",
            r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
        ),
    ),
    Invalid(
        "secret-ref-needs-key",
        {"spec.source.connectionSecretRef": {"name": "warehouse-db"}},
        "spec.source.connectionSecretRef.key: Required value",
    ),
    Invalid(
        "filter-two-operators",
        {"spec.source.filters": [{"column": "region", "equals": "eu", "in": ["us"]}]},
        "spec.source.filters[0]: Invalid value: "
        "set exactly one of in, notIn, equals or isNull in each filter",
    ),
    Invalid(
        "filter-no-operator",
        {"spec.source.filters": [{"column": "region"}]},
        "spec.source.filters[0]: Invalid value: "
        "set exactly one of in, notIn, equals or isNull in each filter",
    ),
    Invalid(
        "filter-column-is-an-identifier",
        {"spec.source.filters": [{"column": "media type", "equals": "chat"}]},
        _pattern("spec.source.filters[0].column", "media type", "^[A-Za-z_][A-Za-z0-9_]*$"),
    ),
    Invalid(
        "filter-in-empty",
        {"spec.source.filters": [{"column": "media_type", "in": []}]},
        "spec.source.filters[0].in: Invalid value: 0: "
        "spec.source.filters[0].in in body should have at least 1 items",
    ),
    Invalid(
        "columns-unique",
        {"spec.source.columns": ["id", "id"]},
        '.spec.source.columns: duplicate entries for key [="id"]',
    ),
    Invalid(
        "timeframe-two-kinds",
        {"spec.timeframe": {"all": {}, "relative": {"last": "4h"}}, **TS},
        "spec.timeframe: Invalid value: set exactly one of all, fixed, relative or incremental",
    ),
    Invalid(
        "timeframe-fixed-end-before-start",
        {
            "spec.timeframe": {
                "fixed": {"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}
            },
            **TS,
        },
        "spec.timeframe.fixed.end: Invalid value: "
        "end must be later than start: the window is [start, end)",
    ),
    Invalid(
        "timeframe-relative-duration-syntax",
        {"spec.timeframe": {"relative": {"last": "4 hours"}}, **TS},
        _pattern("spec.timeframe.relative.last", "4 hours", "^([0-9]{1,6}[wdhms]){1,5}$"),
    ),
    Invalid(
        "timeframe-relative-zero",
        {"spec.timeframe": {"relative": {"last": "0h"}}, **TS},
        "spec.timeframe.relative.last: Invalid value: "
        "last must be greater than zero, e.g. 4h, 90m or 1d",
    ),
    Invalid(
        "timeframe-needs-timestamp-column",
        {"spec.timeframe": {"incremental": {}}},
        "spec.source.timestampColumn: Invalid value: spec.source.timestampColumn is required "
        "by a fixed, relative or incremental spec.timeframe: set it, or use timeframe.all",
    ),
    Invalid(
        "schedule-two-kinds",
        {"spec.schedule": {"hourly": {}, "daily": {"at": "02:00"}}},
        "spec.schedule: Invalid value: "
        "set exactly one of once, hourly, daily, weekly, monthly or cron",
    ),
    Invalid(
        "schedule-no-kind",
        {"spec.schedule": {"timeZone": "UTC"}},
        "spec.schedule: Invalid value: "
        "set exactly one of once, hourly, daily, weekly, monthly or cron",
    ),
    Invalid(
        "hourly-every-24",
        {"spec.schedule": {"hourly": {"every": 24}}},
        _bound("spec.schedule.hourly.every", 24, "less than or equal to 23"),
    ),
    Invalid(
        "hourly-every-0",
        {"spec.schedule": {"hourly": {"every": 0}}},
        _bound("spec.schedule.hourly.every", 0, "greater than or equal to 1"),
    ),
    Invalid(
        "hourly-minute-60",
        {"spec.schedule": {"hourly": {"minute": 60}}},
        _bound("spec.schedule.hourly.minute", 60, "less than or equal to 59"),
    ),
    Invalid(
        "daily-at-24h",
        {"spec.schedule": {"daily": {"at": "24:00"}}},
        _pattern("spec.schedule.daily.at", "24:00", "^([01][0-9]|2[0-3]):[0-5][0-9]$"),
    ),
    Invalid(
        "daily-at-not-hh-mm",
        {"spec.schedule": {"daily": {"at": "2:30"}}},
        _pattern("spec.schedule.daily.at", "2:30", "^([01][0-9]|2[0-3]):[0-5][0-9]$"),
    ),
    Invalid(
        "weekly-day",
        {"spec.schedule": {"weekly": {"day": "Funday", "at": "02:00"}}},
        'spec.schedule.weekly.day: Unsupported value: "Funday": supported values: "Monday", '
        '"Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"',
    ),
    Invalid(
        "monthly-day-32",
        {"spec.schedule": {"monthly": {"day": 32, "at": "02:00"}}},
        _bound("spec.schedule.monthly.day", 32, "less than or equal to 31"),
    ),
    Invalid(
        "cron-shape",
        {"spec.schedule": {"cron": {"expression": "every day"}}},
        _pattern(
            "spec.schedule.cron.expression",
            "every day",
            r"^(@(yearly|annually|monthly|weekly|daily|hourly)|\S+(\s+\S+){4})$",
        ),
    ),
    Invalid(
        "time-zone-shape",
        {"spec.schedule": _daily(timeZone="Europe Berlin")},
        _pattern(
            "spec.schedule.timeZone",
            "Europe Berlin",
            r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}$",
        ),
    ),
    Invalid(
        "time-zone-empty",
        {"spec.schedule": _daily(timeZone="")},
        'spec.schedule.timeZone: Invalid value: "": '
        "spec.schedule.timeZone in body should be at least 1 chars long",
    ),
    Invalid(
        "missed-run-policy",
        {"spec.schedule": _daily(missedRunPolicy="Sometimes")},
        'spec.schedule.missedRunPolicy: Unsupported value: "Sometimes": '
        'supported values: "Skip", "Latest", "All"',
    ),
    Invalid(
        "max-catch-up-needs-all",
        {"spec.schedule": _daily(maxCatchUp=3)},
        "spec.schedule.maxCatchUp: Invalid value: spec.schedule.maxCatchUp only applies when "
        "missedRunPolicy is All: remove it or set missedRunPolicy: All",
    ),
    Invalid(
        "hourly-refuses-a-time-zone",
        {"spec.schedule": {"hourly": {"every": 4}, "timeZone": "Europe/Berlin"}},
        "spec.schedule.timeZone: Invalid value: spec.schedule.timeZone does not apply to "
        "hourly: its hours are counted from 00:00 UTC (every: 4 runs at 00, 04, 08, 12, 16 "
        'and 20 UTC); remove timeZone, or for wall-clock hours in a zone use cron (e.g. '
        'expression: \"15 */4 * * *\" with timeZone)',
    ),
    Invalid(
        "once-at-needs-offset",
        {"spec.schedule": {"once": {"at": "2030-01-01T02:00:00"}}},
        'spec.schedule.once.at: Invalid value: "2030-01-01T02:00:00": '
        'spec.schedule.once.at in body must be of type date-time: "2030-01-01T02:00:00"',
    ),
    Invalid(
        "file-split-size-below-1Mi",
        {"spec.output.fileSplitSize": "512Ki"},
        'spec.output.fileSplitSize: Invalid value: "512Ki": '
        "fileSplitSize must be at least 1Mi (a Kubernetes quantity such as 1024Mi)",
    ),
    Invalid(
        "file-split-size-integer-below-1Mi",
        {"spec.output.fileSplitSize": 1000},
        "spec.output.fileSplitSize: Invalid value: 1000: "
        "fileSplitSize must be at least 1Mi (a Kubernetes quantity such as 1024Mi)",
    ),
    Invalid(
        "format",
        {"spec.output.format": "xml"},
        'spec.output.format: Unsupported value: "xml": supported values: "csv", "jsonl", "parquet"',
    ),
    Invalid(
        "compression",
        {"spec.output.compression": "bzip2"},
        'spec.output.compression: Unsupported value: "bzip2": '
        'supported values: "none", "gzip", "zstd"',
    ),
    Invalid(
        "bucket-name",
        {"spec.output.s3.bucket": "My_Bucket"},
        _pattern("spec.output.s3.bucket", "My_Bucket", "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
    ),
    Invalid(
        "bucket-adjacent-periods",
        {"spec.output.s3.bucket": "team..exports"},
        "spec.output.s3.bucket: Invalid value: bucket must not contain two adjacent "
        "periods (S3 bucket naming rules): rename it, e.g. my.bucket instead of my..bucket",
    ),
    Invalid(
        "endpoint-needs-scheme",
        {"spec.output.s3.endpoint": "minio:9000"},
        _pattern("spec.output.s3.endpoint", "minio:9000", r"^https?://[^\s/@]+(/\S*)?$"),
    ),
    Invalid(
        "batching-batches-and-rows",
        {"spec.batching": {"batches": 2, "rowsPerBatch": 10}, "spec.source.keyColumn": "id"},
        "spec.batching: Invalid value: set at most one of batches or rowsPerBatch",
    ),
    Invalid(
        "rows-per-batch-needs-key-column",
        {"spec.batching": {"rowsPerBatch": 10}},
        "spec.source.keyColumn: Invalid value: spec.source.keyColumn is required by "
        "spec.batching.rowsPerBatch (batches are key ranges)",
    ),
    Invalid(
        "batches-need-a-column",
        {"spec.batching": {"batches": 4}},
        "spec.batching.batches: Invalid value: spec.batching.batches > 1 needs "
        "spec.source.keyColumn or spec.source.timestampColumn to split the data on",
    ),
    Invalid(
        "parallelism-0",
        {"spec.batching": {"parallelism": 0}},
        _bound("spec.batching.parallelism", 0, "greater than or equal to 1"),
    ),
    Invalid(
        "history-limit-101",
        {"spec.historyLimit": 101},
        _bound("spec.historyLimit", 101, "less than or equal to 100"),
    ),
    Invalid(
        "history-limit-0",
        {"spec.historyLimit": 0},
        _bound("spec.historyLimit", 0, "greater than or equal to 1"),
    ),
    Invalid(
        "concurrency-policy",
        {"spec.concurrency": {"policy": "Replace"}},
        'spec.concurrency.policy: Unsupported value: "Replace": '
        'supported values: "Queue", "Forbid"',
    ),
    Invalid(
        "expires-at-date-time",
        {"spec.expiresAt": "tomorrow"},
        'spec.expiresAt: Invalid value: "tomorrow": '
        'spec.expiresAt in body must be of type date-time: "tomorrow"',
    ),
    Invalid(
        "toleration-seconds-needs-no-execute",
        {"spec.worker": {"tolerations": [{"key": "k", "operator": "Exists",
                                          "effect": "NoSchedule", "tolerationSeconds": 60}]}},
        "spec.worker.tolerations[0].tolerationSeconds: Invalid value: "
        "tolerationSeconds only applies to effect NoExecute",
    ),
    Invalid(
        "table-identifier-over-63-characters",
        {"spec.source.table": "s." + "t" * 64},
        f'spec.source.table: Invalid value: "s.{"t" * 64}": schema and table name may each '
        "have at most 63 characters (PostgreSQL's identifier limit)",
    ),
    Invalid(
        "toleration-exists-with-value",
        {"spec.worker": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
        "spec.worker.tolerations[0].value: Invalid value: "
        "a toleration with operator Exists must not set value",
    ),
    Invalid(
        "name-too-long",
        {"metadata.name": "a" * 53},
        f'metadata.name: Invalid value: "{"a" * 53}": must be a DNS-1123 label (lowercase '
        "letters, digits, '-') of at most 52 characters, because run ids <name>.<n> and Job "
        "names derive from it",
    ),
    Invalid(
        "group-members-empty",
        {"spec.members": []},
        "spec.members: Invalid value: 0: spec.members in body should have at least 1 items",
        JOBGROUP,
    ),
    Invalid(
        "group-members-unique",
        {"spec.members": ["orders", "orders"]},
        '.spec.members: duplicate entries for key [="orders"]',
        JOBGROUP,
    ),
    Invalid(
        "group-member-name",
        {"spec.members": ["Bad_Name"]},
        _pattern("spec.members[0]", "Bad_Name", "^(importjob/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        JOBGROUP,
    ),
    Invalid(
        "output-s3-and-sftp",
        {"spec.output.sftp": {"host": "sftp.example", "directory": "/in",
                              "credentialsSecretRef": {"name": "s", "privateKeyKey": "k"}}},
        "spec.output: Invalid value: set exactly one of spec.output.s3 and spec.output.sftp",
    ),
    Invalid(
        "sftp-key-and-password",
        {"spec.output.s3": DELETE,
         "spec.output.sftp": {"host": "sftp.example", "directory": "/in",
                              "credentialsSecretRef": {"name": "s", "privateKeyKey": "k",
                                                       "passwordKey": "p"}}},
        "spec.output.sftp.credentialsSecretRef: Invalid value: set exactly one of "
        "privateKeyKey and passwordKey (the Secret key holding the private key, or the "
        "password)",
    ),
    Invalid(
        "group-member-name-length",
        {"spec.members": ["a" * 53]},
        f'spec.members[0]: Invalid value: "{"a" * 53}": a member is an ExportJob\'s name or '
        "importjob/<name>, the name at most 52 characters",
        JOBGROUP,
    ),
    Invalid(
        "group-failure-policy",
        {"spec.failurePolicy": "Retry"},
        'spec.failurePolicy: Unsupported value: "Retry": '
        'supported values: "StopOnFailure", "Continue"',
        JOBGROUP,
    ),
    Invalid(
        "group-schedule-shared-rules",
        {"spec.schedule": {"monthly": {"day": 0, "at": "01:00"}}},
        _bound("spec.schedule.monthly.day", 0, "greater than or equal to 1"),
        JOBGROUP,
    ),
    Invalid(
        "import-source-neither",
        {"spec.source": {}},
        "spec.source: Invalid value: set exactly one of s3 or fromExport",
        IMPORTJOB,
    ),
    Invalid(
        "import-source-both",
        {"spec.source.fromExport": {"name": "contact-history"}},
        "spec.source: Invalid value: set exactly one of s3 or fromExport",
        IMPORTJOB,
    ),
    Invalid(
        "import-glob-leading-slash",
        {"spec.source.s3.glob": "/partner/*.csv"},
        "spec.source.s3.glob: Invalid value: glob is matched against keys relative to "
        "prefix, which never start with /: remove the leading /",
        IMPORTJOB,
    ),
    Invalid(
        "import-source-bucket-adjacent-periods",
        {"spec.source.s3.bucket": "team..landing"},
        "spec.source.s3.bucket: Invalid value: bucket must not contain two adjacent "
        "periods (S3 bucket naming rules): rename it, e.g. my.bucket instead of my..bucket",
        IMPORTJOB,
    ),
    Invalid(
        "import-from-export-run-of-another-job",
        {"spec.source": {"fromExport": {"name": "contact-history", "run": "orders.3"}}},
        "spec.source.fromExport.run: Invalid value: fromExport.run must be a run of "
        "fromExport.name: <name>.<n>, e.g. contact-history.42",
        IMPORTJOB,
    ),
    Invalid(
        "import-format-required",
        {"spec.format": DELETE},
        "spec.format: Required value",
        IMPORTJOB,
    ),
    Invalid(
        "import-format",
        {"spec.format": "xml"},
        'spec.format: Unsupported value: "xml": supported values: "csv", "jsonl", "parquet"',
        IMPORTJOB,
    ),
    Invalid(
        "import-csv-options-need-csv",
        {"spec.format": "parquet", "spec.csv": {"header": False}},
        "spec.csv: Invalid value: spec.csv applies only to format csv: remove it, or set "
        "format: csv",
        IMPORTJOB,
    ),
    Invalid(
        "import-csv-quote-is-delimiter",
        {"spec.csv": {"delimiter": "'", "quote": "'"}},
        "spec.csv.quote: Invalid value: csv.delimiter and csv.quote must be different "
        "characters",
        IMPORTJOB,
    ),
    Invalid(
        "import-csv-quote-not-ascii",
        {"spec.csv": {"quote": "é"}},
        _pattern("spec.csv.quote", "é", r"^[\t -\[\]-~]$"),
        IMPORTJOB,
    ),
    Invalid(
        "import-table-is-an-identifier",
        {"spec.destination.table": "contacts; DROP TABLE x"},
        _pattern(
            "spec.destination.table",
            "contacts; DROP TABLE x",
            r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
        ),
        IMPORTJOB,
    ),
    Invalid(
        "import-table-identifier-over-63-characters",
        {"spec.destination.table": "s." + "t" * 64},
        f'spec.destination.table: Invalid value: "s.{"t" * 64}": schema and table name may '
        "each have at most 63 characters (PostgreSQL's identifier limit)",
        IMPORTJOB,
    ),
    Invalid(
        "import-column-name-is-an-identifier",
        {"spec.destination.columns": [{"name": "e-mail", "from": "E-Mail"}]},
        _pattern("spec.destination.columns[0].name", "e-mail", "^[A-Za-z_][A-Za-z0-9_]*$"),
        IMPORTJOB,
    ),
    Invalid(
        "import-columns-unique",
        {"spec.destination.columns": [{"name": "id"}, {"name": "id", "from": "ID"}]},
        '.spec.destination.columns: duplicate entries for key [name="id"]',
        IMPORTJOB,
    ),
    Invalid(
        "import-file-column-read-twice",
        {"spec.destination.columns": [{"name": "id", "from": "ID"},
                                      {"name": "code", "from": "ID"}]},
        "spec.destination.columns: Invalid value: each file column fills one table column: "
        "spec.destination.columns[].from (name when from is absent) must be unique",
        IMPORTJOB,
    ),
    Invalid(
        "import-csv-delimiter-backslash",
        {"spec.csv": {"delimiter": "\\"}},
        'spec.csv.delimiter: Invalid value: "\\\\": spec.csv.delimiter in body should match '
        "'^[\\t -\\[\\]-~]$'",
        IMPORTJOB,
    ),
    Invalid(
        "import-unknown-columns",
        {"spec.destination.unknownColumns": "Keep"},
        'spec.destination.unknownColumns: Unsupported value: "Keep": '
        'supported values: "Refuse", "Ignore"',
        IMPORTJOB,
    ),
    Invalid(
        "import-missing-columns",
        {"spec.destination.missingColumns": "Null"},
        'spec.destination.missingColumns: Unsupported value: "Null": '
        'supported values: "Refuse", "Default"',
        IMPORTJOB,
    ),
    Invalid(
        "import-mode",
        {"spec.mode": "Upsert"},
        'spec.mode: Unsupported value: "Upsert": supported values: "Append", "Merge", '
        '"Overwrite"',
        IMPORTJOB,
    ),
    Invalid(
        "import-merge-needs-key-columns",
        {"spec.mode": "Merge"},
        "spec.keyColumns: Invalid value: spec.keyColumns is required by mode Merge: rows "
        "whose key columns match are updated, the others inserted",
        IMPORTJOB,
    ),
    Invalid(
        "import-key-columns-need-merge",
        {"spec.keyColumns": ["id"]},
        "spec.keyColumns: Invalid value: spec.keyColumns applies only to mode Merge: remove "
        "it, or set mode: Merge",
        IMPORTJOB,
    ),
    Invalid(
        "import-key-columns-unique",
        {**MERGE, "spec.keyColumns": ["id", "id"]},
        '.spec.keyColumns: duplicate entries for key [="id"]',
        IMPORTJOB,
    ),
    Invalid(
        "import-key-columns-must-be-mapped",
        {**MERGE, "spec.destination.columns": [{"name": "email"}]},
        "spec.keyColumns: Invalid value: every spec.keyColumns entry must be a "
        "spec.destination.columns[].name: a merge matches rows on loaded columns",
        IMPORTJOB,
    ),
    Invalid(
        "import-overwrite-one-batch",
        {"spec.mode": "Overwrite", "spec.batching": {"batches": 2}},
        "spec.batching.batches: Invalid value: spec.batching.batches must be 1 with mode "
        "Overwrite: the table's contents are replaced in one transaction",
        IMPORTJOB,
    ),
    Invalid(
        "import-overwrite-not-new-files-only",
        {"spec.mode": "Overwrite", "spec.newFilesOnly": True},
        "spec.newFilesOnly: Invalid value: spec.newFilesOnly cannot be combined with mode "
        "Overwrite: the table would be replaced by the new files alone",
        IMPORTJOB,
    ),
    Invalid(
        "import-max-errors-negative",
        {"spec.maxErrors": -1},
        "spec.maxErrors: Invalid value: -1: maxErrors must be a number of rows (0 or more) "
        "or a percentage of a batch's rows from 0% to 100%, e.g. 2% or 0.5%",
        IMPORTJOB,
    ),
    Invalid(
        "import-max-errors-over-100-percent",
        {"spec.maxErrors": "101%"},
        'spec.maxErrors: Invalid value: "101%": maxErrors must be a number of rows (0 or '
        "more) or a percentage of a batch's rows from 0% to 100%, e.g. 2% or 0.5%",
        IMPORTJOB,
    ),
    Invalid(
        "import-errors-needs-s3",
        {"spec.errors": {}},
        "spec.errors.s3: Required value",
        IMPORTJOB,
    ),
    Invalid(
        "import-batches-over-1000",
        {"spec.batching": {"batches": 1001}},
        _bound("spec.batching.batches", 1001, "less than or equal to 1000"),
        IMPORTJOB,
    ),
    Invalid(
        "import-schedule-shared-rules",
        {"spec.schedule": {"hourly": {"every": 4}, "timeZone": "Europe/Berlin"}},
        "spec.schedule.timeZone: Invalid value: spec.schedule.timeZone does not apply to "
        "hourly",
        IMPORTJOB,
    ),
    Invalid(
        "import-name-too-long",
        {"metadata.name": "a" * 53},
        f'metadata.name: Invalid value: "{"a" * 53}": must be a DNS-1123 label',
        IMPORTJOB,
    ),
]


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    """The CRDs from crds/ installed and established."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in CRD_NAMES]
    )


def _apply(
    kubectl: Kubectl, namespace: str, manifest: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", *extra, input=manifest, check=False
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted(path: Path, kubectl: Kubectl, namespace: str, crds: None) -> None:
    result = _apply(kubectl, namespace, path.read_text(), "--dry-run=server")
    assert result.returncode == 0, result.stderr
    assert "serverside-applied (server dry run)" in result.stdout


def cel_messages(node: Any) -> set[str]:
    """Every CEL rule's message in a CRD schema."""
    found: set[str] = set()
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations") or []:
            found.add(rule["message"])
        for value in node.values():
            found |= cel_messages(value)
    elif isinstance(node, list):
        for value in node:
            found |= cel_messages(value)
    return found


COVERED_ELSEWHERE = {
    "spec cannot change after a one-time job": "test_started_one_time_job_spec_is_frozen",
}


def test_every_cel_rule_of_the_crds_has_a_rejection_case() -> None:
    """A rule added to the models without a case here fails this, so every message a
    user can meet is checked against a real API server at least once."""
    expected = " ".join(case.expected for case in INVALID)
    messages = set().union(*(cel_messages(yaml.safe_load(p.read_text()))
                             for p in sorted((ROOT / "crds").glob("*.yaml"))))
    uncovered = sorted(m for m in messages if m not in expected and
                       not any(m.startswith(prefix) for prefix in COVERED_ELSEWHERE))
    assert not uncovered, "CEL rules without an Invalid case: " + "; ".join(uncovered)
    assert len({case.id for case in INVALID}) == len(INVALID)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_manifest_is_rejected(
    case: Invalid, kubectl: Kubectl, namespace: str, crds: None
) -> None:
    result = _apply(kubectl, namespace, yaml.safe_dump(case.manifest()), "--dry-run=server")
    assert result.returncode != 0, result.stdout
    assert case.expected in result.stderr


def test_explain_shows_the_schedule_docs(kubectl: Kubectl, crds: None) -> None:
    out = kubectl("explain", "exportjob.spec.schedule").stdout
    assert "When to run. Set exactly one of once, hourly, daily, weekly, monthly or" in out
    assert "hourly\t<Object>" in out
    assert "Hours are counted from 00:00 UTC whatever the time zone" in out
    assert "timeZone\t<string>" in out
    hourly = kubectl("explain", "ej.spec.schedule.hourly.every").stdout
    assert "Hours between runs, 1-23." in hourly


def _identity(kubectl: Kubectl, namespace: str, kind: str, name: str) -> tuple[str, int]:
    obj = json.loads(kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout)
    return obj["metadata"]["resourceVersion"], obj["metadata"]["generation"]


@pytest.mark.parametrize(
    ("example", "kind", "name"),
    [
        ("exportjob-daily.yaml", "exportjob", "orders-nightly"),
        ("exportjob-hourly.yaml", "exportjob", "interactions-4h"),
        ("jobgroup.yaml", "jobgroup", "catalogue-refresh"),
        ("importjob-landing.yaml", "importjob", "partner-lists"),
        ("importjob-from-export.yaml", "importjob", "contact-history-reporting"),
    ],
)
def test_server_side_apply_twice_is_a_no_op(
    example: str, kind: str, name: str, kubectl: Kubectl, namespace: str, crds: None
) -> None:
    manifest = (ROOT / "examples" / example).read_text()
    assert _apply(kubectl, namespace, manifest).returncode == 0
    first = _identity(kubectl, namespace, kind, name)
    second_apply = _apply(kubectl, namespace, manifest)
    assert second_apply.returncode == 0, second_apply.stderr
    assert "serverside-applied" in second_apply.stdout
    assert _identity(kubectl, namespace, kind, name) == first


def test_defaults_are_filled_by_the_api_server(
    kubectl: Kubectl, namespace: str, crds: None
) -> None:
    manifest = copy.deepcopy(EXPORTJOB)
    manifest["metadata"]["name"] = "defaults"
    manifest["spec"]["schedule"] = {"hourly": {}}
    assert _apply(kubectl, namespace, yaml.safe_dump(manifest)).returncode == 0
    spec = json.loads(kubectl("get", "-n", namespace, "ej", "defaults", "-o", "json").stdout)[
        "spec"
    ]
    assert spec["suspend"] is False
    assert spec["historyLimit"] == 20
    assert spec["schedule"] == {
        "hourly": {"every": 1, "minute": 0},
        "timeZone": "UTC",
        "missedRunPolicy": "Latest",
    }
    assert spec["output"] == {
        "s3": {"bucket": "exports", "forcePathStyle": False},
        "format": "csv",
        "compression": "none",
    }


def test_started_one_time_job_spec_is_frozen(kubectl: Kubectl, namespace: str, crds: None) -> None:
    manifest = copy.deepcopy(EXPORTJOB)
    manifest["metadata"]["name"] = "once"
    manifest["spec"]["schedule"] = {"once": {}}
    assert _apply(kubectl, namespace, yaml.safe_dump(manifest)).returncode == 0

    edit = ["patch", "-n", namespace, "ej", "once", "--type=merge"]
    # Before the start the job can still be edited.
    kubectl(*edit, "-p", '{"spec": {"title": "Orders (edited)"}}')
    kubectl(
        *edit,
        "--subresource=status",
        "-p",
        '{"status": {"oneTimeStartedAt": "2030-01-01T00:00:00Z"}}',
    )
    refused = kubectl(*edit, "-p", '{"spec": {"title": "Orders again"}}', check=False)
    assert refused.returncode != 0
    assert (
        'The ExportJob "once" is invalid: spec: Invalid value: spec cannot change after a '
        "one-time job (schedule.once) has started (status.oneTimeStartedAt is set): create a "
        "new ExportJob instead"
    ) in refused.stderr
    # Metadata (labels, the operator's annotations) stays editable.
    kubectl(*edit, "-p", '{"metadata": {"labels": {"team": "finance"}}}')


def test_status_fields_survive_pruning(kubectl: Kubectl, namespace: str, crds: None) -> None:
    manifest = copy.deepcopy(EXPORTJOB)
    manifest["metadata"]["name"] = "status"
    assert _apply(kubectl, namespace, yaml.safe_dump(manifest)).returncode == 0
    status = {
        "phase": "InProgress",
        "progress": "45% 4.5M/10M",
        "conditions": [
            {
                "type": "Running",
                "status": "True",
                "reason": "RunInProgress",
                "message": "",
                "lastTransitionTime": "2030-01-01T00:00:00Z",
            }
        ],
        "currentRun": {
            "id": "status.3",
            "number": 3,
            "trigger": "group:nightly.7",
            "phase": "InProgress",
            "window": {"from": "2030-01-01T00:00:00Z", "to": "2030-01-01T04:00:00Z"},
            "batches": {"total": 2, "pending": 0, "running": 1, "succeeded": 1, "failed": 0},
            "batchStatuses": [{"index": 0, "phase": "Succeeded", "files": ["status-0.csv"]}],
        },
        "lastHandled": {"runRequestedAt": "2030-01-01T00:00:00Z"},
    }
    kubectl(
        "patch",
        "-n",
        namespace,
        "ej",
        "status",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    stored = json.loads(kubectl("get", "-n", namespace, "ej", "status", "-o", "json").stdout)
    assert stored["status"] == status
    table = kubectl("get", "-n", namespace, "ej", "status").stdout
    assert "45% 4.5M/10M" in table.splitlines()[1]


def test_explain_shows_the_importjob_docs(kubectl: Kubectl, crds: None) -> None:
    out = kubectl("explain", "importjob.spec").stdout
    assert "Desired state of an ImportJob." in out
    for line in ("source\t<Object>", "format\t<string> -required-", "destination\t<Object>",
                 "mode\t<string>", "keyColumns\t<[]string>", "newFilesOnly\t<boolean>"):
        assert line in out, line
    def explained(field: str) -> str:
        """kubectl explain's text of ``field``, its line wrapping undone."""
        return " ".join(kubectl("explain", field).stdout.split())

    assert "Overwrite: replace the table's contents atomically" in explained("ij.spec.mode")
    assert "Integer or string. Rows each batch may reject into the audit log" in explained(
        "ij.spec.maxErrors")
    assert "matched against each key relative to prefix" in explained("ij.spec.source.s3.glob")


def test_importjob_defaults_are_filled_by_the_api_server(
    kubectl: Kubectl, namespace: str, crds: None
) -> None:
    manifest = copy.deepcopy(IMPORTJOB)
    manifest["spec"]["csv"] = {}
    assert _apply(kubectl, namespace, yaml.safe_dump(manifest)).returncode == 0
    spec = json.loads(kubectl("get", "-n", namespace, "ij", "contacts-load", "-o",
                              "json").stdout)["spec"]
    assert (spec["mode"], spec["newFilesOnly"], spec["maxErrors"]) == ("Append", False, 0)
    assert (spec["suspend"], spec["historyLimit"]) == (False, 20)
    assert spec["csv"] == {"header": True, "delimiter": ",", "quote": '"', "nullString": ""}
    assert spec["destination"]["unknownColumns"] == "Refuse"
    assert spec["destination"]["missingColumns"] == "Refuse"
    assert spec["source"]["s3"]["forcePathStyle"] is False


def test_importjob_status_and_printer_columns(
    kubectl: Kubectl, namespace: str, crds: None
) -> None:
    manifest = copy.deepcopy(IMPORTJOB)
    manifest["metadata"]["name"] = "status"
    manifest["spec"] |= {"mode": "Merge", "keyColumns": ["id"]}
    assert _apply(kubectl, namespace, yaml.safe_dump(manifest)).returncode == 0
    status = {
        "phase": "SucceededWithErrors",
        "progress": "100% 998/1000",
        "lastRun": {
            "id": "status.1", "number": 1, "trigger": "manual",
            "finishedAt": "2030-01-01T00:00:00Z", "phase": "SucceededWithErrors",
            "records": 998, "recordsRejected": 2,
            "auditLog": "s3://landing/status/status.1/_errors/",
        },
        "currentRun": {
            "id": "status.2", "number": 2, "trigger": "schedule", "phase": "InProgress",
            "recordsRejected": 1,
            "batchStatuses": [{"index": 0, "phase": "InProgress", "recordsRejected": 1}],
        },
    }
    kubectl("patch", "-n", namespace, "ij", "status", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))
    stored = json.loads(kubectl("get", "-n", namespace, "ij", "status", "-o", "json").stdout)
    assert stored["status"] == status
    header, row = kubectl("get", "-n", namespace, "ij", "status").stdout.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "TITLE", "MODE", "TABLE", "SCHEDULE"]
    assert row.split()[:4] == ["status", "Contacts", "Merge", "public.contacts"]
    assert "SucceededWithErrors" in row and "100% 998/1000" in row
    listed = kubectl("get", "-n", namespace, "ferry", "-o", "name").stdout.split()
    assert "importjob.ferry.dev/status" in listed


def test_started_one_time_importjob_spec_is_frozen(
    kubectl: Kubectl, namespace: str, crds: None
) -> None:
    manifest = copy.deepcopy(IMPORTJOB)
    manifest["metadata"]["name"] = "once"
    manifest["spec"]["schedule"] = {"once": {}}
    assert _apply(kubectl, namespace, yaml.safe_dump(manifest)).returncode == 0
    edit = ["patch", "-n", namespace, "ij", "once", "--type=merge"]
    kubectl(*edit, "--subresource=status", "-p",
            '{"status": {"oneTimeStartedAt": "2030-01-01T00:00:00Z"}}')
    refused = kubectl(*edit, "-p", '{"spec": {"title": "Contacts again"}}', check=False)
    assert refused.returncode != 0
    assert (
        'The ImportJob "once" is invalid: spec: Invalid value: spec cannot change after a '
        "one-time job (schedule.once) has started (status.oneTimeStartedAt is set): create a "
        "new ImportJob instead"
    ) in refused.stderr
