"""Sealing a finished run: its folder's marker ``_run.json``, and its true counts.

A run's batches commit one by one, so a canceled or failed run's folder holds committed
batches with nothing saying the others are missing, and the operator (no bucket
credentials) counted only the progress it saw before the end, while a batch may have
committed after it. So each run that started is sealed once it has ended: a one-pod
Job (`ferry-worker seal`, `jobspec.build_seal_job`) lists the folder's manifests and
writes ``_run.json``, and its termination message gives the history entry the counts
the manifests commit. A history entry is ``sealed: false`` from the run's end until
then; the schedule, the queue and the next run do not wait for it.
"""

from __future__ import annotations

from ferry.api.status import HistoryEntry
from ferry.contract.layout import RUN_MARKER
from ferry.contract.limits import fit
from ferry.contract.summary import BatchFailed, RunSealed, decode_summary
from ferry.reconcile.progress import SealObservation


def apply_seal(entry: HistoryEntry, seal: SealObservation, location: str) -> tuple[str, str]:
    """Record a finished seal on the run's history entry; returns the Event (type,
    message) that tells the user. A retry seals the folder of the run it repairs, so its
    own records stay what it exported and only the folder's completeness is taken."""
    summary = decode_summary(seal.summary)
    entry.sealed = True
    if seal.finished != "Complete" or not isinstance(summary, RunSealed):
        said = summary.reason if isinstance(summary, BatchFailed) else None
        reason = said or seal.message or "the seal Job failed"
        note = f"the run marker {location}/{RUN_MARKER} could not be written: {reason}"
        entry.message = fit(f"{entry.message}; {note}" if entry.message else note)
        return "Warning", f"run {entry.id}: {note}"
    entry.run_marker = f"{location}/{RUN_MARKER}"
    entry.complete = summary.complete
    missing = list(summary.missing)
    entry.missing_batches = missing or None
    if not entry.retry_of:
        entry.records = summary.records
        entry.files = summary.files
        entry.bytes = summary.bytes
    state = "complete" if entry.complete else f"incomplete, batches {missing} missing"
    return "Normal", f"run {entry.id}: wrote {entry.run_marker} ({state})"
