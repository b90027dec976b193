"""What people and JobGroups ask of an ExportJob: stop, run now, retry, backfill.

Requests arrive as Flux-style timestamp annotations (`ferry.dev/run-requested-at`,
`stop-requested-at`, `retry-requested-at`, `backfill`) and as JobGroup runs that want
this job to run. Each value is acted on once: the handled value is recorded in
status.lastHandled in the same status write as its effect, so re-applying a manifest
with the same value, or an operator restart, never repeats it.

These functions only decide which run to create or cancel; the run state machine in
`ferry.reconcile.runs` owns the runs themselves (numbering, windows, queueing, Jobs).
They work on that state machine through the small `RunBook` protocol, which keeps
this module free of an import cycle with it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ferry.api.common import LastHandledRequests
from ferry.api.exportjob import ExportJobSpec
from ferry.api.status import (
    MAX_GROUP_RUNS,
    RETRYABLE_RUN_PHASES,
    Backfill,
    ExportJobStatus,
    GroupRunRecord,
    RunStatus,
)
from ferry.constants import (
    ANNOTATION_BACKFILL,
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
)
from ferry.contract.limits import MAX_SHORT_TEXT_CHARACTERS, fit
from ferry.reconcile.request_limits import request_limit
from ferry.reconcile.windows import BackfillRun, backfill_windows


@dataclass(frozen=True)
class GroupRequest:
    """A JobGroup run that wants this job to run now, or (canceled) to stop that run.

    The controller derives these from the groups' status (`groups.member_requests`):
    the group asks, the job decides when it can run, so the job's own queue, schedule
    and stop logic stay the only place that starts and stops its runs.
    """

    group_run: str
    """The group run, ``<group>.<n>``; the job's run for it has trigger group:<group>.<n>."""
    requested_at: dt.datetime | None = None
    """When the group reached this job: of two groups asking, the earlier is served first."""
    canceled: bool = False
    """The group run was stopped: cancel this job's run for it."""
    waiting: bool = False
    """The group run is active and this job's turn has not come: an earlier member runs.
    Nothing to start; the job shows phase AwaitingDependency."""


class RunBook(Protocol):
    """The part of one reconcile pass (`runs._Reconciler`) that requests act on."""

    @property
    def spec(self) -> ExportJobSpec: ...

    @property
    def status(self) -> ExportJobStatus: ...

    @property
    def handled(self) -> LastHandledRequests: ...

    @property
    def now(self) -> dt.datetime: ...

    @property
    def annotations(self) -> Mapping[str, str]: ...

    @property
    def created_at(self) -> dt.datetime: ...

    @property
    def group_requests(self) -> tuple[GroupRequest, ...]: ...


    def event(self, type_: str, reason: str, message: str) -> None: ...

    def cancel(self, run: RunStatus, message: str) -> None: ...

    def new_run(self, trigger: str, slot: dt.datetime, window_override: Any,
                retry_of: str | None = None, failed: list[int] | None = None) -> None: ...


def new_request(annotations: Mapping[str, str], key: str, handled: str | None) -> str | None:
    """The annotation's value if it is a request not handled yet (Flux-style).

    A value longer than status.lastHandled can hold (64 characters, 128 for backfill)
    is ignored: recording it would make the API server refuse every status write of
    the object, wedging it (found by tests/unit/test_hostile_input.py);
    ``request_limits.refuse_oversized_requests`` tells the user, once per value.
    """
    value = annotations.get(key)
    return value if value and value != handled and len(value) <= request_limit(key) else None


def user_annotation(annotations: Mapping[str, str], key: str) -> str | None:
    """A user name from an annotation, cut to fit the status field."""
    value = annotations.get(key)
    return fit(value, MAX_SHORT_TEXT_CHARACTERS) if value else None


def handle_stop(book: RunBook) -> None:
    """`ferry.dev/stop-requested-at`: cancel the queued or running run (its Job is
    deleted with foreground propagation by the controller)."""
    stop = new_request(book.annotations, ANNOTATION_STOP_REQUESTED_AT,
                       book.handled.stop_requested_at)
    if not stop:
        return
    book.handled.stop_requested_at = stop
    run = book.status.current_run
    if run is None:
        book.event("Warning", "NothingToStop",
                   "stop requested but no run is queued or in progress")
        return
    book.cancel(run, "stopped by request (ferry.dev/stop-requested-at)")


def cancel_for_groups(book: RunBook) -> None:
    """A stopped group run stops this job's run for it (docs/groups.md)."""
    run = book.status.current_run
    if run is None:
        return
    for request in book.group_requests:
        if request.canceled and run.trigger == f"group:{request.group_run}":
            book.cancel(run, f"group run {request.group_run} was stopped")
            return


def answer_group_request(book: RunBook) -> None:
    """Start the run a group run asks for, once per group run, when this job is free.

    While this job has a run of its own the request waits (the group shows the member
    Queued); a suspended job never answers (the group skips it). The answer is recorded
    in status.groupRuns in the same status write as the new run, so a restart never
    starts a second run for the same group run.
    """
    status = book.status
    answered = {r.group_run for r in status.group_runs or []}
    waiting = sorted(
        (r for r in book.group_requests
         if not r.canceled and not r.waiting and r.group_run not in answered),
        key=lambda r: (r.requested_at or book.created_at, r.group_run))
    if not waiting or status.current_run is not None or book.spec.suspend:
        return
    request = waiting[0]
    book.new_run(f"group:{request.group_run}", book.now, None)
    run = status.current_run
    record = GroupRunRecord(
        group_run=request.group_run, run_id=run.id if run else None,
        message=None if run else "nothing to export: the incremental window is empty")
    status.group_runs = [record, *(status.group_runs or [])][:MAX_GROUP_RUNS]


def handle_requests(book: RunBook) -> None:
    """Backfill, retry and run-now annotations, in that order (a retry and a run-now
    in one apply: the retry wins and the run-now is refused while it is active)."""
    annotations, handled = book.annotations, book.handled
    retry_value = new_request(annotations, ANNOTATION_RETRY_REQUESTED_AT,
                              handled.retry_requested_at)
    run_now = new_request(annotations, ANNOTATION_RUN_REQUESTED_AT, handled.run_requested_at)
    backfill = new_request(annotations, ANNOTATION_BACKFILL, handled.backfill)
    if backfill:
        handled.backfill = backfill
        accept_backfill(book, backfill)
    if retry_value:
        handled.retry_requested_at = retry_value
        retry(book)
    if run_now:
        handled.run_requested_at = run_now
        current = book.status.current_run
        if current is not None:
            book.event("Warning", "RunRequestRejected",
                       f"run {current.id} is {current.phase.value}: request a run again after "
                       "it ends, or stop it first")
        else:
            book.new_run("manual", book.now, None)


def retry(book: RunBook) -> None:
    """A new run over the last run's window that re-exports only the batches that did
    not commit (failed, or stopped by a cancel), into the folder of the run it repairs."""
    status = book.status
    last = status.last_run
    if status.current_run is not None:
        book.event("Warning", "RetryRejected",
                   f"run {status.current_run.id} is still active: retry after it ends")
    elif last is None or last.phase not in RETRYABLE_RUN_PHASES:
        book.event("Warning", "RetryRejected",
                   f"nothing to retry: run {last.id} {last.phase.value}"
                   if last else "nothing to retry: the job has not run yet")
    else:
        target = last.folder
        book.new_run("retry", last.scheduled_for or book.now, last.window, retry_of=target,
                     failed=last.batches_to_retry())


def backfill_runs(book: RunBook, start: dt.datetime, end: dt.datetime) -> list[BackfillRun]:
    """The past slots of the schedule in [start, end) with their windows."""
    assert book.spec.schedule is not None
    return backfill_windows(book.spec.timeframe, book.spec.schedule, start, end, now=book.now)


def accept_backfill(book: RunBook, value: str) -> None:
    """Record a backfill request; `continue_backfill` starts its runs one by one."""
    try:
        start_text, _, end_text = value.partition("/")
        start = dt.datetime.fromisoformat(start_text.replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(end_text.replace("Z", "+00:00"))
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("both ends need a UTC offset or Z")
        if book.spec.schedule is None:
            raise ValueError("backfill needs spec.schedule: its past slots are the runs")
        runs = backfill_runs(book, start, end)
    except ValueError as e:
        book.event("Warning", "BackfillRejected",
                   f'ferry.dev/backfill "{value}": {e} (expected "<from>/<to>" in '
                   "RFC 3339, e.g. 2026-11-01T00:00:00Z/2026-11-08T00:00:00Z)")
        return
    book.status.backfill = Backfill(request=value, from_=start, to=end, total=len(runs))
    book.event("Normal", "BackfillAccepted",
               f"backfill {value}: {len(runs)} run(s), one after another")


def continue_backfill(book: RunBook) -> None:
    """Start the next backfill slot when no run is active; one run at a time."""
    backfill = book.status.backfill
    if backfill is None or backfill.started >= backfill.total or \
            book.status.current_run is not None or book.spec.schedule is None:
        return
    pending = [r for r in backfill_runs(book, backfill.from_, backfill.to)
               if backfill.last_slot is None or r.slot > backfill.last_slot]
    if not pending:
        backfill.started = backfill.total
        return
    run = pending[0]
    backfill.started += 1
    backfill.last_slot = run.slot
    if run.window is None:
        book.event("Normal", "NothingToExport",
                   f"backfill slot {run.slot.isoformat()} has an empty window")
        return
    book.new_run("backfill", run.slot, run.window.to_api())
