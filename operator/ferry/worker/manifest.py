"""The batch manifest (the commit record in S3) and the pod's termination message.

The manifest holds the full detail (every file with size, SHA-256 and record count);
the termination message is what the controller reads from the pod status: a
:mod:`ferry.contract.summary` message, which its encoder keeps under the kubelet's 4096
bytes by listing fewer files or shortening the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

from ferry.contract.summary import BatchFailed, BatchSucceeded, FileRef, encode_summary
from ferry.worker.splitting import SplitFile

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
MANIFEST_VERSION = 1


def utc_now() -> str:
    """Current time as RFC 3339 UTC with a Z (what the manifest and progress use)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass
class Manifest:
    """What one committed batch attempt produced."""

    job: str
    run: str
    batch: int
    batch_count: int
    attempt: str
    pod: str | None
    format: str
    compression: str
    started_at: str
    finished_at: str
    records: int
    total: int | None
    columns: list[dict[str, Any]]
    files: list[SplitFile]
    job_uid: str | None = None
    """The ExportJob's uid (Plan.job_uid): tells this job's batches from those an earlier
    ExportJob of the same name left in the same run folder."""

    @property
    def size(self) -> int:
        """Bytes over all files."""
        return sum(f.stored.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        """The manifest document."""
        return {
            "version": MANIFEST_VERSION,
            "job": self.job,
            **({"jobUid": self.job_uid} if self.job_uid else {}),
            "run": self.run,
            "batch": self.batch,
            "batchCount": self.batch_count,
            "attempt": self.attempt,
            "pod": self.pod,
            "format": self.format,
            "compression": self.compression,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "records": self.records,
            "total": self.total,
            "bytes": self.size,
            "columns": self.columns,
            "files": [
                {"key": f.stored.key, "size": f.stored.size, "sha256": f.stored.sha256,
                 "records": f.records, "etag": f.stored.etag}
                for f in self.files
            ],
        }

    def encode(self) -> bytes:
        """UTF-8 JSON, pretty enough to read in a console."""
        return json.dumps(self.to_json(), indent=1, ensure_ascii=False).encode()


def summary(document: dict[str, Any], manifest_key: str, note: str | None = None,
            key_range: str | None = None) -> str:
    """Success termination message from a manifest document (ours or the winner's)."""
    files = tuple(FileRef(f["key"], f["size"], f["sha256"]) for f in document.get("files", []))
    return encode_summary(BatchSucceeded(
        batch=document["batch"], records=document["records"], bytes=document["bytes"],
        manifest=manifest_key, files=files, file_count=len(files), note=note,
        key_range=key_range))


def failure(batch: int, kind: str, exit_code: int, reason: str) -> str:
    """Failure termination message: one line, the reason shortened to fit."""
    return encode_summary(BatchFailed(batch, kind, exit_code, reason))


def write_termination_message(text: str, path: str | None) -> None:
    """Write to the termination log; skipped where there is none (outside a pod).

    The default path is only used when it already exists (the kubelet mounts it), so a
    local run as root does not create a stray file under /dev.
    """
    target = Path(path or DEFAULT_TERMINATION_PATH)
    if path is None and not target.exists():
        return
    with contextlib.suppress(OSError):
        target.write_text(text + "\n")
