"""One attempt at one batch: stream, upload, commit the manifest last, clean up.

Exactly-once, even with retries, a pod killed at any point, or two pods racing on the
same index (issue 8 item 13):

1. Read the batch manifest's current state (absent, or present with ETag E) and the
   server's clock.
2. Write the data files under attempt-unique keys (``...-<n>-<attempt>.<ext>``). No
   other attempt ever writes these keys, so nothing another attempt committed can be
   overwritten, and a file is visible only once its upload completed.
3. Commit: PUT the manifest with ``If-None-Match: *`` (was absent) or ``If-Match: E``
   (replacing a committed attempt). Exactly one attempt that started from a given state
   can win; a loser gets 412, deletes its own files and exits 0, reporting the winner.
   A 412 caused by our own earlier PUT whose response was lost is recognised by the
   attempt id in the stored manifest.
4. The winner deletes the files of the manifest it replaced, and every other data file
   and multipart upload of this batch older than its commit time (leftovers of killed
   attempts). Anything newer may belong to an attempt that started after the commit and
   may legitimately replace it later, so it is left alone; such an attempt sweeps it.

A failure before the commit aborts the open upload, deletes this attempt's completed
files and appends an error record to the run's error report; no manifest is written,
so readers (who trust only manifests) never see a partial batch.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import email.utils
import functools
import json
import logging
from typing import Any

import botocore.exceptions

from ferry.contract.plan import Plan
from ferry.worker import layout
from ferry.worker.codecs import make_codec
from ferry.worker.errors import LostRace, TransientError, WorkerError
from ferry.worker.formats import ColumnInfo, content_type, csv_header, json_lines
from ferry.worker.keyranges import committed_plan, resolved
from ferry.worker.leftovers import clear_earlier_jobs
from ferry.worker.manifest import Manifest, utc_now
from ferry.worker.plan import Secrets
from ferry.worker.progress import Progress
from ferry.worker.source import BatchReader
from ferry.worker.splitting import SplitFile, TextSplitter
from ferry.worker.totals import progress_total
from ferry.worker.upload import MultipartWriter, Retrier, error_code, read_object

log = logging.getLogger(__name__)

TEXT_CHUNK_BYTES = 1024 * 1024
PARQUET_CHUNK_BYTES = 4 * 1024 * 1024
_SWEEP_MARGIN = dt.timedelta(seconds=1)


@dataclasses.dataclass
class Attempt:
    """Everything one attempt needs; ``attempt`` is its unique id."""

    plan: Plan
    secrets: Secrets
    client: Any
    retry: Retrier
    pool: concurrent.futures.ThreadPoolExecutor
    progress: Progress
    attempt: str
    pod: str | None
    stranded: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    """(key, upload id) of earlier attempts' uploads in this process that could not be
    aborted; the attempt that commits aborts them by id."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The committed manifest document and how we got it."""

    document: dict[str, Any]
    note: str | None = None


# --------------------------------------------------------------------------- S3 state


def _server_time(headers: dict[str, str]) -> dt.datetime:
    date = headers.get("date")
    return email.utils.parsedate_to_datetime(date) if date else dt.datetime.now(dt.UTC)


def read_manifest(at: Attempt) -> tuple[dict[str, Any] | None, str | None, dt.datetime]:
    """The committed manifest (document, ETag) or (None, None), and the server's time."""
    key = layout.manifest_key(at.plan)
    bucket = at.plan.destination.bucket
    try:
        response = at.retry("GetObject manifest", lambda: at.client.get_object(
            Bucket=bucket, Key=key))
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) not in ("NoSuchKey", "404"):
            raise
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return None, None, _server_time(headers)
    document = json.loads(response["Body"].read())
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    return document, str(response["ETag"]), _server_time(headers)


def _commit(at: Attempt, manifest: Manifest, prior_etag: str | None) -> dt.datetime:
    """Conditional PUT of the manifest; returns the server's commit time or LostRace."""
    plan = at.plan
    key = layout.manifest_key(plan)
    condition = {"IfMatch": prior_etag} if prior_etag else {"IfNoneMatch": "*"}
    body = manifest.encode()
    try:
        response = at.retry("PutObject manifest", lambda: at.client.put_object(
            Bucket=plan.destination.bucket, Key=key, Body=body,
            ContentType="application/json", **condition))
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) not in ("PreconditionFailed", "NoSuchKey", "412"):
            raise
        current, _, now = read_manifest(at)
        if current is None:
            raise TransientError("the batch manifest was deleted during this attempt") from None
        if current.get("attempt") == at.attempt:
            return now  # our own PUT landed; only its response was lost
        raise LostRace(json.dumps(current)) from None
    return _server_time(response["ResponseMetadata"]["HTTPHeaders"])


def _committed_by_us(at: Attempt) -> bool:
    """After an unclear commit failure: did our manifest land anyway? (False if unknown.)"""
    try:
        current, _, _ = read_manifest(at)
    except Exception:
        return False
    return current is not None and current.get("attempt") == at.attempt


def _discard(at: Attempt, keys: list[str]) -> None:
    """Best-effort delete of this attempt's files after a failure (never masks it)."""
    try:
        _delete(at, keys)
    except Exception as exc:
        log.warning("could not delete %d file(s) of the failed attempt: %s", len(keys),
                    type(exc).__name__)


def _delete(at: Attempt, keys: list[str]) -> None:
    bucket = at.plan.destination.bucket
    for start in range(0, len(keys), 1000):
        objects = [{"Key": k} for k in keys[start:start + 1000]]
        at.retry("DeleteObjects", lambda objs=objects: at.client.delete_objects(  # type: ignore[misc]
            Bucket=bucket, Delete={"Objects": objs, "Quiet": True}))


def _sweep(at: Attempt, keep: set[str], prior: dict[str, Any] | None,
           committed_at: dt.datetime) -> None:
    """Delete superseded and orphaned files of this batch, abort stale uploads."""
    plan = at.plan
    bucket = plan.destination.bucket
    prefix = layout.batch_data_prefix(plan)
    cutoff = committed_at - _SWEEP_MARGIN
    doomed = {f["key"] for f in (prior or {}).get("files", [])} - keep
    paginator = at.client.get_paginator("list_objects_v2")
    for page in at.retry("ListObjectsV2", lambda: list(paginator.paginate(
            Bucket=bucket, Prefix=prefix))):
        for obj in page.get("Contents", []):
            if obj["Key"] not in keep and obj["LastModified"] < cutoff:
                doomed.add(obj["Key"])
    _delete(at, sorted(doomed))
    uploads = [u for u in _multipart_uploads(at) if u["Key"].startswith(prefix)]
    for upload in uploads:
        if upload["Initiated"] < cutoff:
            at.retry("AbortMultipartUpload", lambda u=upload: at.client.abort_multipart_upload(  # type: ignore[misc]
                Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]))
    stranded = list(at.stranded)
    for key, upload_id in stranded:
        try:
            at.retry("AbortMultipartUpload", lambda k=key, u=upload_id: at.client  # type: ignore[misc]
                     .abort_multipart_upload(Bucket=bucket, Key=k, UploadId=u))
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "NoSuchUpload":
                raise
        at.stranded.remove((key, upload_id))
    if doomed or uploads or stranded:
        log.info("swept %d stale file(s), checked %d upload(s) and aborted %d stranded by "
                 "earlier attempts", len(doomed), len(uploads), len(stranded))


def _multipart_uploads(at: Attempt) -> list[dict[str, Any]]:
    """All open multipart uploads of the bucket.

    Listed without a prefix and filtered by the caller, because MinIO only honours a
    prefix that is a complete object key.
    """
    bucket = at.plan.destination.bucket
    paginator = at.client.get_paginator("list_multipart_uploads")
    pages = at.retry("ListMultipartUploads", lambda: list(paginator.paginate(Bucket=bucket)))
    return [u for page in pages for u in page.get("Uploads", [])]


def append_error(at: Attempt, error: WorkerError) -> None:
    """Append one JSON line to the run's error report for this batch.

    Its reads and writes are retried like any S3 call: the report is what a user reads
    to learn why a batch failed, and a brief outage is often what made it fail.
    """
    plan = at.plan
    key = layout.error_key(plan)
    record = json.dumps({
        "time": utc_now(), "job": plan.job, "jobUid": plan.job_uid, "run": plan.run,
        "batch": plan.batch_index,
        "attempt": at.attempt, "pod": at.pod, "kind": error.kind,
        "exitCode": int(error.exit_code), "reason": error.reason,
    }, ensure_ascii=False).encode() + b"\n"
    bucket = plan.destination.bucket
    for _ in range(5):
        found = read_object(at.client, at.retry, bucket, key, "GetObject error report")
        if found:
            body, condition = found[0] + record, {"IfMatch": found[1]}
        else:
            body, condition = record, {"IfNoneMatch": "*"}
        try:
            at.retry("PutObject error report", functools.partial(
                at.client.put_object, Bucket=bucket, Key=key, Body=body,
                ContentType="application/jsonl", **condition))
            return
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise


# --------------------------------------------------------------------------- data


def _write_files(at: Attempt, reader: BatchReader, columns: list[ColumnInfo]) -> list[SplitFile]:
    plan = at.plan
    ctype = content_type(plan.format, plan.compression)

    def open_file(n: int) -> MultipartWriter:
        at.progress.files = n + 1
        return MultipartWriter(at.client, plan.destination.bucket,
                               layout.data_key(plan, at.attempt, n), ctype, at.pool, at.retry,
                               stranded=at.stranded)

    if plan.format == "parquet":
        from ferry.worker.parquet import CsvToArrow, ParquetSplitter  # noqa: PLC0415 - pyarrow is slow to import and only Parquet needs it

        convert = CsvToArrow(columns)
        parquet = ParquetSplitter(open_file, plan.file_split_size, convert.schema,
                                  plan.compression, plan.compression_level, at.progress.add)
        try:
            for chunk in reader.rows(columns, PARQUET_CHUNK_BYTES):
                parquet.write_table(convert.table(chunk))
            return parquet.finish()
        except BaseException:
            parquet.abort()
            _discard(at, [f.stored.key for f in parquet.files])
            raise
    header = csv_header(columns) if plan.format == "csv" else b""
    text = TextSplitter(open_file, plan.file_split_size,
                        lambda: make_codec(plan.compression, plan.compression_level),
                        header, at.progress.add)
    lines = json_lines(columns) if plan.format == "jsonl" else None
    try:
        for chunk in reader.rows(columns, TEXT_CHUNK_BYTES):
            text.write_chunk(chunk if lines is None else lines(chunk))
        return text.finish()
    except BaseException:
        text.abort()
        _discard(at, [f.stored.key for f in text.files])
        raise


def _column_doc(col: ColumnInfo) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": col.name, "typeOid": col.type_oid}
    if col.precision is not None:
        doc["precision"], doc["scale"] = col.precision, col.scale
    return doc


def committed_for_this_run(plan: Plan, manifest: dict[str, Any]) -> bool:
    """Whether a committed manifest is this run's (see Plan.reuse_committed_since): a
    manifest from before the run started (an earlier ExportJob of the same name wrote
    the same run folder) is replaced as usual."""
    since = plan.reuse_committed_since
    started = manifest.get("startedAt")
    if since is None or not isinstance(started, str) or manifest.get("run") != plan.run:
        return False
    try:
        return dt.datetime.fromisoformat(started) >= since
    except ValueError:
        return False


def _read_key_plan(at: Attempt) -> Plan:
    """The batch's plan with its share of the run's committed key plan (made by the
    first batch to get here); every attempt reads it again, so a retry uses it too."""
    bucket, key = at.plan.destination.bucket, layout.key_plan_key(at.plan)

    def read() -> tuple[bytes, str] | None:
        return read_object(at.client, at.retry, bucket, key, "GetObject key plan")

    def create(body: bytes, replacing: str | None) -> bool:
        condition = {"IfMatch": replacing} if replacing else {"IfNoneMatch": "*"}
        try:
            at.retry("PutObject key plan", lambda: at.client.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType="application/json",
                **condition))
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "412",
                                       "ConditionalRequestConflict"):
                raise
            return False
        return True

    key_plan = committed_plan(read, create, at.secrets.source_dsn, at.plan,
                              at.pod or f"attempt {at.attempt}")
    at.plan, at.progress.key_range = resolved(at.plan, key_plan)
    log.info("batch %d reads %s", at.plan.batch_index, at.progress.key_range)
    return at.plan


def run_attempt(at: Attempt) -> Outcome:
    """Export the batch once; returns the committed manifest (ours or a racing winner's)."""
    plan = at.plan
    started = utc_now()
    clear_earlier_jobs(at.client, at.retry, plan)
    if plan.key_split is not None:
        plan = _read_key_plan(at)
    prior, prior_etag, _ = read_manifest(at)
    if prior is not None and committed_for_this_run(plan, prior):
        return Outcome(prior, note=f"batch already committed by attempt {prior.get('attempt')} "
                       "of this run: not exported again")
    with BatchReader(at.secrets.source_dsn, plan) as reader:
        columns = reader.describe()
        log.info("batch %d: exporting as %s", plan.batch_index, plan.format)
        with progress_total(reader, at.secrets.source_dsn, plan, at.progress):
            files = _write_files(at, reader, columns)
    manifest = Manifest(
        job=plan.job, run=plan.run, batch=plan.batch_index, batch_count=plan.batch_count,
        attempt=at.attempt, pod=at.pod, format=plan.format, compression=plan.compression,
        started_at=started, finished_at=utc_now(), records=sum(f.records for f in files),
        total=at.progress.total, columns=[_column_doc(c) for c in columns], files=files,
        job_uid=plan.job_uid,
    )
    ours = [f.stored.key for f in files]
    try:
        committed_at = _commit(at, manifest, prior_etag)
    except LostRace as race:
        _delete(at, ours)
        winner = json.loads(race.args[0])
        return Outcome(winner, note=f"batch already committed by attempt {winner.get('attempt')}")
    except BaseException:
        if not _committed_by_us(at):
            _discard(at, ours)
        raise
    _sweep(at, set(ours), prior, committed_at)
    return Outcome(manifest.to_json())
