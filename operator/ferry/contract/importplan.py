"""The import plan (``FERRY_PLAN`` of ``ferry-worker import``): one batch of an ImportJob run.

The operator builds an :class:`ImportPlan` for a run's Job and writes it with
:func:`encode_import_plan`; each pod reads it back with :func:`decode_import_plan`,
which validates every field and reports the first bad one as a
:class:`~ferry.contract.plan.PlanError` with its JSON path
(``plan.destination.table: ...``), the same way the export plan does
(:mod:`ferry.contract.plan`; docs/worker.md is the reference for both).

The plan names the files only as a place (a bucket and prefix with an optional glob, or
an ExportJob's run folder): the worker lists them itself, sorted by key, and takes its
share by :func:`batch_share`, so a retry of a batch lists the same files and takes the
same share without the operator having listed the bucket.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

from ferry.contract.limits import (
    MAX_BATCHES,
    MAX_IDENTIFIER_BYTES,
    MAX_PREFIX_CHARACTERS,
    MAX_SELECTED_COLUMNS,
)
from ferry.contract.plan import (
    _BUCKET,
    _ENDPOINT,
    _JOB_NAME,
    _JOB_UID,
    _PREFIX_SEGMENT,
    _RUN_ID,
    PlanError,
    _choice,
    _obj,
    _reject_unknown,
)

ImportFormat = Literal["csv", "jsonl", "parquet"]
ImportMode = Literal["Append", "Merge", "Overwrite"]
UnknownColumns = Literal["Refuse", "Ignore"]
MissingColumns = Literal["Refuse", "Default"]

IMPORT_FORMATS: tuple[ImportFormat, ...] = ("csv", "jsonl", "parquet")
IMPORT_MODES: tuple[ImportMode, ...] = ("Append", "Merge", "Overwrite")
UNKNOWN_COLUMNS: tuple[UnknownColumns, ...] = ("Refuse", "Ignore")
MISSING_COLUMNS: tuple[MissingColumns, ...] = ("Refuse", "Default")

REJECTS: str = "_rejects/"
"""Audit logs of rows that could not be loaded, ``batch-<i>.jsonl.gz``, in the run folder
``<errors.prefix>/<job>/<run>/``."""

LEDGER_TABLE: str = "ferry_import_ledger"
"""The ledger's table, in the destination table's schema (docs/worker.md)."""

_GLOB = re.compile(r"^[^\x00-\x1f]{1,256}$")
_T = TypeVar("_T")


def audit_log_name(batch: int) -> str:
    """A batch's audit log's key within the run folder."""
    return f"{REJECTS}batch-{batch}.jsonl.gz"


@dataclasses.dataclass(frozen=True)
class S3Connection:
    """How to reach the buckets of the plan (one set of credentials, from the env)."""

    endpoint: str | None = None
    region: str | None = None
    path_style: bool = False


@dataclasses.dataclass(frozen=True)
class S3Files:
    """Every object under ``prefix`` whose key relative to it matches ``glob`` (fnmatch;
    None: all), except folder markers and Ferry's own ``_``-prefixed folders' objects."""

    bucket: str
    prefix: str
    glob: str | None = None


@dataclasses.dataclass(frozen=True)
class FromExport:
    """The data files an ExportJob run's manifests commit, in the export's bucket:
    ``<prefix>/<runFolder>/_manifests/batch-*.json`` (``runFolder`` is
    ``<exportjob>/<run id>``, the folder the export wrote)."""

    bucket: str
    prefix: str
    run_folder: str


@dataclasses.dataclass(frozen=True)
class CsvOptions:
    """The CSV dialect: one character each for ``delimiter`` and ``quote`` (the escape
    is the doubled quote, RFC 4180); an unquoted field equal to ``null_string`` is NULL."""

    header: bool = True
    delimiter: str = ","
    quote: str = '"'
    null_string: str = ""


@dataclasses.dataclass(frozen=True)
class ColumnMapping:
    """Table column ``name`` takes the file's column ``source`` (JSON key ``from``): a
    header name, a JSON key, a Parquet field, or with ``header: false`` a field's
    position from 1."""

    name: str
    source: str


@dataclasses.dataclass(frozen=True)
class Table:
    """The destination table; ``schema`` None is the first of the role's search_path
    that has it."""

    table: str
    schema: str | None = None

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table


@dataclasses.dataclass(frozen=True)
class ImportDestination:
    """The table and how the file's columns meet it (docs/worker.md, column matching)."""

    table: Table
    columns: tuple[ColumnMapping, ...] = ()
    unknown_columns: UnknownColumns = "Refuse"
    missing_columns: MissingColumns = "Refuse"


@dataclasses.dataclass(frozen=True)
class MaxErrors:
    """Rows a batch may reject and still commit: ``count`` rows, or ``percent`` of the
    batch's rows (loaded plus rejected); exactly one is set. Default: 0 rows."""

    count: int | None = 0
    percent: float | None = None

    def exceeded(self, rejected: int, rows: int) -> bool:
        """Whether ``rejected`` of ``rows`` is over the limit."""
        if self.percent is not None:
            return rejected * 100 > self.percent * rows
        return rejected > (self.count or 0)

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclasses.dataclass(frozen=True)
class ErrorsLocation:
    """Where the audit log goes: ``<prefix>/<job>/<run>/_rejects/batch-<i>.jsonl.gz``."""

    bucket: str
    prefix: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImportPlan:
    """Everything one batch of an import needs; :func:`decode_import_plan` returns one
    batch's plan (``batch_indexes`` then empty)."""

    job: str
    namespace: str
    run: str
    job_uid: str | None = None
    batch_index: int = 0
    batch_count: int = 1
    batch_indexes: tuple[int, ...] = ()
    """What the operator may send for a retry: completion index ``i`` runs batch
    ``batch_indexes[i]`` (like the export plan's slices)."""
    connection: S3Connection = S3Connection()
    files: S3Files | None = None
    from_export: FromExport | None = None
    format: ImportFormat = "csv"
    csv: CsvOptions = CsvOptions()
    destination: ImportDestination
    mode: ImportMode = "Append"
    key_columns: tuple[str, ...] = ()
    new_files_only: bool = False
    max_errors: MaxErrors = MaxErrors()
    errors: ErrorsLocation | None = None


def batch_share(keys: Sequence[_T], index: int, count: int) -> list[_T]:
    """Batch ``index`` of ``count``'s files from the sorted listing: every ``count``-th
    from position ``index``. Deterministic for one listing, and it spreads a prefix of
    similar files (one export's) evenly; a file added between two attempts can move
    files between batches, which the ledger makes harmless (a file loaded is skipped)."""
    return [key for position, key in enumerate(keys) if position % count == index]


# --------------------------------------------------------------------------- encoding


def _connection_json(conn: S3Connection) -> dict[str, Any]:
    return {"pathStyle": conn.path_style,
            **{k: v for k, v in (("endpoint", conn.endpoint), ("region", conn.region)) if v}}


def import_plan_document(plan: ImportPlan) -> dict[str, Any]:
    """The plan as the JSON object docs/worker.md describes; defaults are left out."""
    source: dict[str, Any] = _connection_json(plan.connection)
    if plan.files is not None:
        source["s3"] = {"bucket": plan.files.bucket, "prefix": plan.files.prefix,
                        **({"glob": plan.files.glob} if plan.files.glob else {})}
    if plan.from_export is not None:
        source["fromExport"] = {"bucket": plan.from_export.bucket,
                                "prefix": plan.from_export.prefix,
                                "runFolder": plan.from_export.run_folder}
    fmt: dict[str, Any] = {"type": plan.format}
    if plan.format == "csv":
        fmt.update(header=plan.csv.header, delimiter=plan.csv.delimiter,
                   quote=plan.csv.quote, nullString=plan.csv.null_string)
    dest = plan.destination
    destination: dict[str, Any] = {"table": str(dest.table),
                                   "unknownColumns": dest.unknown_columns,
                                   "missingColumns": dest.missing_columns}
    if dest.columns:
        destination["columns"] = [{"name": c.name, "from": c.source} for c in dest.columns]
    doc: dict[str, Any] = {
        "job": plan.job, "namespace": plan.namespace, "run": plan.run,
        **({"jobUid": plan.job_uid} if plan.job_uid else {}),
        "batchCount": plan.batch_count,
        "source": source, "format": fmt, "destination": destination, "mode": plan.mode,
        "newFilesOnly": plan.new_files_only,
        "maxErrors": (f"{plan.max_errors.percent:g}%" if plan.max_errors.percent is not None
                      else plan.max_errors.count),
    }
    if plan.batch_indexes:
        doc["batchIndexes"] = list(plan.batch_indexes)
    else:
        doc["batchIndex"] = plan.batch_index
    if plan.key_columns:
        doc["keyColumns"] = list(plan.key_columns)
    if plan.errors is not None:
        doc["errors"] = {"bucket": plan.errors.bucket, "prefix": plan.errors.prefix}
    return doc


def encode_import_plan(plan: ImportPlan) -> str:
    """``FERRY_PLAN``'s value: compact JSON."""
    return json.dumps(import_plan_document(plan), separators=(",", ":"))


# --------------------------------------------------------------------------- decoding


def _text(obj: Mapping[str, Any], key: str, path: str, *, required: bool = True,
          empty: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise PlanError(f"{path}.{key}", "is required")
        return None
    if not isinstance(value, str) or (not value and not empty):
        raise PlanError(f"{path}.{key}", "must be a non-empty string")
    if "\x00" in value:
        raise PlanError(f"{path}.{key}", "contains a NUL character")
    return value


def _bool(obj: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise PlanError(f"{path}.{key}", "must be a boolean")
    return value


def _index(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PlanError(path, f"must be an integer >= 0, got {value!r}")
    return value


def identifier(value: object, path: str) -> str:
    """A PostgreSQL identifier as the plan may name one (quoted later, never spliced)."""
    if not isinstance(value, str) or not value:
        raise PlanError(path, "must be a non-empty string")
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise PlanError(path, f"identifier longer than {MAX_IDENTIFIER_BYTES} bytes")
    if "\x00" in value:
        raise PlanError(path, "identifier contains a NUL character")
    return value


def _bucket(obj: Mapping[str, Any], path: str) -> str:
    bucket = _text(obj, "bucket", path)
    assert bucket is not None
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise PlanError(f"{path}.bucket", f"not a valid S3 bucket name: {bucket!r}")
    return bucket


def _prefix(obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str:
    value = _text(obj, key, path, required=required, empty=not required)
    if not value:
        return ""
    if len(value) > MAX_PREFIX_CHARACTERS:
        raise PlanError(f"{path}.{key}", f"longer than {MAX_PREFIX_CHARACTERS} characters")
    segments = value.strip("/").split("/")
    for seg in segments:
        if seg in ("", ".", "..") or not _PREFIX_SEGMENT.fullmatch(seg):
            raise PlanError(f"{path}.{key}",
                            f"segment {seg!r} not allowed (letters, digits and !_.*'()=+- "
                            "only; no empty, '.' or '..' segments)")
    return "/".join(segments)


def _connection(obj: Mapping[str, Any]) -> S3Connection:
    endpoint = _text(obj, "endpoint", "plan.source", required=False)
    if endpoint is not None and not _ENDPOINT.fullmatch(endpoint):
        raise PlanError("plan.source.endpoint", "must be an http(s) URL without credentials")
    return S3Connection(endpoint, _text(obj, "region", "plan.source", required=False),
                        _bool(obj, "pathStyle", "plan.source", False))


def _source(raw: object) -> tuple[S3Connection, S3Files | None, FromExport | None]:
    obj = _obj(raw, "plan.source")
    _reject_unknown(obj, {"s3", "fromExport", "endpoint", "region", "pathStyle"}, "plan.source")
    if ("s3" in obj) == ("fromExport" in obj):
        raise PlanError("plan.source", "set exactly one of s3 or fromExport")
    if "s3" in obj:
        s3 = _obj(obj["s3"], "plan.source.s3")
        _reject_unknown(s3, {"bucket", "prefix", "glob"}, "plan.source.s3")
        glob = _text(s3, "glob", "plan.source.s3", required=False)
        if glob is not None and not _GLOB.fullmatch(glob):
            raise PlanError("plan.source.s3.glob",
                            "must be 1-256 characters without control characters")
        files = S3Files(_bucket(s3, "plan.source.s3"), _prefix(s3, "prefix", "plan.source.s3"),
                        glob)
        return _connection(obj), files, None
    export = _obj(obj["fromExport"], "plan.source.fromExport")
    _reject_unknown(export, {"bucket", "prefix", "runFolder"}, "plan.source.fromExport")
    path = "plan.source.fromExport"
    folder = _prefix(export, "runFolder", path, required=True)
    if folder.count("/") != 1:
        raise PlanError(f"{path}.runFolder",
                        f"must be <exportjob>/<run id> (two segments), got {folder!r}")
    return _connection(obj), None, FromExport(_bucket(export, path),
                                              _prefix(export, "prefix", path), folder)


def _single_character(obj: Mapping[str, Any], key: str, default: str) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or len(value) != 1 or value in "\r\n\\":
        raise PlanError(f"plan.format.{key}",
                        f"must be one character (not a newline or backslash), got {value!r}")
    return value


def _format(raw: object) -> tuple[ImportFormat, CsvOptions]:
    obj = _obj({"type": raw} if isinstance(raw, str) else raw, "plan.format")
    fmt = cast(ImportFormat, _choice(obj, "type", "plan.format", IMPORT_FORMATS, "csv"))
    if fmt != "csv":
        _reject_unknown(obj, {"type"}, "plan.format")
        return fmt, CsvOptions()
    _reject_unknown(obj, {"type", "header", "delimiter", "quote", "nullString"}, "plan.format")
    delimiter = _single_character(obj, "delimiter", ",")
    quote = _single_character(obj, "quote", '"')
    if delimiter == quote:
        raise PlanError("plan.format.quote", "must differ from the delimiter")
    null = obj.get("nullString", "")
    if not isinstance(null, str) or any(c in null for c in "\r\n\x00") or len(null) > 64:
        raise PlanError("plan.format.nullString",
                        "must be a string of at most 64 characters without newlines")
    return fmt, CsvOptions(_bool(obj, "header", "plan.format", True), delimiter, quote, null)


def parse_table(value: object, path: str) -> Table:
    """``"schema.table"`` or ``"table"``: a name with a dot of its own cannot be named."""
    if not isinstance(value, str) or not value:
        raise PlanError(path, 'must be "table" or "schema.table"')
    parts = value.split(".")
    if len(parts) > 2:
        raise PlanError(path, f'must be "table" or "schema.table", got {value!r}')
    names = [identifier(p, path) for p in parts]
    return Table(names[-1], names[0] if len(names) == 2 else None)


def _mappings(raw: object) -> tuple[ColumnMapping, ...]:
    path = "plan.destination.columns"
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise PlanError(path, "must be a non-empty list of {name, from}")
    if len(raw) > MAX_SELECTED_COLUMNS:
        raise PlanError(path, f"more than {MAX_SELECTED_COLUMNS} columns")
    out = []
    for i, item in enumerate(raw):
        obj = _obj(item, f"{path}[{i}]")
        _reject_unknown(obj, {"name", "from"}, f"{path}[{i}]")
        name = identifier(obj.get("name"), f"{path}[{i}].name")
        source = obj.get("from", name)
        if not isinstance(source, str) or not source or "\x00" in source:
            raise PlanError(f"{path}[{i}].from", "must be a non-empty string")
        out.append(ColumnMapping(name, source))
    for attr in ("name", "source"):
        values = [getattr(m, attr) for m in out]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise PlanError(path, f"{'from' if attr == 'source' else attr} {dupes[0]!r} "
                            "appears twice")
    return tuple(out)


def _destination(raw: object) -> ImportDestination:
    path = "plan.destination"
    obj = _obj(raw, path)
    _reject_unknown(obj, {"table", "columns", "unknownColumns", "missingColumns"}, path)
    return ImportDestination(
        table=parse_table(obj.get("table"), f"{path}.table"),
        columns=_mappings(obj.get("columns")),
        unknown_columns=cast(UnknownColumns, _choice(obj, "unknownColumns", path,
                                                     UNKNOWN_COLUMNS, "Refuse")),
        missing_columns=cast(MissingColumns, _choice(obj, "missingColumns", path,
                                                     MISSING_COLUMNS, "Refuse")))


def _max_errors(raw: object) -> MaxErrors:
    path = "plan.maxErrors"
    if raw is None:
        return MaxErrors()
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 0:
            raise PlanError(path, f"must be >= 0, got {raw}")
        return MaxErrors(count=raw)
    if isinstance(raw, str) and re.fullmatch(r"\d{1,3}(\.\d{1,3})?%", raw):
        percent = float(raw[:-1])
        if percent <= 100:
            return MaxErrors(count=None, percent=percent)
    raise PlanError(path, f'must be a count (>= 0) or a percentage such as "5%", got {raw!r}')


def _key_columns(raw: object, mode: ImportMode) -> tuple[str, ...]:
    path = "plan.keyColumns"
    if raw is None or raw == []:
        if mode == "Merge":
            raise PlanError(path, "is required with mode Merge (the columns of a unique "
                            "index or primary key of the table)")
        return ()
    if mode != "Merge":
        raise PlanError(path, f"only with mode Merge, not {mode}")
    if not isinstance(raw, list) or len(raw) > 32:
        raise PlanError(path, "must be a list of at most 32 column names")
    keys = tuple(identifier(k, f"{path}[{i}]") for i, k in enumerate(raw))
    if len(set(keys)) != len(keys):
        raise PlanError(path, "lists a column twice")
    return keys


def _errors(raw: object) -> ErrorsLocation | None:
    if raw is None:
        return None
    obj = _obj(raw, "plan.errors")
    _reject_unknown(obj, {"bucket", "prefix"}, "plan.errors")
    return ErrorsLocation(_bucket(obj, "plan.errors"), _prefix(obj, "prefix", "plan.errors"))


_FIELDS = {"job", "namespace", "jobUid", "run", "batchIndex", "batchCount", "batchIndexes",
           "source", "format", "destination", "mode", "keyColumns", "newFilesOnly",
           "maxErrors", "errors"}


def _batch(obj: Mapping[str, Any], completion_index: Callable[[], int],
           batch_index: int | None) -> tuple[int, int]:
    count = obj.get("batchCount", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCHES:
        raise PlanError("plan.batchCount", f"must be an integer 1-{MAX_BATCHES}, got {count!r}")
    if "batchIndexes" in obj:
        listed = obj["batchIndexes"]
        if not isinstance(listed, list) or not listed:
            raise PlanError("plan.batchIndexes", "must be a non-empty list of batch indexes")
        position = completion_index() if batch_index is None else batch_index
        if position >= len(listed):
            raise PlanError("plan.batchIndexes",
                            f"has {len(listed)} entries; none for index {position}")
        index = _index(listed[position], f"plan.batchIndexes[{position}]")
    elif batch_index is not None:
        index = batch_index
    elif "batchIndex" in obj:
        index = _index(obj["batchIndex"], "plan.batchIndex")
    else:
        index = completion_index()
    if index >= count:
        raise PlanError("plan.batchIndex", f"{index} is not below batchCount {count}")
    return index, count


def decode_import_plan(raw: object, completion_index: Callable[[], int],
                       batch_index: int | None = None) -> ImportPlan:
    """One batch's import plan from the decoded ``FERRY_PLAN`` document; :class:`PlanError`
    names the first bad field. The batch is ``batch_index`` (the command line), else the
    plan's ``batchIndex``, else ``completion_index()``; with ``batchIndexes`` either of
    the first or the last is the position in that list."""
    obj = _obj(raw, "plan")
    _reject_unknown(obj, _FIELDS, "plan")
    job = _text(obj, "job", "plan")
    assert job is not None
    if not _JOB_NAME.fullmatch(job):
        raise PlanError("plan.job", f"must be a DNS label (a-z, 0-9, '-', max 63), got {job!r}")
    namespace = _text(obj, "namespace", "plan")
    assert namespace is not None
    if not _JOB_NAME.fullmatch(namespace):
        raise PlanError("plan.namespace", f"must be a DNS label, got {namespace!r}")
    job_uid = _text(obj, "jobUid", "plan", required=False)
    if job_uid is not None and not _JOB_UID.fullmatch(job_uid):
        raise PlanError("plan.jobUid", f"must be an object uid, got {job_uid!r}")
    run = obj.get("run")
    if not isinstance(run, str) or not _RUN_ID.fullmatch(run):
        raise PlanError("plan.run", f"must match {_RUN_ID.pattern}, got {run!r}")
    mode = cast(ImportMode, _choice(obj, "mode", "plan", IMPORT_MODES, "Append"))
    index, count = _batch(obj, completion_index, batch_index)
    if mode == "Overwrite" and count != 1:
        raise PlanError("plan.batchCount", f"must be 1 with mode Overwrite (the table is "
                        f"replaced in one transaction), got {count}")
    connection, files, from_export = _source(obj.get("source"))
    fmt, csv = _format(obj.get("format", "csv"))
    destination = _destination(obj.get("destination"))
    keys = _key_columns(obj.get("keyColumns"), mode)
    mapped = {m.name for m in destination.columns}
    if destination.columns and not set(keys) <= mapped:
        missing = sorted(set(keys) - mapped)
        raise PlanError("plan.keyColumns", f"{missing[0]!r} is not in destination.columns")
    new_files_only = _bool(obj, "newFilesOnly", "plan", False)
    if new_files_only and mode == "Overwrite":
        raise PlanError("plan.newFilesOnly", "cannot be combined with mode Overwrite (the "
                        "table would be replaced by the new files alone)")
    return ImportPlan(
        job=job, namespace=namespace, run=run, job_uid=job_uid, batch_index=index,
        batch_count=count, connection=connection, files=files, from_export=from_export,
        format=fmt, csv=csv, destination=destination, mode=mode, key_columns=keys,
        new_files_only=new_files_only,
        max_errors=_max_errors(obj.get("maxErrors")), errors=_errors(obj.get("errors")))
