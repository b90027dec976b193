"""The plan (``FERRY_PLAN``): what one batch of a run must do, and its one JSON encoding.

The operator builds a :class:`Plan` for a run's Job (``ferry.reconcile.jobspec``), with
one :class:`BatchSlice` per completion index, and writes it with :func:`encode_plan`;
each worker pod reads it back with :func:`decode_plan`, which resolves the pod's slice
and validates every field. Both sides therefore share one set of field names, types
and limits; docs/worker.md is the reference.

Plain dataclasses and a hand-written decoder, not pydantic (which the API models use):
the decoder reports the first bad field with its JSON path and a sentence the user can
act on (``plan.keyRange: lo must be below hi ...``), which ends up verbatim in the run's
status, and the worker, which starts once per batch, does not load pydantic at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

from ferry.contract.limits import (
    MAX_FILTER_VALUES,
    MAX_FILTERS,
    MAX_IDENTIFIER_BYTES,
    MAX_PREFIX_CHARACTERS,
    MAX_QUERY_CHARACTERS,
    MAX_SELECTED_COLUMNS,
    min_worker_split_bytes,
)

Format = Literal["csv", "jsonl", "parquet"]
Compression = Literal["none", "gzip", "zstd"]
Totals = Literal["count", "estimate", "none"]
RunOutcome = Literal["Succeeded", "PartiallySucceeded", "Failed", "Canceled"]
FilterOp = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "notIn", "isNull", "notNull"]
Scalar = str | int | float | bool

FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")
COMPRESSIONS: tuple[Compression, ...] = ("none", "gzip", "zstd")
TOTALS: tuple[Totals, ...] = ("count", "estimate", "none")
RUN_OUTCOMES: tuple[RunOutcome, ...] = ("Succeeded", "PartiallySucceeded", "Failed", "Canceled")
FILTER_OPS: tuple[FilterOp, ...] = (
    "eq", "ne", "lt", "le", "gt", "ge", "in", "notIn", "isNull", "notNull",
)
DEFAULT_LEVELS: Mapping[Compression, int] = {"none": 0, "gzip": 1, "zstd": 3}
"""A codec's level when the plan names none (gzip 1: ISA-L's fast path, docs/worker.md)."""

_JOB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_RUN_ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$")
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
"""An S3 bucket name (the API's output.s3.bucket too; two adjacent dots are refused apart)."""
ENDPOINT_PATTERN = r"^https?://[^\s/@]+(/\S*)?$"
"""An S3 endpoint URL without ``user:password@`` (credentials come from Secrets only)."""
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9!_.*'()=+-]+$")
_BUCKET = re.compile(BUCKET_PATTERN)
_JOB_UID = re.compile(r"^[A-Za-z0-9-]{1,128}$")
_ENDPOINT = re.compile(ENDPOINT_PATTERN)
SFTP_HOST_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$"
"""An SFTP host: a DNS name, IPv4 or IPv6 address (no user@, no port)."""
HOST_KEY_PATTERN = r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+=*$"
"""A pinned host key: the key type and its base64 blob, as in known_hosts (no host, no
comment)."""
_SFTP_HOST = re.compile(SFTP_HOST_PATTERN)
_HOST_KEY = re.compile(HOST_KEY_PATTERN)


class PlanError(ValueError):
    """A plan field that is not valid: ``path`` is its JSON path (``plan.window.from``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclasses.dataclass(frozen=True)
class Source:
    """Either a table (optionally schema-qualified) or a trusted SQL query."""

    table: str | None = None
    schema: str | None = None
    query: str | None = None


@dataclasses.dataclass(frozen=True)
class Filter:
    """``column <op> value(s)``; values are always bound parameters, never SQL."""

    column: str
    op: FilterOp
    values: tuple[Scalar, ...] = ()


@dataclasses.dataclass(frozen=True)
class Window:
    """Half-open time window ``[start, end)`` on a timestamp column; None = unbounded."""

    column: str
    start: dt.datetime | None
    end: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class KeyRange:
    """Half-open key range ``[lo, hi)``; None = unbounded; NULL keys only if include_nulls.

    The controller splits a table into batches with adjacent ranges and sets
    ``includeNulls`` on exactly one of them, so every row lands in exactly one batch.
    """

    column: str
    lo: Scalar | None
    hi: Scalar | None
    include_nulls: bool


@dataclasses.dataclass(frozen=True)
class KeyPartition:
    """Rows whose key hashes to ``index`` of ``count`` partitions; NULL keys go to 0.

    Unlike key ranges, hash partitions need no min/max query to plan, and every row
    lands in exactly one batch whatever is inserted while the run is in flight.
    """

    column: str
    index: int
    count: int


@dataclasses.dataclass(frozen=True)
class KeySplit:
    """Batch ``index`` of ``count`` contiguous ranges of ``column``, planned by the worker.

    The operator holds no database credentials, so it cannot plan key ranges; it asks
    for them instead. The first batch of the run to start samples the column and
    commits the ranges into the run folder, and every batch and retry of the run reads
    that one plan (ferry.worker.keyranges), so each batch scans only its range.
    """

    column: str
    index: int
    count: int


@dataclasses.dataclass(frozen=True)
class Destination:
    """Where the files go; credentials are not here (environment only)."""

    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None
    path_style: bool


@dataclasses.dataclass(frozen=True)
class SftpDestination:
    """An SFTP server's directory; the user and key or password are not here
    (environment only). ``host_key`` is the server's public host key as OpenSSH
    writes it (``ssh-ed25519 AAAA...``): the only key the worker accepts; empty, none is
    (the refusal names the key offered, to pin)."""

    host: str
    port: int
    directory: str
    host_key: str

    @property
    def prefix(self) -> str:
        """Keys are relative to ``directory``: no prefix of their own."""
        return ""


@dataclasses.dataclass(frozen=True)
class Seal:
    """What ``ferry-worker seal`` records about the run that ended (the operator's view).

    ``run_id`` is the run that ended, which for a retry is not the folder's run (the
    retry exports into the folder of the run it retries); ``outcome`` is its phase.
    """

    run_id: str
    outcome: RunOutcome


@dataclasses.dataclass(frozen=True)
class BatchSlice:
    """One completion index's part of a run: an Indexed Job gives every pod the same
    plan, and the pod's index picks its slice, whose fields override the plan's."""

    batch_index: int
    window: Window | None = None
    key_range: KeyRange | None = None
    key_partition: KeyPartition | None = None
    key_split: KeySplit | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Everything one batch needs, or, with ``slices``, every batch of a Job.

    :func:`decode_plan` always returns one batch's plan (``slices`` empty); the
    operator's plan lists the slices, whose ``batchIndex`` replaces ``batch_index``.
    """

    job: str
    run: str
    source: Source
    destination: Destination | SftpDestination
    format: Format
    compression: Compression
    compression_level: int
    """Always a level, the codec's default when the document names none (the encoder
    then leaves it out again)."""
    batch_index: int
    batch_count: int
    columns: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    window: Window | None = None
    key_range: KeyRange | None = None
    key_partition: KeyPartition | None = None
    key_split: KeySplit | None = None
    """Replaced by the worker with the committed plan's ``key_range`` (or, where no range
    could be planned, its ``key_partition``) before the batch reads a row."""
    file_split_size: int | None = None
    totals: Totals = "count"
    slices: tuple[BatchSlice, ...] = ()
    reuse_committed_since: dt.datetime | None = None
    """A manifest of this batch started at or after this time is this run's own: report
    it instead of exporting again (the operator sets the run's start, so a Job created
    again for the same run does not redo the batches that already committed)."""
    job_uid: str | None = None
    """metadata.uid of the ExportJob whose run this is, recorded in every manifest and
    error record. What another ExportJob of the same name (deleted and created again)
    left in this run's folder carries another uid and is removed, so a run's folder
    never presents an earlier job's batches as its own (docs/worker.md, file layout)."""
    seal: Seal | None = None
    """Set only for ``ferry-worker seal``: the run marker is written for this run."""


# --------------------------------------------------------------------------- encoding


def timestamp(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a Z, as the plan's timestamps are written."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _window_json(window: Window) -> dict[str, Any]:
    return {"column": window.column,
            **({"from": timestamp(window.start)} if window.start else {}),
            **({"to": timestamp(window.end)} if window.end else {})}


def _key_range_json(key_range: KeyRange) -> dict[str, Any]:
    return {"column": key_range.column, "lo": key_range.lo, "hi": key_range.hi,
            "includeNulls": key_range.include_nulls}


def _key_partition_json(partition: KeyPartition) -> dict[str, Any]:
    return {"column": partition.column, "index": partition.index, "count": partition.count}


def _key_split_json(split: KeySplit) -> dict[str, Any]:
    return {"column": split.column, "index": split.index, "count": split.count}


def _filter_json(item: Filter) -> dict[str, Any]:
    if item.op in ("in", "notIn"):
        return {"column": item.column, "op": item.op, "values": list(item.values)}
    if item.op in ("isNull", "notNull"):
        return {"column": item.column, "op": item.op}
    return {"column": item.column, "op": item.op, "value": item.values[0]}


def _slice_json(part: BatchSlice) -> dict[str, Any]:
    return {"batchIndex": part.batch_index,
            **({"window": _window_json(part.window)} if part.window else {}),
            **({"keyRange": _key_range_json(part.key_range)} if part.key_range else {}),
            **({"keyPartition": _key_partition_json(part.key_partition)}
               if part.key_partition else {}),
            **({"keySplit": _key_split_json(part.key_split)} if part.key_split else {})}


def _destination_json(dest: Destination | SftpDestination) -> dict[str, Any]:
    if isinstance(dest, SftpDestination):
        return {"sftp": {"host": dest.host, "port": dest.port, "directory": dest.directory,
                         **({"hostKey": dest.host_key} if dest.host_key else {})}}
    return {"bucket": dest.bucket, "pathStyle": dest.path_style,
            **{key: value for key, value in (("prefix", dest.prefix), ("endpoint", dest.endpoint),
                                             ("region", dest.region)) if value}}


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as the JSON object docs/worker.md describes; defaults are left out."""
    source = plan.source
    dest = plan.destination
    doc: dict[str, Any] = {
        "job": plan.job,
        **({"jobUid": plan.job_uid} if plan.job_uid else {}),
        "run": plan.run,
        "source": ({"query": source.query} if source.query is not None else
                   {"table": source.table, **({"schema": source.schema} if source.schema else {})}),
        "filters": [_filter_json(f) for f in plan.filters],
        "format": plan.format,
        "compression": plan.compression,
        "destination": _destination_json(dest),
        "batchCount": plan.batch_count,
    }
    if plan.columns:
        doc["columns"] = list(plan.columns)
    if plan.window:
        doc["window"] = _window_json(plan.window)
    if plan.key_range:
        doc["keyRange"] = _key_range_json(plan.key_range)
    if plan.key_partition:
        doc["keyPartition"] = _key_partition_json(plan.key_partition)
    if plan.key_split:
        doc["keySplit"] = _key_split_json(plan.key_split)
    if plan.compression_level != DEFAULT_LEVELS[plan.compression]:
        doc["compressionLevel"] = plan.compression_level
    if plan.file_split_size:
        doc["fileSplitSize"] = plan.file_split_size
    if plan.slices:
        doc["slices"] = [_slice_json(s) for s in plan.slices]
    else:
        doc["batchIndex"] = plan.batch_index
    if plan.totals != "count":
        doc["totals"] = plan.totals
    if plan.reuse_committed_since is not None:
        doc["reuseCommittedSince"] = timestamp(plan.reuse_committed_since)
    if plan.seal is not None:
        doc["seal"] = {"runId": plan.seal.run_id, "outcome": plan.seal.outcome}
    return doc


def encode_plan(plan: Plan) -> str:
    """``FERRY_PLAN``'s value: compact JSON (it sits in the Job spec, once per Job)."""
    return json.dumps(plan_document(plan), separators=(",", ":"))


# --------------------------------------------------------------------------- decoding


def _obj(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PlanError(path, f"must be an object, got {type(value).__name__}")
    return cast(dict[str, Any], value)


def _reject_unknown(obj: Mapping[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        allowed_list = ", ".join(sorted(allowed))
        raise PlanError(f"{path}.{unknown[0]}", f"unknown field (allowed: {allowed_list})")


def _str(obj: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise PlanError(f"{path}.{key}", "is required")
        return None
    if not isinstance(value, str) or not value:
        raise PlanError(f"{path}.{key}", "must be a non-empty string")
    return value


def _ident(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise PlanError(path, "must be a non-empty string")
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise PlanError(path, f"identifier longer than {MAX_IDENTIFIER_BYTES} bytes")
    if "\x00" in value:
        raise PlanError(path, "identifier contains a NUL character")
    return value


def _int(obj: Mapping[str, Any], key: str, path: str, *, minimum: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanError(f"{path}.{key}", "must be an integer")
    if value < minimum:
        raise PlanError(f"{path}.{key}", f"must be >= {minimum}, got {value}")
    return value


def _choice(obj: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...],
            default: str) -> str:
    value = obj.get(key, default)
    if value not in choices:
        raise PlanError(f"{path}.{key}", f"must be one of {', '.join(choices)}, got {value!r}")
    return cast(str, value)


def _scalar(value: object, path: str) -> Scalar:
    if isinstance(value, str | int | float | bool):
        if isinstance(value, str) and "\x00" in value:
            raise PlanError(path, "contains a NUL character")
        return value
    raise PlanError(path, f"must be a string, number or boolean, got {type(value).__name__}")


def _timestamp(value: object, path: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PlanError(path, "must be an RFC 3339 timestamp string")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise PlanError(path, f"not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise PlanError(path, f"needs a UTC offset or Z, got {value!r}")
    return parsed.astimezone(dt.UTC)


def _source(raw: object) -> Source:
    obj = _obj(raw, "plan.source")
    _reject_unknown(obj, {"table", "schema", "query"}, "plan.source")
    if ("table" in obj) == ("query" in obj):
        raise PlanError("plan.source", "set exactly one of table or query")
    if "query" in obj:
        if "schema" in obj:
            raise PlanError("plan.source.schema", "only allowed with table")
        query = _str(obj, "query", "plan.source")
        assert query is not None
        if len(query) > MAX_QUERY_CHARACTERS:
            raise PlanError("plan.source.query",
                            f"longer than {MAX_QUERY_CHARACTERS} characters")
        return Source(query=query.strip().rstrip(";"))
    table = _ident(obj["table"], "plan.source.table")
    schema = _ident(obj["schema"], "plan.source.schema") if "schema" in obj else None
    return Source(table=table, schema=schema)


def _columns(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PlanError("plan.columns", "must be a list of column names")
    if len(raw) > MAX_SELECTED_COLUMNS:
        raise PlanError("plan.columns", f"more than {MAX_SELECTED_COLUMNS} columns")
    cols = tuple(_ident(c, f"plan.columns[{i}]") for i, c in enumerate(raw))
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if dupes:
        raise PlanError("plan.columns", f"duplicate column {dupes[0]!r}")
    return cols


def _filters(raw: object) -> tuple[Filter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PlanError("plan.filters", "must be a list")
    if len(raw) > MAX_FILTERS:
        raise PlanError("plan.filters", f"more than {MAX_FILTERS} filters")
    out = []
    for i, item in enumerate(raw):
        path = f"plan.filters[{i}]"
        obj = _obj(item, path)
        _reject_unknown(obj, {"column", "op", "value", "values"}, path)
        column = _ident(obj.get("column"), f"{path}.column")
        op = cast(FilterOp, _choice(obj, "op", path, FILTER_OPS, "eq"))
        if op in ("isNull", "notNull"):
            if "value" in obj or "values" in obj:
                raise PlanError(path, f"op {op} takes no value")
            out.append(Filter(column, op))
        elif op in ("in", "notIn"):
            values = obj.get("values")
            if "value" in obj or not isinstance(values, list) or not values:
                raise PlanError(f"{path}.values", f"op {op} needs a non-empty list 'values'")
            if len(values) > MAX_FILTER_VALUES:
                raise PlanError(f"{path}.values", f"more than {MAX_FILTER_VALUES} values")
            out.append(Filter(column, op, tuple(
                _scalar(v, f"{path}.values[{j}]") for j, v in enumerate(values))))
        else:
            if "values" in obj or "value" not in obj or obj["value"] is None:
                raise PlanError(f"{path}.value", f"op {op} needs a non-null 'value'")
            out.append(Filter(column, op, (_scalar(obj["value"], f"{path}.value"),)))
    return tuple(out)


def _window(raw: object) -> Window | None:
    if raw is None:
        return None
    obj = _obj(raw, "plan.window")
    _reject_unknown(obj, {"column", "from", "to"}, "plan.window")
    column = _ident(obj.get("column"), "plan.window.column")
    start = _timestamp(obj.get("from"), "plan.window.from")
    end = _timestamp(obj.get("to"), "plan.window.to")
    if start is not None and end is not None and start >= end:
        raise PlanError("plan.window", "from must be before to (the window is [from, to))")
    return Window(column, start, end)


def _key_range(raw: object) -> KeyRange | None:
    if raw is None:
        return None
    obj = _obj(raw, "plan.keyRange")
    _reject_unknown(obj, {"column", "lo", "hi", "includeNulls"}, "plan.keyRange")
    column = _ident(obj.get("column"), "plan.keyRange.column")
    lo = None if obj.get("lo") is None else _scalar(obj["lo"], "plan.keyRange.lo")
    hi = None if obj.get("hi") is None else _scalar(obj["hi"], "plan.keyRange.hi")
    if isinstance(lo, bool) or isinstance(hi, bool):
        raise PlanError("plan.keyRange", "lo and hi must be numbers or strings, not booleans")
    if lo is not None and hi is not None:
        if type(lo) is not type(hi) and not all(isinstance(v, int | float) for v in (lo, hi)):
            raise PlanError("plan.keyRange", "lo and hi must have the same type")
        if lo >= hi:  # type: ignore[operator]
            raise PlanError("plan.keyRange", "lo must be below hi (the range is [lo, hi))")
    nulls = obj.get("includeNulls", False)
    if not isinstance(nulls, bool):
        raise PlanError("plan.keyRange.includeNulls", "must be a boolean")
    return KeyRange(column, lo, hi, nulls)


def _key_partition(raw: object) -> KeyPartition | None:
    if raw is None:
        return None
    obj = _obj(raw, "plan.keyPartition")
    _reject_unknown(obj, {"column", "index", "count"}, "plan.keyPartition")
    column = _ident(obj.get("column"), "plan.keyPartition.column")
    count = _int(obj, "count", "plan.keyPartition", minimum=1)
    index = _int(obj, "index", "plan.keyPartition", minimum=0)
    if count is None or index is None:
        raise PlanError("plan.keyPartition", "needs integers index and count")
    if index >= count:
        raise PlanError("plan.keyPartition.index", f"{index} is not below count {count}")
    return KeyPartition(column, index, count)


def _key_split(raw: object) -> KeySplit | None:
    if raw is None:
        return None
    obj = _obj(raw, "plan.keySplit")
    _reject_unknown(obj, {"column", "index", "count"}, "plan.keySplit")
    column = _ident(obj.get("column"), "plan.keySplit.column")
    count = _int(obj, "count", "plan.keySplit", minimum=1)
    index = _int(obj, "index", "plan.keySplit", minimum=0)
    if count is None or index is None:
        raise PlanError("plan.keySplit", "needs integers index and count")
    if index >= count:
        raise PlanError("plan.keySplit.index", f"{index} is not below count {count}")
    return KeySplit(column, index, count)


def _prefix(value: str | None) -> str:
    if value is None:
        return ""
    if len(value) > MAX_PREFIX_CHARACTERS:
        raise PlanError("plan.destination.prefix",
                        f"longer than {MAX_PREFIX_CHARACTERS} characters")
    segments = value.strip("/").split("/")
    for seg in segments:
        if seg in ("", ".", "..") or not _PREFIX_SEGMENT.fullmatch(seg):
            raise PlanError(
                "plan.destination.prefix",
                f"segment {seg!r} not allowed (letters, digits and !_.*'()=+- only; "
                "no empty, '.' or '..' segments)",
            )
    return "/".join(segments)


def _sftp(raw: object) -> SftpDestination:
    path = "plan.destination.sftp"
    obj = _obj(raw, path)
    _reject_unknown(obj, {"host", "port", "directory", "hostKey"}, path)
    host = _str(obj, "host", path)
    assert host is not None
    if not _SFTP_HOST.fullmatch(host):
        raise PlanError(f"{path}.host", f"not a host name or IP address: {host!r}")
    port = _int(obj, "port", path, minimum=1)
    if port is not None and port > 65535:
        raise PlanError(f"{path}.port", "must be at most 65535")
    directory = _str(obj, "directory", path)
    assert directory is not None
    if not directory.startswith("/") or any(seg in (".", "..") for seg in directory.split("/")):
        raise PlanError(f"{path}.directory", "must be an absolute path without . or .. "
                        f"segments, got {directory!r}")
    host_key = _str(obj, "hostKey", path, required=False) or ""
    if host_key and not _HOST_KEY.fullmatch(host_key):
        raise PlanError(f"{path}.hostKey", "must be one OpenSSH public key line "
                        "(<type> <base64>), e.g. from ssh-keyscan")
    return SftpDestination(host=host, port=port or 22, directory=directory.rstrip("/") or "/",
                           host_key=host_key)


def _destination(raw: object) -> Destination | SftpDestination:
    obj = _obj(raw, "plan.destination")
    if "sftp" in obj:
        _reject_unknown(obj, {"sftp"}, "plan.destination")
        return _sftp(obj["sftp"])
    _reject_unknown(obj, {"bucket", "prefix", "endpoint", "region", "pathStyle"},
                    "plan.destination")
    bucket = _str(obj, "bucket", "plan.destination")
    assert bucket is not None
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise PlanError("plan.destination.bucket", f"not a valid S3 bucket name: {bucket!r}")
    endpoint = _str(obj, "endpoint", "plan.destination", required=False)
    if endpoint is not None and not _ENDPOINT.fullmatch(endpoint):
        raise PlanError("plan.destination.endpoint",
                        "must be an http(s) URL without credentials")
    path_style = obj.get("pathStyle", False)
    if not isinstance(path_style, bool):
        raise PlanError("plan.destination.pathStyle", "must be a boolean")
    return Destination(
        bucket=bucket,
        prefix=_prefix(_str(obj, "prefix", "plan.destination", required=False)),
        endpoint=endpoint,
        region=_str(obj, "region", "plan.destination", required=False),
        path_style=path_style,
    )


def _seal(raw: object, sealing: bool) -> Seal | None:
    """The ``seal`` object: required by ``ferry-worker seal``, refused by ``export`` (a
    batch plan carrying one is the operator confusing its two Jobs)."""
    if raw is None:
        if sealing:
            raise PlanError("plan.seal", "is required for ferry-worker seal "
                            "({runId, outcome} of the run that ended)")
        return None
    if not sealing:
        raise PlanError("plan.seal", "only for ferry-worker seal, not in a batch's plan")
    obj = _obj(raw, "plan.seal")
    _reject_unknown(obj, {"runId", "outcome"}, "plan.seal")
    run_id = obj.get("runId")
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise PlanError("plan.seal.runId", f"must match {_RUN_ID.pattern}, got {run_id!r}")
    if "outcome" not in obj:
        raise PlanError("plan.seal.outcome", "is required")
    outcome = cast(RunOutcome, _choice(obj, "outcome", "plan.seal", RUN_OUTCOMES, ""))
    return Seal(run_id, outcome)


_PLAN_FIELDS = {
    "job", "run", "source", "columns", "filters", "window", "keyRange", "format",
    "compression", "compressionLevel", "fileSplitSize", "destination", "batchIndex",
    "batchCount", "totals", "slices", "keyPartition", "reuseCommittedSince", "jobUid", "seal",
    "keySplit",
}
_SLICE_FIELDS = {"batchIndex", "window", "keyRange", "keyPartition", "keySplit"}


def _select_slice(obj: dict[str, Any], position: int) -> dict[str, Any]:
    """The plan with ``slices`` resolved to the one at ``position``, whose fields win.

    Only that slice is read: a retry lists only the failed batches, each with its
    original ``batchIndex``, so their files keep their names.
    """
    slices = obj["slices"]
    if position >= len(slices):
        raise PlanError("plan.slices", f"has {len(slices)} entries; no slice for index {position}")
    chosen = _obj(slices[position], f"plan.slices[{position}]")
    _reject_unknown(chosen, _SLICE_FIELDS, f"plan.slices[{position}]")
    resolved = {k: v for k, v in obj.items() if k != "slices"}
    resolved.update(chosen)
    return resolved


def decode_plan(raw: object, completion_index: Callable[[], int],
                batch_index: int | None = None, *, sealing: bool = False) -> Plan:
    """One batch's plan from the decoded ``FERRY_PLAN`` document; :class:`PlanError` names
    the first bad field.

    The batch is ``batch_index`` (the command line; with ``slices`` the position in
    them), else the plan's ``batchIndex``, else ``completion_index()`` (the pod's index,
    asked only when needed). ``sealing`` (``ferry-worker seal``) requires the ``seal``
    object and ignores ``slices``: the seal looks at every batch below ``batchCount``
    whatever slices the ended run's Job had, and its ``batch_index`` is 0, a placeholder.
    """
    obj = _obj(raw, "plan")
    _reject_unknown(obj, _PLAN_FIELDS, "plan")
    seal = _seal(obj.get("seal"), sealing)
    if sealing:
        obj = {k: v for k, v in obj.items() if k != "slices"}
        batch_index = 0
    if "slices" in obj:
        if not isinstance(obj["slices"], list) or not obj["slices"]:
            raise PlanError("plan.slices", "must be a non-empty list")
        obj = _select_slice(obj, completion_index() if batch_index is None else batch_index)
        batch_index = None
    job = _str(obj, "job", "plan")
    assert job is not None
    if not _JOB_NAME.fullmatch(job):
        raise PlanError("plan.job", f"must be a DNS label (a-z, 0-9, '-', max 63), got {job!r}")
    job_uid = _str(obj, "jobUid", "plan", required=False)
    if job_uid is not None and not _JOB_UID.fullmatch(job_uid):
        raise PlanError("plan.jobUid",
                        f"must be an object uid (letters, digits, '-'), got {job_uid!r}")
    run = obj.get("run")
    if isinstance(run, int) and not isinstance(run, bool):
        run = str(run)
    if not isinstance(run, str) or not _RUN_ID.fullmatch(run):
        raise PlanError("plan.run", f"must match {_RUN_ID.pattern}, got {run!r}")
    fmt = cast(Format, _choice(obj, "format", "plan", FORMATS, "csv"))
    compression = cast(Compression, _choice(obj, "compression", "plan", COMPRESSIONS, "none"))
    level = _int(obj, "compressionLevel", "plan", minimum=1)
    if level is None:
        level = DEFAULT_LEVELS[compression]
    elif compression == "none":
        raise PlanError("plan.compressionLevel", "set only together with a compression")
    elif compression == "gzip" and level > 9:
        raise PlanError("plan.compressionLevel", "gzip levels are 1-9")
    elif compression == "zstd" and level > 22:
        raise PlanError("plan.compressionLevel", "zstd levels are 1-22")
    split = _int(obj, "fileSplitSize", "plan", minimum=0) or None
    minimum = min_worker_split_bytes(fmt)
    if split is not None and split < minimum:
        raise PlanError("plan.fileSplitSize",
                        f"must be 0 (no split) or >= {minimum} bytes for {fmt}")
    count = _int(obj, "batchCount", "plan", minimum=1) or 1
    index = batch_index
    if index is None:
        index = _int(obj, "batchIndex", "plan", minimum=0)
    if index is None:
        index = completion_index()
    if index >= count:
        raise PlanError("plan.batchIndex", f"{index} is not below batchCount {count}")
    return Plan(
        job=job,
        run=run,
        source=_source(obj.get("source")),
        columns=_columns(obj.get("columns")),
        filters=_filters(obj.get("filters")),
        window=_window(obj.get("window")),
        key_range=_key_range(obj.get("keyRange")),
        key_partition=_key_partition(obj.get("keyPartition")),
        key_split=_key_split(obj.get("keySplit")),
        format=fmt,
        compression=compression,
        compression_level=level,
        file_split_size=split,
        destination=_destination(obj.get("destination")),
        batch_index=index,
        batch_count=count,
        totals=cast(Totals, _choice(obj, "totals", "plan", TOTALS, "count")),
        reuse_committed_since=_timestamp(obj.get("reuseCommittedSince"),
                                         "plan.reuseCommittedSince"),
        job_uid=job_uid,
        seal=seal,
    )
