"""What people and JobGroups ask of an ExportJob: stop, run now, retry, backfill.

Requests arrive as Flux-style timestamp annotations (`ferry.dev/run-requested-at`,
`stop-requested-at`, `retry-requested-at`, `backfill`) and as JobGroup runs that want
this job to run. Each value is acted on once: the handled value is recorded in
status.lastHandled in the same status write as its effect, so re-applying a manifest
with the same value, or an operator restart, never repeats it.

These functions only decide which run to create or cancel, and return it as an
`Answer` that the run state machine in `ferry.reconcile.runs` applies: it owns the runs
themselves (numbering, windows, queueing, Jobs). They change only the status fields
that record requests (status.lastHandled, status.backfill, status.groupRuns).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from ferry.api.common import LastHandledRequests
from ferry.api.common import Window as ApiWindow
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
from ferry.reconcile.lifecycle import Event
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


@dataclass(frozen=True)
class RunRequest:
    """A run a request asks for. The run state machine creates it (numbering, window,
    queueing): a request only says which run, so this module needs nothing of it."""

    trigger: str
    slot: dt.datetime
    window: ApiWindow | None = None
    retry_of: str | None = None
    failed: list[int] | None = None


@dataclass
class Answer:
    """What a request asks of the run state machine: Events to post, then the current
    run to cancel (with this message) or a run to start, at most one of them."""

    events: list[Event] = field(default_factory=list)
    cancel: str | None = None
    start: RunRequest | None = None

    def warn(self, reason: str, message: str) -> Answer:
        self.events.append(Event("Warning", reason, message))
        return self


def new_request(annotations: Mapping[str, str], key: str, handled: str | None) -> str | None:
    """The annotation's value if it is a request not handled yet (Flux-style).

    A value longer than status.lastHandled can hold (64 characters, 128 for backfill)
    is ignored: recording it would make the API server refuse every status write of
    the object, wedging it (found by tests/unit/test_hostile_input.py);
    ``request_limits.refuse_oversized_requests`` tells the user, once per value.
    """
    value = annotations.get(key)
    return value if value and value != handled and len(value) <= request_limit(key) else None


def stop(annotations: Mapping[str, str], handled: LastHandledRequests,
         current: RunStatus | None) -> Answer:
    """`ferry.dev/stop-requested-at`: cancel the queued or running run (its Job is
    deleted with foreground propagation by the controller)."""
    value = new_request(annotations, ANNOTATION_STOP_REQUESTED_AT, handled.stop_requested_at)
    if not value:
        return Answer()
    handled.stop_requested_at = value
    if current is None:
        return Answer().warn("NothingToStop",
                             "stop requested but no run is queued or in progress")
    return Answer(cancel="stopped by request (ferry.dev/stop-requested-at)")


def group_stop(current: RunStatus | None, group_requests: tuple[GroupRequest, ...]) -> Answer:
    """A stopped group run stops this job's run for it (docs/groups.md)."""
    if current is None:
        return Answer()
    for request in group_requests:
        if request.canceled and current.trigger == f"group:{request.group_run}":
            return Answer(cancel=f"group run {request.group_run} was stopped")
    return Answer()


def group_run_to_answer(status: ExportJobStatus, group_requests: tuple[GroupRequest, ...], *,
                        suspended: bool, created_at: dt.datetime) -> GroupRequest | None:
    """The group run to start a run for now, once per group run, when this job is free.

    While this job has a run of its own the request waits (the group shows the member
    Queued); a suspended job never answers (the group skips it). Of two groups asking,
    the one that reached this job first is served first.
    """
    answered = {r.group_run for r in status.group_runs or []}
    waiting = sorted(
        (r for r in group_requests
         if not r.canceled and not r.waiting and r.group_run not in answered),
        key=lambda r: (r.requested_at or created_at, r.group_run))
    if not waiting or status.current_run is not None or suspended:
        return None
    return waiting[0]


def record_group_answer(status: ExportJobStatus, request: GroupRequest) -> None:
    """Record in status.groupRuns the run started for ``request`` (none: its window was
    empty), in the same status write as the new run, so a restart never starts a second
    run for the same group run."""
    run = status.current_run
    record = GroupRunRecord(
        group_run=request.group_run, run_id=run.id if run else None,
        message=None if run else "nothing to export: the incremental window is empty")
    status.group_runs = [record, *(status.group_runs or [])][:MAX_GROUP_RUNS]


def backfill_request(annotations: Mapping[str, str], handled: LastHandledRequests,
                     status: ExportJobStatus, spec: ExportJobSpec, now: dt.datetime) -> Answer:
    """`ferry.dev/backfill`: record the range in status.backfill; `next_backfill_run`
    starts its runs one by one. Requests are taken backfill, retry, run-now in that
    order (a retry and a run-now in one apply: the retry wins and the run-now is
    refused while it is active)."""
    value = new_request(annotations, ANNOTATION_BACKFILL, handled.backfill)
    if not value:
        return Answer()
    handled.backfill = value
    try:
        start_text, _, end_text = value.partition("/")
        start = dt.datetime.fromisoformat(start_text.replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(end_text.replace("Z", "+00:00"))
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("both ends need a UTC offset or Z")
        if spec.schedule is None:
            raise ValueError("backfill needs spec.schedule: its past slots are the runs")
        runs = backfill_runs(spec, start, end, now)
    except ValueError as e:
        return Answer().warn("BackfillRejected",
                             f'ferry.dev/backfill "{value}": {e} (expected "<from>/<to>" in '
                             "RFC 3339, e.g. 2026-11-01T00:00:00Z/2026-11-08T00:00:00Z)")
    status.backfill = Backfill(request=value, from_=start, to=end, total=len(runs))
    return Answer([Event("Normal", "BackfillAccepted",
                         f"backfill {value}: {len(runs)} run(s), one after another")])


def retry_request(annotations: Mapping[str, str], handled: LastHandledRequests,
                  status: ExportJobStatus, now: dt.datetime) -> Answer:
    """`ferry.dev/retry-requested-at`: a new run over the last run's window that
    re-exports only the batches that did not commit (failed, or stopped by a cancel),
    into the folder of the run it repairs."""
    value = new_request(annotations, ANNOTATION_RETRY_REQUESTED_AT, handled.retry_requested_at)
    if not value:
        return Answer()
    handled.retry_requested_at = value
    last = status.last_run
    if status.current_run is not None:
        return Answer().warn("RetryRejected",
                             f"run {status.current_run.id} is still active: retry after it ends")
    if last is None or last.phase not in RETRYABLE_RUN_PHASES:
        return Answer().warn("RetryRejected",
                             f"nothing to retry: run {last.id} {last.phase.value}"
                             if last else "nothing to retry: the job has not run yet")
    return Answer(start=RunRequest("retry", last.scheduled_for or now, last.window,
                                   retry_of=last.folder, failed=last.batches_to_retry()))


def run_now_request(annotations: Mapping[str, str], handled: LastHandledRequests,
                    status: ExportJobStatus, now: dt.datetime) -> Answer:
    """`ferry.dev/run-requested-at`: a manual run now, refused while a run is active."""
    value = new_request(annotations, ANNOTATION_RUN_REQUESTED_AT, handled.run_requested_at)
    if not value:
        return Answer()
    handled.run_requested_at = value
    current = status.current_run
    if current is not None:
        return Answer().warn("RunRequestRejected",
                             f"run {current.id} is {current.phase.value}: request a run "
                             "again after it ends, or stop it first")
    return Answer(start=RunRequest("manual", now))


def backfill_runs(spec: ExportJobSpec, start: dt.datetime, end: dt.datetime,
                  now: dt.datetime) -> list[BackfillRun]:
    """The past slots of the schedule in [start, end) with their windows."""
    assert spec.schedule is not None
    return backfill_windows(spec.timeframe, spec.schedule, start, end, now=now)


def next_backfill_run(status: ExportJobStatus, spec: ExportJobSpec, now: dt.datetime) -> Answer:
    """The next backfill slot's run when no run is active; one run at a time."""
    backfill = status.backfill
    if backfill is None or backfill.started >= backfill.total or \
            status.current_run is not None or spec.schedule is None:
        return Answer()
    pending = [r for r in backfill_runs(spec, backfill.from_, backfill.to, now)
               if backfill.last_slot is None or r.slot > backfill.last_slot]
    if not pending:
        backfill.started = backfill.total
        return Answer()
    run = pending[0]
    backfill.started += 1
    backfill.last_slot = run.slot
    if run.window is None:
        return Answer([Event("Normal", "NothingToExport",
                             f"backfill slot {run.slot.isoformat()} has an empty window")])
    return Answer(start=RunRequest("backfill", run.slot, run.window.to_api()))
