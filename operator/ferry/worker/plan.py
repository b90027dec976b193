"""The worker's input contract: one batch's resolved plan, parsed and validated.

The controller resolves everything (time window, key range, batch index) before it
creates the Job, so the worker needs no Kubernetes API to know what to do. Non-secret
settings arrive as JSON in ``FERRY_PLAN`` (or a file named by ``FERRY_PLAN_FILE`` or
``--plan-file``); secrets arrive as separate environment variables filled from Secret
references, so they never appear in the Job spec:

``FERRY_SOURCE_DSN``
    libpq connection string or URI of the source database (required by ``export``;
    ``seal`` reads only the bucket).
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``
    S3 credentials; when absent boto3's default chain applies (e.g. IRSA).

Other environment: ``JOB_COMPLETION_INDEX`` (set by Indexed Jobs) is the batch index
when the plan does not fix one; ``POD_NAME`` / ``POD_NAMESPACE`` (downward API) turn on
the progress annotation; ``FERRY_TERMINATION_MESSAGE_PATH`` overrides
``/dev/termination-log``. The full reference with an example is docs/worker.md.

Every validation error is a :class:`ConfigError` naming the offending field with its
JSON path (``plan.keyRange.lo: ...``), because the reason ends up verbatim in the run's
status and a user must be able to act on it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from ferry.contract.limits import MAX_FILTER_VALUES, MAX_QUERY_CHARACTERS, MAX_SELECTED_COLUMNS
from ferry.worker.errors import ConfigError

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
MIN_SPLIT_SIZE = 1024
MIN_PARQUET_SPLIT_SIZE = 64 * 1024
DEFAULT_LEVELS: Mapping[Compression, int] = {"none": 0, "gzip": 1, "zstd": 3}

_JOB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_RUN_ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9!_.*'()=+-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_JOB_UID = re.compile(r"^[A-Za-z0-9-]{1,128}$")
_IDENT_MAX = 63  # NAMEDATALEN - 1


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
class Destination:
    """Where the files go; credentials are not here (environment only)."""

    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None
    path_style: bool


@dataclasses.dataclass(frozen=True)
class Seal:
    """What ``ferry-worker seal`` records about the run that ended (the operator's view).

    ``run_id`` is the run that ended, which for a retry is not the folder's run (the
    retry exports into the folder of the run it retries); ``outcome`` is its phase.
    """

    run_id: str
    outcome: RunOutcome


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything one batch needs, validated."""

    job: str
    run: str
    source: Source
    columns: tuple[str, ...]
    filters: tuple[Filter, ...]
    window: Window | None
    key_range: KeyRange | None
    key_partition: KeyPartition | None
    format: Format
    compression: Compression
    compression_level: int
    file_split_size: int | None
    destination: Destination
    batch_index: int
    batch_count: int
    totals: Totals
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


@dataclasses.dataclass(frozen=True)
class Secrets:
    """Values taken from Secret-backed environment variables; never logged."""

    source_dsn: str
    """Empty for ``seal``, which never connects to the database."""
    aws_access_key_id: str | None
    aws_secret_access_key: str | None
    aws_session_token: str | None


# --------------------------------------------------------------------------- helpers


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _obj(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object, got {type(value).__name__}")
    return cast(dict[str, Any], value)


def _reject_unknown(obj: Mapping[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        allowed_list = ", ".join(sorted(allowed))
        raise _fail(f"{path}.{unknown[0]}", f"unknown field (allowed: {allowed_list})")


def _str(obj: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _fail(f"{path}.{key}", "is required")
        return None
    if not isinstance(value, str) or not value:
        raise _fail(f"{path}.{key}", "must be a non-empty string")
    return value


def _ident(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(path, "must be a non-empty string")
    if len(value.encode()) > _IDENT_MAX:
        raise _fail(path, f"identifier longer than {_IDENT_MAX} bytes")
    if "\x00" in value:
        raise _fail(path, "identifier contains a NUL character")
    return value


def _int(obj: Mapping[str, Any], key: str, path: str, *, minimum: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{path}.{key}", "must be an integer")
    if value < minimum:
        raise _fail(f"{path}.{key}", f"must be >= {minimum}, got {value}")
    return value


def _choice(obj: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...],
            default: str) -> str:
    value = obj.get(key, default)
    if value not in choices:
        raise _fail(f"{path}.{key}", f"must be one of {', '.join(choices)}, got {value!r}")
    return cast(str, value)


def _scalar(value: object, path: str) -> Scalar:
    if isinstance(value, str | int | float | bool):
        if isinstance(value, str) and "\x00" in value:
            raise _fail(path, "contains a NUL character")
        return value
    raise _fail(path, f"must be a string, number or boolean, got {type(value).__name__}")


def _timestamp(value: object, path: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(path, "must be an RFC 3339 timestamp string")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _fail(path, f"not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise _fail(path, f"needs a UTC offset or Z, got {value!r}")
    return parsed.astimezone(dt.UTC)


# --------------------------------------------------------------------------- sections


def _source(raw: object) -> Source:
    obj = _obj(raw, "plan.source")
    _reject_unknown(obj, {"table", "schema", "query"}, "plan.source")
    if ("table" in obj) == ("query" in obj):
        raise _fail("plan.source", "set exactly one of table or query")
    if "query" in obj:
        if "schema" in obj:
            raise _fail("plan.source.schema", "only allowed with table")
        query = _str(obj, "query", "plan.source")
        assert query is not None
        if len(query) > MAX_QUERY_CHARACTERS:
            raise _fail("plan.source.query", f"longer than {MAX_QUERY_CHARACTERS} characters")
        return Source(query=query.strip().rstrip(";"))
    table = _ident(obj["table"], "plan.source.table")
    schema = _ident(obj["schema"], "plan.source.schema") if "schema" in obj else None
    return Source(table=table, schema=schema)


def _columns(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail("plan.columns", "must be a list of column names")
    if len(raw) > MAX_SELECTED_COLUMNS:
        raise _fail("plan.columns", f"more than {MAX_SELECTED_COLUMNS} columns")
    cols = tuple(_ident(c, f"plan.columns[{i}]") for i, c in enumerate(raw))
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if dupes:
        raise _fail("plan.columns", f"duplicate column {dupes[0]!r}")
    return cols


def _filters(raw: object) -> tuple[Filter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail("plan.filters", "must be a list")
    out = []
    for i, item in enumerate(raw):
        path = f"plan.filters[{i}]"
        obj = _obj(item, path)
        _reject_unknown(obj, {"column", "op", "value", "values"}, path)
        column = _ident(obj.get("column"), f"{path}.column")
        op = cast(FilterOp, _choice(obj, "op", path, FILTER_OPS, "eq"))
        if op in ("isNull", "notNull"):
            if "value" in obj or "values" in obj:
                raise _fail(path, f"op {op} takes no value")
            out.append(Filter(column, op))
        elif op in ("in", "notIn"):
            values = obj.get("values")
            if "value" in obj or not isinstance(values, list) or not values:
                raise _fail(f"{path}.values", f"op {op} needs a non-empty list 'values'")
            if len(values) > MAX_FILTER_VALUES:
                raise _fail(f"{path}.values", f"more than {MAX_FILTER_VALUES} values")
            out.append(Filter(column, op, tuple(
                _scalar(v, f"{path}.values[{j}]") for j, v in enumerate(values))))
        else:
            if "values" in obj or "value" not in obj or obj["value"] is None:
                raise _fail(f"{path}.value", f"op {op} needs a non-null 'value'")
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
        raise _fail("plan.window", "from must be before to (the window is [from, to))")
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
        raise _fail("plan.keyRange", "lo and hi must be numbers or strings, not booleans")
    if lo is not None and hi is not None:
        if type(lo) is not type(hi) and not all(isinstance(v, int | float) for v in (lo, hi)):
            raise _fail("plan.keyRange", "lo and hi must have the same type")
        if lo >= hi:  # type: ignore[operator]
            raise _fail("plan.keyRange", "lo must be below hi (the range is [lo, hi))")
    nulls = obj.get("includeNulls", False)
    if not isinstance(nulls, bool):
        raise _fail("plan.keyRange.includeNulls", "must be a boolean")
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
        raise _fail("plan.keyPartition", "needs integers index and count")
    if index >= count:
        raise _fail("plan.keyPartition.index", f"{index} is not below count {count}")
    return KeyPartition(column, index, count)


def _prefix(value: str | None) -> str:
    if value is None:
        return ""
    if len(value) > 512:
        raise _fail("plan.destination.prefix", "longer than 512 characters")
    segments = value.strip("/").split("/")
    for seg in segments:
        if seg in ("", ".", "..") or not _PREFIX_SEGMENT.fullmatch(seg):
            raise _fail(
                "plan.destination.prefix",
                f"segment {seg!r} not allowed (letters, digits and !_.*'()=+- only; "
                "no empty, '.' or '..' segments)",
            )
    return "/".join(segments)


def _destination(raw: object) -> Destination:
    obj = _obj(raw, "plan.destination")
    _reject_unknown(obj, {"bucket", "prefix", "endpoint", "region", "pathStyle"},
                    "plan.destination")
    bucket = _str(obj, "bucket", "plan.destination")
    assert bucket is not None
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise _fail("plan.destination.bucket", f"not a valid S3 bucket name: {bucket!r}")
    endpoint = _str(obj, "endpoint", "plan.destination", required=False)
    if endpoint is not None and not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", endpoint):
        raise _fail("plan.destination.endpoint",
                    "must be an http(s) URL without credentials")
    path_style = obj.get("pathStyle", False)
    if not isinstance(path_style, bool):
        raise _fail("plan.destination.pathStyle", "must be a boolean")
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
            raise _fail("plan.seal", "is required for ferry-worker seal "
                        "({runId, outcome} of the run that ended)")
        return None
    if not sealing:
        raise _fail("plan.seal", "only for ferry-worker seal, not in a batch's plan")
    obj = _obj(raw, "plan.seal")
    _reject_unknown(obj, {"runId", "outcome"}, "plan.seal")
    run_id = obj.get("runId")
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise _fail("plan.seal.runId", f"must match {_RUN_ID.pattern}, got {run_id!r}")
    if "outcome" not in obj:
        raise _fail("plan.seal.outcome", "is required")
    outcome = cast(RunOutcome, _choice(obj, "outcome", "plan.seal", RUN_OUTCOMES, ""))
    return Seal(run_id, outcome)


_PLAN_FIELDS = {
    "job", "run", "source", "columns", "filters", "window", "keyRange", "format",
    "compression", "compressionLevel", "fileSplitSize", "destination", "batchIndex",
    "batchCount", "totals", "slices", "keyPartition", "reuseCommittedSince", "jobUid", "seal",
}
_SLICE_FIELDS = {"batchIndex", "window", "keyRange", "keyPartition"}


def _completion_index(env: Mapping[str, str]) -> int:
    value = env.get("JOB_COMPLETION_INDEX", "0")
    if not value.isdigit():
        raise _fail("JOB_COMPLETION_INDEX", f"must be an integer >= 0, got {value!r}")
    return int(value)


def select_slice(obj: dict[str, Any], env: Mapping[str, str],
                 position: int | None) -> dict[str, Any]:
    """Resolve ``slices`` to one batch: an Indexed Job gives every pod the same plan.

    The controller lists one slice per completion index (a retry lists only the failed
    batches, each with its original ``batchIndex``, so their files keep their names);
    the pod's completion index (or ``position``) picks its slice, whose fields override
    the plan's.
    """
    slices = obj["slices"]
    if not isinstance(slices, list) or not slices:
        raise _fail("plan.slices", "must be a non-empty list")
    index = _completion_index(env) if position is None else position
    if index >= len(slices):
        raise _fail("plan.slices", f"has {len(slices)} entries; no slice for index {index}")
    chosen = _obj(slices[index], f"plan.slices[{index}]")
    _reject_unknown(chosen, _SLICE_FIELDS, f"plan.slices[{index}]")
    resolved = {k: v for k, v in obj.items() if k != "slices"}
    resolved.update(chosen)
    return resolved


def parse_plan(raw: object, env: Mapping[str, str], batch_index: int | None = None, *,
               sealing: bool = False) -> Plan:
    """Validate a decoded plan; ``batch_index`` (CLI) beats the plan beats the env.

    ``sealing`` (``ferry-worker seal``) requires the ``seal`` object and ignores
    ``slices``: the seal looks at every batch below ``batchCount`` whatever slices the
    ended run's Job had (a retry lists only the batches it redid), and a one-pod Job has
    no completion index to pick one by. Its ``batch_index`` is 0, a placeholder.
    """
    obj = _obj(raw, "plan")
    _reject_unknown(obj, _PLAN_FIELDS, "plan")
    seal = _seal(obj.get("seal"), sealing)
    if sealing:
        obj = {k: v for k, v in obj.items() if k != "slices"}
        batch_index = 0
    if "slices" in obj:
        obj = select_slice(obj, env, batch_index)
        batch_index = None
    job = _str(obj, "job", "plan")
    assert job is not None
    if not _JOB_NAME.fullmatch(job):
        raise _fail("plan.job", f"must be a DNS label (a-z, 0-9, '-', max 63), got {job!r}")
    job_uid = _str(obj, "jobUid", "plan", required=False)
    if job_uid is not None and not _JOB_UID.fullmatch(job_uid):
        raise _fail("plan.jobUid", f"must be an object uid (letters, digits, '-'), got {job_uid!r}")
    run = obj.get("run")
    if isinstance(run, int) and not isinstance(run, bool):
        run = str(run)
    if not isinstance(run, str) or not _RUN_ID.fullmatch(run):
        raise _fail("plan.run", f"must match {_RUN_ID.pattern}, got {run!r}")
    fmt = cast(Format, _choice(obj, "format", "plan", FORMATS, "csv"))
    compression = cast(Compression, _choice(obj, "compression", "plan", COMPRESSIONS, "none"))
    level = _int(obj, "compressionLevel", "plan", minimum=1)
    if level is None:
        level = DEFAULT_LEVELS[compression]
    elif compression == "none":
        raise _fail("plan.compressionLevel", "set only together with a compression")
    elif compression == "gzip" and level > 9:
        raise _fail("plan.compressionLevel", "gzip levels are 1-9")
    elif compression == "zstd" and level > 22:
        raise _fail("plan.compressionLevel", "zstd levels are 1-22")
    split = _int(obj, "fileSplitSize", "plan", minimum=0) or None
    minimum = MIN_PARQUET_SPLIT_SIZE if fmt == "parquet" else MIN_SPLIT_SIZE
    if split is not None and split < minimum:
        raise _fail("plan.fileSplitSize", f"must be 0 (no split) or >= {minimum} bytes for {fmt}")
    count = _int(obj, "batchCount", "plan", minimum=1) or 1
    index = batch_index
    if index is None:
        index = _int(obj, "batchIndex", "plan", minimum=0)
    if index is None:
        index = _completion_index(env)
    if index >= count:
        raise _fail("plan.batchIndex", f"{index} is not below batchCount {count}")
    return Plan(
        job=job,
        run=run,
        source=_source(obj.get("source")),
        columns=_columns(obj.get("columns")),
        filters=_filters(obj.get("filters")),
        window=_window(obj.get("window")),
        key_range=_key_range(obj.get("keyRange")),
        key_partition=_key_partition(obj.get("keyPartition")),
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


def load_plan(env: Mapping[str, str], plan_file: str | None = None,
              batch_index: int | None = None, *, sealing: bool = False) -> Plan:
    """Read the plan from ``--plan-file``, ``FERRY_PLAN_FILE`` or ``FERRY_PLAN``."""
    path = plan_file or env.get("FERRY_PLAN_FILE")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"plan file {path}: {exc.strerror}") from None
        origin = f"plan file {path}"
    elif env.get("FERRY_PLAN"):
        text, origin = env["FERRY_PLAN"], "FERRY_PLAN"
    else:
        raise ConfigError("FERRY_PLAN: is required (JSON plan; or FERRY_PLAN_FILE / --plan-file)")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                          f"{exc.msg}") from None
    return parse_plan(raw, env, batch_index, sealing=sealing)


def load_secrets(env: Mapping[str, str], *, source: bool = True) -> Secrets:
    """Read the Secret-backed variables; only the source DSN is mandatory, and only with
    ``source`` (``seal`` reads the bucket alone, so its pod is given no DSN)."""
    dsn = env.get("FERRY_SOURCE_DSN", "") if source else ""
    if source and not dsn.strip():
        raise ConfigError("FERRY_SOURCE_DSN: is required (source connection string from a Secret)")
    key_id = env.get("AWS_ACCESS_KEY_ID") or None
    secret = env.get("AWS_SECRET_ACCESS_KEY") or None
    if (key_id is None) != (secret is None):
        raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set both or neither")
    return Secrets(dsn, key_id, secret, env.get("AWS_SESSION_TOKEN") or None)
