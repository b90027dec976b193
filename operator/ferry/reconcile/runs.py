"""The run state machine of ExportJobs and ImportJobs: one pure function from what is
observed to what to do (what differs between the kinds: `RunRules`).

`reconcile` is level-based, as in kopf's reconciliation guide: it looks at the
whole picture every time (spec, status, request annotations, the child Jobs and
their pods, the queue on the data source, the clock) and returns the status to
write plus the actions to take. It never remembers anything between calls that
is not in the status, which is what makes an operator restart harmless: the next
call rebuilds the same decision from the same observations.

The order of writes the controller follows makes every step idempotent: the new
run is first recorded in status (with its number and Job name), then its Job is
created under a name derived from that number; a crash in between is repaired by
creating the same Job again. The same repair covers a Job deleted while its run was
in progress (`replace_lost_job`): the worker skips the batches the run already
committed to S3, so the run ends with what S3 holds.

Requests (run now, stop, retry, backfill, JobGroup runs) are decided in
`ferry.reconcile.requests`, which answers with the run to create or cancel; this module
owns those runs. What every kind does around its runs (following the schedule, expiry,
phase, the standard conditions) is `ferry.reconcile.lifecycle`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ferry.api.common import (
    ConditionReason,
    ConditionType,
    LastHandledRequests,
    MissedRun,
    MissedRunReason,
)
from ferry.api.exportjob import ConcurrencyPolicy
from ferry.api.status import (
    FINISHED_RUN_PHASES,
    ExportJobStatus,
    HistoryEntry,
    RunPhase,
    RunStatus,
    requested_by,
    run_id,
)
from ferry.contract.limits import fit
from ferry.reconcile import requests
from ferry.reconcile.batches import Slice, retry_slices
from ferry.reconcile.jobspec import Owner, WorkerDefaults
from ferry.reconcile.lifecycle import (
    Event,
    Verdict,
    close_run,
    expire,
    expired,
    follow_schedule,
    job_phase,
    next_run_number,
    post,
    record_missed,
    record_observed,
    requeue,
    run_ended,
    set_phase,
    set_running,
    set_standard_condition,
    set_suspended,
    show_schedule,
    wake_for,
)
from ferry.reconcile.progress import (
    PROGRESS_POLL_SECONDS,
    JobObservation,
    RunProgress,
    SealObservation,
    eta_seconds,
    fold_progress,
    human_duration,
    percent,
    progress_poll_interval,
    progress_text,
    records_per_second,
    stuck_reason,
)
from ferry.reconcile.request_limits import EXPORTJOB_REQUESTS, refuse_oversized_requests
from ferry.reconcile.requests import GroupRequest
from ferry.reconcile.runrules import EXPORT_RULES, RunRules, RunSpec
from ferry.reconcile.schedule.fires import schedule_problem
from ferry.reconcile.schedule.validate import InvalidScheduleError
from ferry.reconcile.seal import apply_seal
from ferry.reconcile.windows import Window

__all__ = ["Decision", "Observation", "QueueView", "reconcile"]
"""What the controller and the CLI use."""

QUEUE_POLL_SECONDS = 15.0


@dataclass(frozen=True)
class QueueView:
    """The other runs on this job's concurrency key (same namespace), as observed."""

    holder: str | None = None
    """Run id of another job's run in progress on the key."""
    ahead: int = 0
    """Queued runs of other jobs that came first."""


@dataclass(frozen=True)
class Observation:
    """Everything `reconcile` decides on; the controller gathers it, no I/O here."""

    owner: Owner
    generation: int
    created_at: dt.datetime
    annotations: dict[str, str]
    spec: Any
    """The kind's spec: `RunSpec` fields, and what its `rules` read."""
    status: ExportJobStatus
    jobs: list[JobObservation]
    queue: QueueView
    now: dt.datetime
    worker: WorkerDefaults
    deleting: bool = False
    stall_after: dt.timedelta = dt.timedelta(minutes=15)
    group_requests: tuple[GroupRequest, ...] = ()
    seals: tuple[SealObservation, ...] = ()
    """The seal Jobs of finished runs (ferry.reconcile.seal)."""
    runs_in_progress: int = 0
    """Runs in progress the operator polls, over all ExportJobs: spaces the progress
    polls so that together they stay within a budget (`progress_poll_interval`)."""
    rules: RunRules = EXPORT_RULES
    """What the kind's runs read, how they split and which Job runs them."""
    inputs: Any = None
    """Other resources the kind's rules read (an ImportJob's ExportJob, `ImportRules`)."""


@dataclass
class Decision:
    """What the controller must do: write `status`, then act."""

    status: ExportJobStatus
    create_job: dict[str, Any] | None = None
    create_seals: list[dict[str, Any]] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    key_released: bool = False
    delete_self: bool = False
    release_finalizer: bool = False


def _history_entry(run: RunStatus, phase: RunPhase, now: dt.datetime, message: str,
                   failed: list[int], canceled: list[int], links: dict[str, str]
                   ) -> HistoryEntry:
    started = run.started_at or run.queued_at
    return HistoryEntry(
        id=run.id, number=run.number, trigger=run.trigger, scheduled_for=run.scheduled_for,
        window=run.window, retry_of=run.retry_of, started_at=started, finished_at=now,
        duration_seconds=int((now - started).total_seconds()) if started else None,
        phase=phase, records=run.records_processed, files=run.files, bytes=run.bytes,
        records_rejected=run.records_rejected, source_run=run.source_run,
        batches_planned=run.batches_planned, failed_batches=failed or None,
        canceled_batches=canceled or None, message=message, started_by=run.started_by,
        **links,
    )


class _Reconciler:
    """One reconcile pass; a class only to share the observation between its steps."""

    def __init__(self, obs: Observation) -> None:
        self.obs = obs
        self.now = obs.now
        self.rules = obs.rules
        self.spec: RunSpec = obs.spec
        self.status = obs.status.model_copy(deep=True)
        self.decision = Decision(status=self.status)
        self.handled = self.status.last_handled or LastHandledRequests()
        self.stuck: str | None = None
        self.stuck_reason = ConditionReason.WORKER_CANNOT_START
        self.stalled: str | None = None
        self.config_failure: str | None = None

    # --- helpers -----------------------------------------------------------------------

    def event(self, type_: str, reason: str, message: str) -> None:
        post(self.decision, type_, reason, message)

    def requeue(self, seconds: float) -> None:
        requeue(self.decision, seconds)

    def apply(self, answer: requests.Answer) -> None:
        """Carry out what a request asks (`ferry.reconcile.requests`)."""
        self.decision.events += answer.events
        if answer.cancel is not None and self.status.current_run is not None:
            self.cancel(self.status.current_run, answer.cancel)
        if answer.start is not None:
            start = answer.start
            self.new_run(start.trigger, start.slot, start.window, start.retry_of, start.failed)

    def job_for(self, number: int) -> JobObservation | None:
        return next((j for j in self.obs.jobs if j.run_number == number), None)

    def history_entry(self, run_id: str) -> HistoryEntry | None:
        """A finished run; status.lastRun too, which a historyLimit of 0 keeps alone."""
        entries = [*(self.status.history or []), *filter(None, [self.status.last_run])]
        return next((h for h in entries if h.id == run_id), None)

    def previous_records(self) -> int | None:
        """Records of the latest successful run that was not a retry (a retry's count is
        only its failed batches'): the estimate behind ``rowsPerBatch``."""
        return next((h.records for h in self.status.history or []
                     if h.phase == RunPhase.SUCCEEDED and not h.retry_of), None)

    def planned_batches(self, run: RunStatus) -> int:
        """The split a run starts with; a retry keeps the split of the run it repairs."""
        original = self.history_entry(run.retry_of) if run.retry_of else None
        if original is not None and original.batches_planned:
            return original.batches_planned
        return self.rules.batches(self.obs.spec, run.window, self.previous_records())

    def slices_for(self, run: RunStatus) -> list[Slice]:
        count = run.batches_planned or self.planned_batches(run)
        slices = self.rules.slices(self.obs.spec, count, run.window)
        if run.retry_of:
            original = self.history_entry(run.retry_of)
            redo = original.batches_to_retry() if original else []
            if redo is not None:
                slices = retry_slices(slices, redo)
        return slices

    def reuse_committed_since(self, run: RunStatus) -> dt.datetime | None:
        """Batch manifests committed since this moment are this run's work and are kept,
        not exported again: since the run started, or for a retry since the run it
        repairs started (a batch of a canceled run may have committed after the stop)."""
        original = self.history_entry(run.retry_of) if run.retry_of else None
        if original is not None and original.started_at is not None:
            return original.started_at
        return run.started_at

    # --- the pass ----------------------------------------------------------------------

    def run(self) -> Decision:
        problem = schedule_problem(self.spec.schedule)
        self.handled, refused = refuse_oversized_requests(self.obs.annotations, self.handled,
                                                          EXPORTJOB_REQUESTS)
        for message in refused:
            self.event("Warning", "RequestTooLong", message)
        annotations, handled, status = self.obs.annotations, self.handled, self.status
        self.apply(requests.stop(annotations, handled, status.current_run))
        self.apply(requests.group_stop(status.current_run, self.obs.group_requests))
        self.observe_current_run()
        if self.obs.deleting:
            self.guard_deletion()
        elif expired(self.spec.expires_at, self.now):
            self.start_queued_run()
        else:
            if self.rules.backfills:
                self.apply(requests.backfill_request(annotations, handled, status,
                                                     self.obs.spec, self.now))
            self.apply(requests.retry_request(annotations, handled, status, self.now))
            self.apply(requests.run_now_request(annotations, handled, status, self.now))
            self.answer_group_request()
            if problem is None:
                self.follow_schedule()
                if self.rules.backfills:
                    self.apply(requests.next_backfill_run(status, self.obs.spec, self.now))
            self.start_queued_run()
        self.seal_finished_runs()
        self.clean_up_jobs()
        self.finish_status(problem)
        if not self.obs.deleting:
            run = status.current_run
            expire(self.decision, self.spec.expires_at, self.now,
                   blocked=run is not None and run.phase != RunPhase.QUEUED)
        return self.decision

    def answer_group_request(self) -> None:
        """Start the run a group run asks for, and record the answer (status.groupRuns)."""
        request = requests.group_run_to_answer(
            self.status, self.obs.group_requests, suspended=self.spec.suspend,
            created_at=self.obs.created_at)
        if request is not None:
            self.new_run(f"group:{request.group_run}", self.now, None)
            requests.record_group_answer(self.status, request)

    def guard_deletion(self) -> None:
        """Deleting waits for a run in progress; a queued run is simply dropped."""
        run = self.status.current_run
        if run is not None and run.phase == RunPhase.QUEUED:
            self.finish(run, RunPhase.CANCELED, f"the {self.rules.kind} is being deleted")
            run = None
        if run is None:
            self.decision.release_finalizer = True
            return
        message = (f"deletion waits for run {run.id} to end; to delete now, stop it: "
                   f"kubectl ferry stop {self.rules.cli_prefix}{self.obs.owner.name}")
        if self.obs.status.current_run is None or \
                self.obs.status.current_run.message != message:
            self.event("Warning", "DeletionBlocked", message)
        run.message = message

    def cancel(self, run: RunStatus, message: str) -> None:
        job = self.job_for(run.number) if run.job_name else None
        if job is not None:
            # The batches seen to commit up to the stop: history counts them and a retry
            # re-runs only the others.
            self.apply_progress(run, job)
            if not job.finished:
                self.decision.delete_jobs.append(job.name)
        self.finish(run, RunPhase.CANCELED, message)

    def observe_current_run(self) -> None:
        run = self.status.current_run
        if run is None or run.phase != RunPhase.IN_PROGRESS:
            return
        job = self.job_for(run.number)
        if (job is None or job.deleting) and self.obs.deleting:
            self.finish(run, RunPhase.FAILED, f"Job {run.job_name} was deleted with the "
                        f"{self.rules.kind} before the run ended")
            return
        if job is None or job.deleting:
            self.replace_lost_job(run, job)
            return
        folded = self.apply_progress(run, job)
        self.track_progress(run)
        if job.finished is None:
            if folded.stuck:
                self.stuck_reason = stuck_reason(list(folded.stuck.values()))
                hint = (f"; create it in namespace {self.obs.owner.namespace} (or fix the "
                        "reference in the spec): the pods start once it exists"
                        if self.stuck_reason == ConditionReason.SECRET_NOT_FOUND else "")
                run.message = ("; ".join(f"batch {i} cannot start: {m}"
                                         for i, m in folded.stuck.items())[:3800] + hint)
                self.stuck = run.message
            elif self.obs.status.current_run and "cannot start" in (
                    self.obs.status.current_run.message or ""):
                run.message = None
            self.requeue(progress_poll_interval(self.obs.runs_in_progress))
            return
        counts = folded.counts
        if folded.failed_kinds and set(folded.failed_kinds.values()) <= {"config"}:
            first = next(iter(folded.failed_messages.values()))
            self.config_failure = (f"run {run.id} failed on its configuration: {first}; "
                                   "fix the spec, Secret or bucket, then run again")
        if counts.failed == 0 and job.finished == "Complete" and run.records_rejected:
            self.finish(run, RunPhase.SUCCEEDED_WITH_ERRORS,
                        f"{counts.succeeded} of {counts.total} batches succeeded; "
                        f"{run.records_rejected} row(s) rejected under spec.maxErrors, "
                        "listed in the audit log")
        elif counts.failed == 0 and job.finished == "Complete":
            self.finish(run, RunPhase.SUCCEEDED,
                        f"{counts.succeeded} of {counts.total} batches succeeded")
        elif counts.succeeded > 0:
            detail = "; ".join(f"batch {i}: {m}" for i, m in folded.failed_messages.items())
            self.finish(run, RunPhase.PARTIALLY_SUCCEEDED,
                        fit(f"{counts.failed} of {counts.total} batches failed: {detail}"))
        else:
            detail = "; ".join(f"batch {i}: {m}" for i, m in folded.failed_messages.items())
            self.finish(run, RunPhase.FAILED,
                        fit(f"no batch succeeded: {detail or job.finished}"))

    def apply_progress(self, run: RunStatus, job: JobObservation) -> RunProgress:
        """Fold the Job and its pods into the run's batches, counts, percent and ETA."""
        slices = self.slices_for(run)
        folded = fold_progress(job, [s.index for s in slices])
        for batch, piece in zip(folded.batches, slices, strict=True):
            if piece.start is not None or piece.end is not None:
                batch.window = Window(piece.start, piece.end).to_api()
            # The worker's own word (its committed key range) wins over the plan's.
            batch.key_range = batch.key_range or self.rules.key_range(self.obs.spec, piece)
        run.batches = folded.counts
        run.batch_statuses = folded.batches
        run.records_processed = folded.records_processed
        run.records_total = folded.records_total
        run.records_rejected = folded.records_rejected
        run.bytes = folded.bytes
        run.files = folded.files
        run.percent = percent(folded.records_processed, folded.records_total)
        run.records_per_second = records_per_second(folded.records_processed, run.started_at,
                                                    self.now)
        run.eta_seconds = eta_seconds(folded.records_processed, folded.records_total,
                                      run.started_at, self.now)
        run.eta = (self.now + dt.timedelta(seconds=run.eta_seconds)
                   if run.eta_seconds is not None else None)
        return folded

    def replace_lost_job(self, run: RunStatus, job: JobObservation | None) -> None:
        """A run in progress has no live Job: create it again, under the same name.

        Either the operator stopped between recording the run and creating its Job, or
        the Job was deleted (by hand, or by anything else) while the run was active,
        perhaps while the operator was down. The run stays InProgress only because a Job
        exists again: the new Job's pods first read their batch manifests in S3 (the
        worker holds the bucket credentials, the operator never does), and a batch this
        run already committed is reported from its manifest instead of being exported
        again. So the run ends with the counts S3 holds, never Failed because the
        operator missed the Job's end. A Job still being deleted is waited for, since
        its name is taken until it is gone.
        """
        self.decision.create_job = self.job_manifest(run)
        # A repair, rare: at the base rate, which also repeats the create while the old
        # Job's name is still taken.
        self.requeue(PROGRESS_POLL_SECONDS)
        seen = self.obs.status.current_run
        if job is None and seen is not None and seen.batches is not None:
            done = seen.batches.succeeded
            run.message = (f"Job {run.job_name} was gone while the run was in progress; "
                           "created it again: batches already committed are kept, the "
                           f"others are {self.rules.noun}ed")
            self.event("Warning", "JobReplaced",
                       f"run {run.id}: {run.message} ({done} of {seen.batches.total} "
                       "batches were seen to succeed before)")

    def track_progress(self, run: RunStatus) -> None:
        """Stamp progress; a run whose counters have not moved for stall_after is Stalled."""
        before = self.obs.status.current_run
        moved = before is None or before.progressed_at is None or (
            (run.records_processed, run.bytes, run.batches) !=
            (before.records_processed, before.bytes, before.batches))
        if moved:
            run.progressed_at = self.now
        elif run.progressed_at is not None and \
                self.now - run.progressed_at >= self.obs.stall_after:
            minutes = int((self.now - run.progressed_at).total_seconds() // 60)
            self.stalled = (f"run {run.id} has made no progress for {minutes}m "
                            f"({run.records_processed or 0} records): check the worker logs "
                            f"(kubectl ferry logs {self.rules.cli_prefix}{self.obs.owner.name}) "
                            "and the source")

    def finish(self, run: RunStatus, phase: RunPhase, message: str) -> None:
        failed = [b.index for b in run.batch_statuses or [] if b.phase == "Failed"]
        canceled: list[int] = []
        if phase == RunPhase.CANCELED:
            failed = []
            if run.batch_statuses is not None:
                canceled = [b.index for b in run.batch_statuses if b.phase != "Succeeded"]
            elif run.batches_planned is not None:
                canceled = [s.index for s in self.slices_for(run)]
        location = self.rules.location(self.obs.spec, self.obs.inputs, self.obs.owner.name,
                                       run.folder)
        links = self.rules.links(location, phase, bool(failed),
                                 bool(run.records_rejected)) if location else {}
        entry = _history_entry(run, phase, self.now, message, failed, canceled, links)
        if run.job_name is not None and self.rules.seals:
            entry.sealed = False
        close_run(self.status, entry, self.spec.history_limit)
        if phase == RunPhase.SUCCEEDED and run.window and run.window.to and \
                run.trigger != "backfill":
            latest = self.status.last_successful_window_end
            if latest is None or run.window.to > latest:
                self.status.last_successful_window_end = run.window.to
        if run.phase == RunPhase.IN_PROGRESS:
            self.decision.key_released = True
        self.decision.events.append(run_ended(f"run {run.id}", phase, message))

    def seal_finished_runs(self) -> None:
        """Start the seal of each run that ended unsealed, record each finished seal, and
        delete seal Jobs no history entry waits for any more. Not polled: the seal Job's
        watch events wake the job, as a run's Job's do."""
        history, last = self.status.history or [], self.status.last_run
        entries = [*history, *([last] if last and last.id not in {h.id for h in history} else [])]
        waiting = {h.number: h for h in entries if h.sealed is False}
        seals = {s.run_number: s for s in self.obs.seals if not s.deleting}
        for number, entry in waiting.items():
            seal = seals.get(number)
            location = self.rules.location(self.obs.spec, self.obs.inputs, self.obs.owner.name,
                                           entry.folder) or ""
            run_job = self.job_for(number)
            if seal is None and run_job is not None and run_job.finished is None:
                continue  # a stopped run's pods may still commit: seal once they are gone
            if seal is None:
                self.decision.create_seals.append(self.rules.seal_job(
                    self.obs.owner, self.obs.spec, entry, self.obs.worker))
            elif seal.finished is not None:
                kind, message = apply_seal(entry, seal, location)
                if self.status.last_run is not None and self.status.last_run.id == entry.id:
                    self.status.last_run = entry
                self.event(kind, "RunSealed", message)
        for number, seal in seals.items():
            if number not in waiting or seal.finished is not None:
                self.decision.delete_jobs.append(seal.name)

    def follow_schedule(self) -> None:
        schedule = self.spec.schedule
        if schedule is None:
            return
        once = schedule.once is not None
        status = self.status
        step = follow_schedule(
            schedule, status.one_time_started_at if once else status.last_scheduled_slot,
            self.now, created_at=self.obs.created_at, busy=status.current_run is not None,
            suspended=self.spec.suspend)
        if step.waiting:
            # The slot waits for the current run. One in progress ends by a Job event,
            # which wakes this job, and is polled anyway (within the progress budget:
            # 15 s here would bring 10,000 runs overrunning their next slot back to
            # 667 polls a second); a queued one at the queue's pace.
            if status.current_run is not None and \
                    status.current_run.phase != RunPhase.IN_PROGRESS:
                self.requeue(QUEUE_POLL_SECONDS)
            return
        if step.start is not None:
            self.new_run(step.start.trigger, step.start.slot, None)
            if once:
                status.one_time_started_at = self.now
        if not once and step.decided is not None:
            status.last_scheduled_slot = step.decided
        record_missed(status, step.missed)
        wake_for(self.decision, step.next_fire, self.now)

    def new_run(self, trigger: str, slot: dt.datetime, window_override: Any,
                retry_of: str | None = None, failed: list[int] | None = None) -> None:
        window: Any = window_override
        if window is None and retry_of is None:
            something, window = self.rules.window(self.obs.spec, slot,
                                                  self.status.last_successful_window_end)
            if not something:
                self.event("Normal", "NothingToExport",
                           f"no new data since {self.status.last_successful_window_end}: "
                           "the incremental window is empty")
                return
        number = next_run_number(self.status)
        started_by = requested_by(self.obs.annotations) \
            if trigger in ("manual", "retry") else None
        self.status.current_run = RunStatus(
            id=run_id(self.obs.owner.name, number), number=number, trigger=trigger,
            scheduled_for=slot, window=window, retry_of=retry_of, phase=RunPhase.QUEUED,
            queued_at=self.now, started_by=started_by,
            message=f"retrying batches {failed}" if retry_of and failed else
            "retrying every batch" if retry_of else None,
        )

    def start_queued_run(self) -> None:
        run = self.status.current_run
        if run is None or run.phase != RunPhase.QUEUED:
            return
        queue = self.obs.queue
        if queue.holder or queue.ahead:
            policy = self.spec.concurrency.policy if self.spec.concurrency else None
            if policy == ConcurrencyPolicy.FORBID:
                self.status.current_run = None
                self.status.run_counter = run.number - 1
                if run.trigger in ("schedule", "catchup") and run.scheduled_for is not None:
                    record_missed(self.status, [MissedRun(
                        scheduled_for=run.scheduled_for,
                        reason=MissedRunReason.CONCURRENCY_FORBIDDEN,
                        message=f"{queue.holder or 'another run'} held the data source")])
                self.event("Warning", "ConcurrencyForbidden",
                           f"run not started: {queue.holder or 'another run'} holds the data "
                           "source and spec.concurrency.policy is Forbid")
                return
            run.blocked_by = queue.holder
            run.queue_position = queue.ahead + 1
            run.message = (
                f"waiting for run {queue.holder} on the same data source" if queue.holder
                else f"{queue.ahead} run(s) ahead on the same data source")
            before = self.obs.status.current_run
            if before is None or before.id != run.id or before.message is None:
                # Once per run: its position changes with every run ahead of it ending,
                # and an event each time made a 200-job queue post ~20,000 events.
                self.event("Normal", "Queued", f"run {run.id} queued: {run.message}")
            self.requeue(QUEUE_POLL_SECONDS)
            return
        run.phase = RunPhase.IN_PROGRESS
        run.started_at = self.now
        run.blocked_by = None
        run.queue_position = None
        run.message = None
        original = self.history_entry(run.retry_of) if run.retry_of else None
        refused = self.rules.prepare(self.obs.spec, self.obs.inputs, run, original)
        if refused is not None:
            self.config_failure = f"run {run.id} cannot start: {refused}"
            self.finish(run, RunPhase.FAILED, refused)
            return
        run.job_name = self.rules.job_name(self.obs.owner.name, run.number)
        run.batches_planned = self.planned_batches(run)
        self.decision.create_job = self.job_manifest(run)
        self.event("Normal", "Started",
                   f"run {run.id} started ({run.trigger})"
                   f"{self.rules.start_note(self.obs.spec, run, self.previous_records())}")
        # The first poll at the base rate whatever the budget: one per run started, so
        # bounded by how fast runs start, and in a burst merged with the reconciles the
        # new Job's own events cause; the percent shows from then on.
        self.requeue(PROGRESS_POLL_SECONDS)

    def job_manifest(self, run: RunStatus) -> dict[str, Any]:
        return self.rules.job(self.obs.owner, self.obs.spec, self.obs.inputs, run,
                              self.slices_for(run), self.obs.worker,
                              self.reuse_committed_since(run))

    def clean_up_jobs(self) -> None:
        """Stop Jobs no run owns any more, and keep only the latest finished Job."""
        current = self.status.current_run.number if self.status.current_run else None
        finished = sorted((j for j in self.obs.jobs if j.finished), key=lambda j: j.run_number)
        keep = finished[-1].run_number if finished else None
        for job in self.obs.jobs:
            if job.deleting or job.run_number == current or job.name in self.decision.delete_jobs:
                continue
            if not job.finished or job.run_number != keep:
                self.decision.delete_jobs.append(job.name)

    def finish_status(self, problem: InvalidScheduleError | None) -> None:
        status, spec, now, generation = self.status, self.spec, self.now, self.obs.generation
        record_observed(status, generation, self.handled, self.obs.annotations)
        status.concurrency_key = self.rules.concurrency_key(self.obs.spec)
        schedule = spec.schedule
        one_time_done = schedule is not None and schedule.once is not None and \
            status.one_time_started_at is not None
        show_schedule(status, schedule, now, created_at=self.obs.created_at,
                      active=problem is None and not spec.suspend and not one_time_done)
        run = status.current_run
        if run is not None and run.phase == RunPhase.IN_PROGRESS:
            status.progress = progress_text(run.records_processed or 0, run.records_total)
            status.eta = human_duration(run.eta_seconds) if run.eta_seconds is not None else None
        else:
            status.progress = None
            status.eta = None
        if status.last_successful_window_end is not None:
            status.data_lag_seconds = max(
                0, int((now - status.last_successful_window_end).total_seconds()))
        status.awaiting_group_run = next(
            (r.group_run for r in self.obs.group_requests if r.waiting), None) \
            if run is None else None
        set_phase(status, job_phase(
            run.phase if run else None, status.last_run.phase if status.last_run else None,
            invalid=problem is not None, suspended=spec.suspend,
            scheduled=status.next_run_at is not None,
            awaiting_dependency=status.awaiting_group_run is not None))
        set_standard_condition(status, ConditionType.READY, self.readiness(problem), now,
                               generation)
        if problem is not None:
            stalled = Verdict(True, problem.reason, str(problem))
        elif self.stuck is not None:
            stalled = Verdict(True, self.stuck_reason, self.stuck)
        elif self.stalled is not None:
            stalled = Verdict(True, ConditionReason.NO_PROGRESS, self.stalled)
        else:
            stalled = Verdict(False, ConditionReason.PROGRESSING, "nothing is stuck")
        set_standard_condition(status, ConditionType.STALLED, stalled, now, generation)
        active = run is not None and run.phase not in FINISHED_RUN_PHASES
        set_running(status, (run.id, run.phase) if active and run else None, "run", now,
                    generation)
        set_suspended(status, suspended=spec.suspend, one_time_done=one_time_done, noun="run",
                      now=now, generation=generation)

    def readiness(self, problem: InvalidScheduleError | None) -> Verdict:
        """Ready, with the reason and what to do. A configuration failure stays until a
        run succeeds or the spec changes: the operator cannot read Secrets, so a run is
        how it learns that a fix worked."""
        if problem is not None:
            return Verdict(False, problem.reason, str(problem))
        if self.stuck is not None:
            return Verdict(False, self.stuck_reason, self.stuck)
        if self.config_failure is not None:
            return Verdict(False, ConditionReason.CONFIGURATION_ERROR, self.config_failure)
        previous = next((c for c in self.obs.status.conditions or []
                         if c.type == ConditionType.READY), None)
        last = self.status.last_run
        if previous is not None and previous.reason == ConditionReason.CONFIGURATION_ERROR and \
                previous.observed_generation == self.obs.generation and \
                (last is None or last.phase != RunPhase.SUCCEEDED):
            return Verdict(False, previous.reason, previous.message)
        return Verdict(True, ConditionReason.VALID, "the spec is valid")


def reconcile(obs: Observation) -> Decision:
    """Decide everything for one ExportJob or ImportJob at ``obs.now``."""
    return _Reconciler(obs).run()
