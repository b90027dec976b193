"""Live progress of a run, folded from its Job and its pods.

The Job's completed/failed indexes are the truth about finished batches; the pods'
`ferry.dev/progress` annotations (written by the worker at most every ~2 s) and
termination messages fill in records and bytes. Everything here is a pure function
of those observations and the clock.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from ferry.api.common import ConditionReason
from ferry.api.status import BatchCounts, BatchPhase, BatchStatus
from ferry.contract.limits import MAX_SHORT_TEXT_CHARACTERS
from ferry.contract.report import batch_report

PROGRESS_POLL_SECONDS = 5.0
"""How often a run in progress is polled while few are: its pods' progress annotations,
which no watch event reports, move every ~2 s, so a poll this often finds news."""

PROGRESS_POLLS_PER_SECOND = 20.0
"""The operator's budget of progress polls, over all its runs in progress.

A poll is a pod LIST, a Job LIST when the run's Jobs were listed over a minute before
(every poll once polls are over a minute apart, beyond 1,200 runs), and a status write
if progress moved: at most 40 reads and 20 writes a second, and, at 0.2-0.6 s of a
worker each on a busy API server, 4-12 of the 64 reconcile workers. At a fixed 5 s,
10,000 runs ask for 2,000 polls a second, about ten times what 64 workers serve: the
queue's normal lane stays full, so Job events and requests wait behind up to 10,000
polls, and in the 10,000-ExportJob benchmark the Job creation rate fell from ~25 to ~10
a second as started runs polled (BENCHMARKS.md). At 20 a second, 1,000 runs are polled
every 50 s and 10,000 every 500 s, within the default 15 min after which a run without
progress is reported Stalled, so that condition still comes at most one poll late."""


def progress_poll_interval(runs_in_progress: int) -> float:
    """Seconds until a run in progress is polled again, with ``runs_in_progress`` runs
    polled in all: every PROGRESS_POLL_SECONDS up to 100 runs, beyond that as often as
    the budget allows, so the polls of all runs together stay at PROGRESS_POLLS_PER_SECOND.
    What ends a run is not polled for: its Job's watch events wake it at once."""
    return max(PROGRESS_POLL_SECONDS, runs_in_progress / PROGRESS_POLLS_PER_SECOND)


@dataclass(frozen=True)
class PodObservation:
    """What one worker pod says about its batch (completion index)."""

    completion_index: int
    phase: str
    created_at: dt.datetime
    progress: dict[str, Any] | None = None
    """The ``ferry.dev/progress`` annotation, decoded (ferry.contract.progress)."""
    summary: dict[str, Any] | None = None
    """The termination message, decoded (ferry.contract.summary); ``message`` is its text."""
    message: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None


STUCK_REASONS = frozenset({
    "CreateContainerConfigError", "CreateContainerError", "ErrImagePull", "ImagePullBackOff",
    "InvalidImageName",
})
"""Container waiting reasons that no amount of waiting fixes: the spec, a Secret or an
image must change. (ContainerCreating and PodInitializing are progress, not these.)"""


MISSING_SECRET = re.compile(r'secret "[^"]+" not found|couldn\'t find key \S+ in Secret \S+')
"""The kubelet's wording of a CreateContainerConfigError for a missing Secret or key."""


def stuck_reason(messages: list[str]) -> ConditionReason:
    """Ready's reason for pods that cannot start: SecretNotFound when every one waits
    for a Secret or a key in one (create it and they start), else WorkerCannotStart."""
    if messages and all(MISSING_SECRET.search(m) for m in messages):
        return ConditionReason.SECRET_NOT_FOUND
    return ConditionReason.WORKER_CANNOT_START


@dataclass(frozen=True)
class JobObservation:
    """A batch/v1 Job of an ExportJob, reduced to what the controller decides on."""

    name: str
    run_number: int
    completions: int
    finished: str | None = None  # "Complete" or "Failed" once the Job has ended
    active: int = 0
    completed_indexes: frozenset[int] = frozenset()
    failed_indexes: frozenset[int] = frozenset()
    deleting: bool = False
    pods: list[PodObservation] = field(default_factory=list)


@dataclass(frozen=True)
class SealObservation:
    """A run's seal Job (ferry.dev/seal=<run number>): done once it is finished, with
    its last pod's termination message (`ferry-worker seal`'s summary, or its failure)."""

    name: str
    run_number: int
    finished: str | None = None  # "Complete" or "Failed"
    summary: dict[str, Any] | None = None
    message: str | None = None
    deleting: bool = False


def parse_indexes(text: str | None) -> frozenset[int]:
    """A Job's index set, written as ranges: "1,3-5" -> {1, 3, 4, 5}."""
    result: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        result.update(range(int(low), int(high or low) + 1))
    return frozenset(result)


@dataclass(frozen=True)
class RunProgress:
    counts: BatchCounts
    batches: list[BatchStatus]
    records_processed: int
    records_total: int | None
    bytes: int
    files: int
    records_rejected: int | None
    """ImportJob: rows rejected into the audit log by the batches that did not fail
    (a failed batch commits nothing); None when no batch reports any."""
    failed_messages: dict[int, str]
    failed_kinds: dict[int, str]
    stuck: dict[int, str]
    """Batches whose pod cannot start, with the kubelet's reason and message."""


def _latest_by_index(pods: list[PodObservation]) -> dict[int, PodObservation]:
    latest: dict[int, PodObservation] = {}
    for pod in sorted(pods, key=lambda p: p.created_at):
        latest[pod.completion_index] = pod
    return latest


def estimated_total(batch_totals: list[int | None]) -> int | None:
    """The run's expected rows: exact once every batch has counted its rows; before that,
    the batches still pending are assumed to hold the average of those counted (time
    slices of one window are alike), so percent and ETA show from the first count on."""
    known = [t for t in batch_totals if t is not None]
    if not known:
        return None
    missing = len(batch_totals) - len(known)
    return sum(known) + round(missing * sum(known) / len(known))


def fold_progress(job: JobObservation, batch_ids: list[int]) -> RunProgress:
    """Per-batch phases and run totals; ``batch_ids`` maps completion index -> batch index."""
    latest = _latest_by_index(job.pods)
    attempts: dict[int, int] = {}
    for attempt in job.pods:
        attempts[attempt.completion_index] = attempts.get(attempt.completion_index, 0) + 1
    statuses: list[BatchStatus] = []
    processed = byte_count = file_count = 0
    rejected: int | None = None
    failed_messages: dict[int, str] = {}
    failed_kinds: dict[int, str] = {}
    stuck: dict[int, str] = {}
    for completion_index, batch in enumerate(batch_ids):
        pod = latest.get(completion_index)
        report = batch_report((pod.summary or pod.progress) if pod else None)
        if completion_index in job.completed_indexes:
            phase = BatchPhase.SUCCEEDED
        elif completion_index in job.failed_indexes:
            phase = BatchPhase.FAILED
        elif pod is not None and pod.phase in ("Running", "Failed", "Succeeded"):
            phase = BatchPhase.IN_PROGRESS
        elif job.finished:
            phase = BatchPhase.CANCELED
        else:
            phase = BatchPhase.PENDING
        records = report.records or 0
        batch_total = report.total
        if phase == BatchPhase.SUCCEEDED and batch_total is None:
            batch_total = records
        message = None
        if phase == BatchPhase.FAILED and pod is not None:
            said = batch_report(pod.summary)
            message = said.reason or pod.message or "batch failed"
            failed_messages[batch] = message
            failed_kinds[batch] = said.kind or "unknown"
        elif pod is not None and pod.waiting_reason in STUCK_REASONS:
            message = f"{pod.waiting_reason}: {pod.waiting_message or ''}".strip()
            stuck[batch] = message
        processed += records
        if report.rejected is not None and phase != BatchPhase.FAILED:
            rejected = (rejected or 0) + report.rejected
        byte_count += report.bytes or 0
        file_count += report.files
        statuses.append(
            BatchStatus(
                index=batch,
                phase=phase,
                records_processed=records,
                records_total=batch_total,
                records_rejected=report.rejected if phase != BatchPhase.FAILED else None,
                key_range=report.key_range[:MAX_SHORT_TEXT_CHARACTERS] if report.key_range
                else None,
                bytes=report.bytes,
                attempts=attempts.get(completion_index),
                started_at=pod.started_at if pod else None,
                finished_at=pod.finished_at
                if pod and phase in (BatchPhase.SUCCEEDED, BatchPhase.FAILED)
                else None,
                message=message,
            )
        )
    total = estimated_total([s.records_total for s in statuses])
    counts = BatchCounts(
        total=len(statuses),
        pending=sum(s.phase == BatchPhase.PENDING for s in statuses),
        running=sum(s.phase == BatchPhase.IN_PROGRESS for s in statuses),
        succeeded=sum(s.phase == BatchPhase.SUCCEEDED for s in statuses),
        failed=sum(s.phase == BatchPhase.FAILED for s in statuses),
    )
    return RunProgress(counts, statuses, processed, total, byte_count, file_count, rejected,
                       failed_messages, failed_kinds, stuck)


def percent(processed: int, total: int | None) -> int | None:
    if total is None:
        return None
    if total == 0:
        return 100
    return min(100, processed * 100 // total)


def eta_seconds(
    processed: int, total: int | None, started_at: dt.datetime | None, now: dt.datetime
) -> int | None:
    """Time left at the rate observed since the run started; None until there is a rate."""
    if total is None or started_at is None or processed <= 0:
        return None
    elapsed = (now - started_at).total_seconds()
    if elapsed <= 0:
        return None
    return max(0, round((total - processed) * elapsed / processed))


def records_per_second(processed: int, started_at: dt.datetime | None,
                       now: dt.datetime) -> int | None:
    """The run's average rate since it started (pod start-up included): the rate the ETA
    extrapolates, shown beside it so that an ETA can be judged."""
    if started_at is None or processed <= 0:
        return None
    elapsed = (now - started_at).total_seconds()
    return round(processed / elapsed) if elapsed > 0 else None


def human_count(n: int) -> str:
    """10_000_000 -> "10M", 4_500_000 -> "4.5M", 999 -> "999"."""
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            text = f"{n / size:.1f}".removesuffix(".0")
            return f"{text}{unit}"
    return str(n)


def human_duration(seconds: int) -> str:
    """90 -> "1m30s", 3700 -> "1h1m": short enough for a printer column."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def progress_text(processed: int, total: int | None) -> str:
    """The Progress printer column: "45% 4.5M/10M"; while the total is unknown "4.5M rows",
    or "starting" before the first row (a bare "0" read as a count of nothing)."""
    share = percent(processed, total)
    if share is None or total is None:
        return f"{human_count(processed)} rows" if processed else "starting"
    return f"{share}% {human_count(processed)}/{human_count(total)}"
