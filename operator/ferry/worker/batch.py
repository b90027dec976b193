"""One attempt at one batch: stream, upload, commit the manifest last, clean up.

Written once against :class:`ferry.worker.storage.Store`: the steps below are the
same for an S3 bucket and an SFTP directory ("PUT" is the store's write, "ETag" its
version tag, "412" its :class:`~ferry.worker.storage.ConflictError`).

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

import dataclasses
import datetime as dt
import json
import logging
from typing import Any

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
from ferry.worker.splitting import Sink, SplitFile, TextSplitter
from ferry.worker.storage import ConflictError, Store
from ferry.worker.totals import progress_total

log = logging.getLogger(__name__)

TEXT_CHUNK_BYTES = 1024 * 1024
PARQUET_CHUNK_BYTES = 4 * 1024 * 1024
_SWEEP_MARGIN = dt.timedelta(seconds=1)


@dataclasses.dataclass
class Attempt:
    """Everything one attempt needs; ``attempt`` is its unique id."""

    plan: Plan
    secrets: Secrets
    store: Store
    progress: Progress
    attempt: str
    pod: str | None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The committed manifest document and how we got it."""

    document: dict[str, Any]
    note: str | None = None


# --------------------------------------------------------------------------- commit


def read_manifest(at: Attempt) -> tuple[dict[str, Any] | None, str | None]:
    """The committed manifest (document, version tag) or (None, None)."""
    found = at.store.read(layout.manifest_key(at.plan), "GetObject manifest")
    if found is None:
        return None, None
    return json.loads(found.body), found.tag


def _commit(at: Attempt, manifest: Manifest, prior_tag: str | None) -> dt.datetime:
    """Conditional write of the manifest; returns the server's commit time or LostRace."""
    key = layout.manifest_key(at.plan)
    try:
        return at.store.put(key, manifest.encode(), "application/json", "PutObject manifest",
                            if_absent=prior_tag is None, if_match=prior_tag)
    except ConflictError:
        current = at.store.read(key, "GetObject manifest")
        if current is None:
            raise TransientError("the batch manifest was deleted during this attempt") from None
        document = json.loads(current.body)
        if document.get("attempt") == at.attempt:
            return current.modified  # our own write landed; only its answer was lost
        raise LostRace(json.dumps(document)) from None


def _committed_by_us(at: Attempt) -> bool:
    """After an unclear commit failure: did our manifest land anyway? (False if unknown.)"""
    try:
        current, _ = read_manifest(at)
    except Exception:
        return False
    return current is not None and current.get("attempt") == at.attempt


def _discard(at: Attempt, keys: list[str]) -> None:
    """Best-effort delete of this attempt's files after a failure (never masks it)."""
    try:
        at.store.delete(keys)
    except Exception as exc:
        log.warning("could not delete %d file(s) of the failed attempt: %s", len(keys),
                    type(exc).__name__)


def _sweep(at: Attempt, keep: set[str], prior: dict[str, Any] | None,
           committed_at: dt.datetime) -> None:
    """Delete superseded and orphaned files of this batch (an SFTP attempt's temporary
    files among them), discard stale unfinished uploads."""
    prefix = layout.batch_data_prefix(at.plan)
    cutoff = committed_at - _SWEEP_MARGIN
    doomed = {f["key"] for f in (prior or {}).get("files", [])} - keep
    for listed in at.store.listing(prefix, "ListObjectsV2"):
        if listed.key not in keep and listed.modified < cutoff:
            doomed.add(listed.key)
    at.store.delete(sorted(doomed))
    discarded = at.store.sweep_incomplete(prefix, cutoff)
    if doomed or discarded:
        log.info("swept %d stale file(s) and %d unfinished upload(s) of earlier attempts",
                 len(doomed), discarded)


def append_error(at: Attempt, error: WorkerError) -> None:
    """Append one JSON line to the run's error report for this batch (next to the data,
    in the same store).

    Its reads and writes are retried like any other call: the report is what a user
    reads to learn why a batch failed, and a brief outage is often what made it fail.
    """
    plan = at.plan
    key = layout.error_key(plan)
    record = json.dumps({
        "time": utc_now(), "job": plan.job, "jobUid": plan.job_uid, "run": plan.run,
        "batch": plan.batch_index,
        "attempt": at.attempt, "pod": at.pod, "kind": error.kind,
        "exitCode": int(error.exit_code), "reason": error.reason,
    }, ensure_ascii=False).encode() + b"\n"
    for _ in range(5):
        found = at.store.read(key, "GetObject error report")
        try:
            if found:
                at.store.put(key, found.body + record, "application/jsonl",
                             "PutObject error report", if_match=found.tag)
            else:
                at.store.put(key, record, "application/jsonl", "PutObject error report",
                             if_absent=True)
            return
        except ConflictError:
            continue


# --------------------------------------------------------------------------- data


def _write_files(at: Attempt, reader: BatchReader, columns: list[ColumnInfo]) -> list[SplitFile]:
    plan = at.plan
    ctype = content_type(plan.format, plan.compression)

    def open_file(n: int) -> Sink:
        at.progress.files = n + 1
        return at.store.writer(layout.data_key(plan, at.attempt, n), ctype)

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
    key = layout.key_plan_key(at.plan)

    def read() -> tuple[bytes, str] | None:
        found = at.store.read(key, "GetObject key plan")
        return (found.body, found.tag) if found else None

    def create(body: bytes, replacing: str | None) -> bool:
        try:
            at.store.put(key, body, "application/json", "PutObject key plan",
                         if_absent=replacing is None, if_match=replacing)
        except ConflictError:
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
    clear_earlier_jobs(at.store, plan)
    if plan.key_split is not None:
        plan = _read_key_plan(at)
    prior, prior_tag = read_manifest(at)
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
        committed_at = _commit(at, manifest, prior_tag)
    except LostRace as race:
        at.store.delete(ours)
        winner = json.loads(race.args[0])
        return Outcome(winner, note=f"batch already committed by attempt {winner.get('attempt')}")
    except BaseException:
        if not _committed_by_us(at):
            _discard(at, ours)
        raise
    _sweep(at, set(ours), prior, committed_at)
    return Outcome(manifest.to_json())
