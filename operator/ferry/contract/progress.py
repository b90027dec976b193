"""The progress annotation ``ferry.dev/progress`` a worker writes on its own pod.

The worker publishes it at most every 2 s while it exports (ferry.worker.progress), the
operator reads it when it polls a run in progress (ferry.reconcile.progress). It is
advisory: the termination message and the manifest are what a batch commits, so a
missing or garbled annotation only costs the live counts, never the run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Progress:
    """One batch's counts so far.

    ``phase`` is ``Running`` until the worker's final annotation (``Succeeded`` or
    ``Failed``); ``total`` is None until the batch's rows are counted (``totals``).
    """

    batch: int
    phase: str
    records: int
    total: int | None
    bytes: int
    files: int
    updated_at: str | None = None
    """When the worker published it (RFC 3339 UTC); None before it is published."""
    rejected: int | None = None
    """Rows an import sent to its audit log so far (None: an export, which has none)."""
    key_range: str | None = None
    """The batch's share of a run split by ``keyColumn`` (its key range, or hash
    partition), as the worker read it from the run's committed key plan."""


def encode_progress(progress: Progress) -> str:
    """The annotation's value: one line of compact JSON."""
    document: dict[str, Any] = {
        "batch": progress.batch, "phase": progress.phase, "records": progress.records,
        "total": progress.total, "bytes": progress.bytes, "files": progress.files}
    if progress.updated_at is not None:
        document["updatedAt"] = progress.updated_at
    if progress.rejected is not None:
        document["rejected"] = progress.rejected
    if progress.key_range is not None:
        document["keyRange"] = progress.key_range
    return json.dumps(document, separators=(",", ":"))


def count(document: Mapping[str, Any], key: str) -> int | None:
    """An integer field of a worker's JSON document; anything else (a bool, a string,
    absent) is None: what a pod writes is read, never trusted to be well formed."""
    value = document.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text(document: Mapping[str, Any], key: str) -> str | None:
    """A non-empty string field of a worker's JSON document, else None."""
    value = document.get(key)
    return value if isinstance(value, str) and value else None


def decode_progress(document: Mapping[str, Any]) -> Progress:
    """The annotation as the worker wrote it, read field by field (see :func:`count`)."""
    phase = document.get("phase")
    updated = document.get("updatedAt")
    return Progress(
        batch=count(document, "batch") or 0,
        phase=phase if isinstance(phase, str) else "Running",
        records=count(document, "records") or 0,
        total=count(document, "total"),
        bytes=count(document, "bytes") or 0,
        files=count(document, "files") or 0,
        updated_at=updated if isinstance(updated, str) else None,
        rejected=count(document, "rejected"),
        key_range=text(document, "keyRange"),
    )
