"""What the operator reads of a batch from its pod, whichever document the pod has.

While a batch runs its pod has the progress annotation (ferry.contract.progress); once
it ended, its termination message (ferry.contract.summary) says more. The run's live
counts come from whichever is the latest, so this reads the fields the two share by
name, without asking which kind of document it is: a document from an older worker, or
one cut short, still gives the counts it has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ferry.contract.progress import count


@dataclasses.dataclass(frozen=True)
class BatchReport:
    """A batch's counts and, for a failed one, why (None: the document does not say)."""

    records: int | None
    total: int | None
    bytes: int | None
    files: int
    rejected: int | None
    """An import's rows rejected into the audit log (None: an export's, or not said)."""
    reason: str | None
    kind: str | None
    key_range: str | None = None
    """The batch's share of a run split by key, as its worker read it from the run's
    committed key plan (ferry.worker.keyranges); None before it has."""


def _file_count(document: Mapping[str, Any]) -> int:
    """Progress annotations count files in ``files``; termination messages count them in
    ``fileCount`` and list at most those that fit in 4 KiB."""
    total = count(document, "fileCount")
    if total is not None:
        return total
    files = document.get("files")
    if isinstance(files, list):
        return len(files)
    return count(document, "files") or 0


def _said(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    return str(value) if value else None


def batch_report(document: Mapping[str, Any] | None) -> BatchReport:
    """The report in a pod's termination message or progress annotation (decoded JSON)."""
    document = document or {}
    return BatchReport(records=count(document, "records"), total=count(document, "total"),
                       bytes=count(document, "bytes"), files=_file_count(document),
                       rejected=count(document, "rejected"),
                       reason=_said(document, "reason"), kind=_said(document, "kind"),
                       key_range=_said(document, "keyRange"))
