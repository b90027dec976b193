"""The worker's termination message: what a batch (or a run's seal) ended with.

The kubelet copies it into the pod's status, where the operator reads it: the one
result that reaches the operator without bucket credentials. Four kinds, told apart by
``status``: a committed batch (:class:`BatchSucceeded`), a failure of a batch or of a
seal (:class:`BatchFailed`, ``batch`` -1 for a seal), a written run marker
(:class:`RunSealed`) and a committed import batch (:class:`BatchImported`).
 The kubelet keeps only 4096 bytes, so :func:`encode_summary` first
shortens what the message can spare (:func:`fitted`); the manifest and the run marker
keep everything.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from ferry.contract.limits import TERMINATION_MESSAGE_BYTES
from ferry.contract.progress import count


@dataclasses.dataclass(frozen=True)
class FileRef:
    """A data file the batch committed (the manifest also has its records and ETag)."""

    key: str
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class BatchSucceeded:
    """A committed batch: by this attempt, or by a racing one (``note`` says so)."""

    batch: int
    records: int
    bytes: int
    manifest: str
    """The manifest's key in the bucket."""
    files: tuple[FileRef, ...]
    file_count: int
    """Files the batch committed, also when the message lists only some of them."""
    files_omitted: int = 0
    note: str | None = None
    key_range: str | None = None
    """The batch's share of a run split by ``keyColumn`` (ferry.worker.keyranges)."""


@dataclasses.dataclass(frozen=True)
class BatchFailed:
    """A batch, or a seal (``batch`` -1), that gave up: ``kind`` and ``exit_code`` as the
    worker's exit codes (ferry.contract.exitcodes), ``reason`` for the user."""

    batch: int
    kind: str
    exit_code: int
    reason: str


@dataclasses.dataclass(frozen=True)
class SealedBatch:
    """One committed batch as the run marker counts it."""

    batch: int
    records: int
    files: int
    bytes: int
    started_at: str | None
    finished_at: str | None


@dataclasses.dataclass(frozen=True)
class RunSealed:
    """``ferry-worker seal`` wrote the run marker: the run's committed sums and what is
    missing, the batch rows when they fit."""

    complete: bool
    records: int
    files: int
    bytes: int
    marker: str
    """The run marker's key in the bucket."""
    missing: tuple[int, ...]
    batches: tuple[SealedBatch, ...] | None
    """None when left out to fit (``batches_omitted`` says how many rows there were)."""
    batches_omitted: int | None = None
    missing_omitted: int | None = None


@dataclasses.dataclass(frozen=True)
class BatchImported:
    """A committed import batch (``status`` ``Imported``): ``records`` rows loaded,
    ``rejected`` rows written to the audit log instead, files loaded and skipped (loaded
    before, by this run or, with newFilesOnly, by an earlier one). ``bytes`` and
    ``file_count`` read as the export's do (ferry.contract.report)."""

    batch: int
    records: int
    rejected: int
    bytes: int
    file_count: int
    files_skipped: int
    audit_log: str | None
    """The audit log's key (bucket: the plan's ``errors``); None when no row was rejected."""
    note: str | None = None


Summary = BatchSucceeded | BatchFailed | RunSealed | BatchImported


# --------------------------------------------------------------------------- encoding


def _file_json(ref: FileRef) -> dict[str, Any]:
    return {"key": ref.key, "size": ref.size, "sha256": ref.sha256}


def summary_document(summary: Summary) -> dict[str, Any]:
    """The message as a JSON object, as it is written (no shortening)."""
    if isinstance(summary, BatchSucceeded):
        doc: dict[str, Any] = {
            "status": "Succeeded", "batch": summary.batch, "records": summary.records,
            "bytes": summary.bytes, "fileCount": summary.file_count,
            "manifest": summary.manifest, "files": [_file_json(f) for f in summary.files]}
        if summary.note:
            doc["note"] = summary.note
        if summary.files_omitted:
            doc["filesOmitted"] = summary.files_omitted
        if summary.key_range:
            doc["keyRange"] = summary.key_range
        return doc
    if isinstance(summary, BatchImported):
        doc = {"status": "Imported", "batch": summary.batch, "records": summary.records,
               "rejected": summary.rejected, "bytes": summary.bytes,
               "fileCount": summary.file_count, "filesSkipped": summary.files_skipped}
        if summary.audit_log:
            doc["auditLog"] = summary.audit_log
        if summary.note:
            doc["note"] = summary.note
        return doc
    if isinstance(summary, BatchFailed):
        return {"status": "Failed", "batch": summary.batch, "kind": summary.kind,
                "exitCode": summary.exit_code, "reason": summary.reason}
    doc = {"status": "Sealed", "complete": summary.complete, "records": summary.records,
           "files": summary.files, "bytes": summary.bytes, "marker": summary.marker,
           "missing": list(summary.missing)}
    if summary.batches is not None:
        doc["batches"] = [[b.batch, b.records, b.files, b.bytes, b.started_at, b.finished_at]
                          for b in summary.batches]
    if summary.batches_omitted is not None:
        doc["batchesOmitted"] = summary.batches_omitted
    if summary.missing_omitted is not None:
        doc["missingOmitted"] = summary.missing_omitted
    return doc


def _render(summary: Summary) -> str:
    return json.dumps(summary_document(summary), separators=(",", ":"), ensure_ascii=False)


def _fits(summary: Summary) -> bool:
    return len(_render(summary).encode()) <= TERMINATION_MESSAGE_BYTES


def _fitted_success(summary: BatchSucceeded) -> BatchSucceeded:
    """The file list halved until it fits (``fileCount`` still counts them all)."""
    files = summary.files
    while not _fits(summary) and summary.files:
        kept = summary.files[: len(summary.files) // 2]
        summary = dataclasses.replace(summary, files=kept, files_omitted=len(files) - len(kept))
    return summary


def _fitted_failure(summary: BatchFailed) -> BatchFailed:
    """The reason cut by a quarter at a time, marked with ``...``."""
    reason = summary.reason
    while not _fits(summary):
        reason = reason[: len(reason) * 3 // 4]
        summary = dataclasses.replace(summary, reason=reason + "...")
    return summary


def _fitted_seal(summary: RunSealed) -> RunSealed:
    """The batch rows left out first, then the tail of the missing list halved: a
    1000-batch run canceled early misses nearly all of them."""
    if not _fits(summary) and summary.batches is not None:
        summary = dataclasses.replace(summary, batches=None,
                                      batches_omitted=len(summary.batches))
    missing = summary.missing
    while not _fits(summary) and summary.missing:
        kept = summary.missing[: len(summary.missing) // 2]
        summary = dataclasses.replace(summary, missing=kept,
                                      missing_omitted=len(missing) - len(kept))
    return summary


def fitted(summary: Summary) -> Summary:
    """``summary`` shortened, where it must be, to TERMINATION_MESSAGE_BYTES."""
    if isinstance(summary, BatchSucceeded):
        return _fitted_success(summary)
    if isinstance(summary, BatchFailed):
        return _fitted_failure(summary)
    if isinstance(summary, BatchImported):
        return summary  # a few numbers and two keys of bounded length: always fits
    return _fitted_seal(summary)


def encode_summary(summary: Summary) -> str:
    """The termination message: one line of JSON that the kubelet keeps whole."""
    return _render(fitted(summary))


# --------------------------------------------------------------------------- decoding


def json_object(text: str | None) -> dict[str, Any] | None:
    """A pod's annotation or termination message as a JSON object; anything else (no
    text, log lines the kubelet fell back to, a JSON array) is None."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    return value if isinstance(value, str) else None


def _file_ref(item: object) -> FileRef | None:
    if not isinstance(item, dict):
        return None
    key, sha = _text(item, "key"), _text(item, "sha256")
    size = count(item, "size")
    return FileRef(key, size, sha) if key is not None and size is not None and sha else None


def _sealed_batch(row: object) -> SealedBatch | None:
    if not isinstance(row, list) or len(row) != 6:
        return None
    numbers = dict(zip(("batch", "records", "files", "bytes"), row[:4], strict=True))
    batch, records, files, size = (count(numbers, k) for k in numbers)
    if batch is None or records is None or files is None or size is None:
        return None
    started, finished = (v if isinstance(v, str) else None for v in row[4:])
    return SealedBatch(batch, records, files, size, started, finished)


def _ints(value: object) -> tuple[int, ...]:
    items = value if isinstance(value, list) else []
    return tuple(i for i in items if isinstance(i, int) and not isinstance(i, bool))


def decode_summary(document: Mapping[str, Any] | None) -> Summary | None:
    """The message by its ``status``, read field by field (a field of the wrong type
    reads as absent, see ferry.contract.progress.count); None without a known status."""
    if document is None:
        return None
    status = document.get("status")
    if status == "Succeeded":
        listed = document.get("files")
        files = tuple(f for f in map(_file_ref, listed if isinstance(listed, list) else [])
                      if f is not None)
        return BatchSucceeded(
            batch=count(document, "batch") or 0, records=count(document, "records") or 0,
            bytes=count(document, "bytes") or 0, manifest=_text(document, "manifest") or "",
            files=files, file_count=count(document, "fileCount") or len(files),
            files_omitted=count(document, "filesOmitted") or 0, note=_text(document, "note"),
            key_range=_text(document, "keyRange"))
    if status == "Failed":
        batch = count(document, "batch")
        return BatchFailed(batch=-1 if batch is None else batch,
                           kind=_text(document, "kind") or "unknown",
                           exit_code=count(document, "exitCode") or 0,
                           reason=_text(document, "reason") or "")
    if status == "Imported":
        return BatchImported(
            batch=count(document, "batch") or 0, records=count(document, "records") or 0,
            rejected=count(document, "rejected") or 0, bytes=count(document, "bytes") or 0,
            file_count=count(document, "fileCount") or 0,
            files_skipped=count(document, "filesSkipped") or 0,
            audit_log=_text(document, "auditLog"), note=_text(document, "note"))
    if status == "Sealed":
        rows = document.get("batches")
        return RunSealed(
            complete=document.get("complete") is True, records=count(document, "records") or 0,
            files=count(document, "files") or 0, bytes=count(document, "bytes") or 0,
            marker=_text(document, "marker") or "", missing=_ints(document.get("missing")),
            batches=(tuple(b for b in map(_sealed_batch, rows) if b is not None)
                     if isinstance(rows, list) else None),
            batches_omitted=count(document, "batchesOmitted"),
            missing_omitted=count(document, "missingOmitted"))
    return None
