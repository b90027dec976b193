"""The JobGroup state machine: one pure function from what is observed to the group status.

A group never creates Jobs. Its status says which member should run now
(``currentRun.memberIndex``, that member Queued); the ExportJob reconciler of that member
reads this as a `GroupRequest` (see `member_requests`) and starts a run with trigger
``group:<group>.<n>`` through its usual per-source queue. The group then follows that run
in the member's own status (its current run, its history, its ``groupRuns`` record) and
moves on when it has ended. Everything is recomputed from observations on every pass, so
an operator restart or a lost event changes nothing: the next pass reaches the same
decision. The interplay rules are in docs/groups.md; what a group shares with every
kind (its schedule, expiry, phase and standard conditions) is `ferry.reconcile.lifecycle`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ferry.api.common import (
    ConditionReason,
    ConditionType,
    LastHandledRequests,
)
from ferry.api.jobgroup import (
    FailurePolicy,
    GroupHistoryEntry,
    GroupRunStatus,
    JobGroupSpec,
    JobGroupStatus,
    MemberPhase,
    MemberRun,
)
from ferry.api.status import (
    RETRYABLE_RUN_PHASES,
    GroupRunRecord,
    HistoryEntry,
    RunPhase,
    RunStatus,
    requested_by,
    run_id,
)
from ferry.constants import (
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
)
from ferry.contract.limits import fit
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
from ferry.reconcile.request_limits import JOBGROUP_REQUESTS, refuse_oversized_requests
from ferry.reconcile.requests import GroupRequest, new_request
from ferry.reconcile.schedule.fires import schedule_problem
from ferry.reconcile.schedule.validate import InvalidScheduleError

FOLLOW_POLL_SECONDS = 30.0
"""Safety net while a member runs: member status changes enqueue the group anyway."""

FINISHED_MEMBER_PHASES = frozenset({
    MemberPhase.SUCCEEDED, MemberPhase.SUCCEEDED_WITH_ERRORS, MemberPhase.PARTIALLY_SUCCEEDED,
    MemberPhase.FAILED,
    MemberPhase.CANCELED, MemberPhase.SKIPPED,
})
NOT_SUCCEEDED = frozenset({
    MemberPhase.PARTIALLY_SUCCEEDED, MemberPhase.FAILED, MemberPhase.CANCELED,
})
"""Member results the failure policy reacts to (Skipped is a decision, not a failure; an
import that rejected rows under its maxErrors loaded its files: the next member runs)."""
SUCCESSES = frozenset({MemberPhase.SUCCEEDED, MemberPhase.SUCCEEDED_WITH_ERRORS})


@dataclass(frozen=True)
class MemberView:
    """What the group needs of one member ExportJob (from a fresh GET)."""

    suspend: bool = False
    deleting: bool = False
    current_run: RunStatus | None = None
    history: tuple[HistoryEntry, ...] = ()
    group_runs: tuple[GroupRunRecord, ...] = ()


@dataclass(frozen=True)
class GroupObservation:
    """Everything `reconcile_group` decides on; a member absent from ``members`` is missing."""

    name: str
    generation: int
    created_at: dt.datetime
    annotations: dict[str, str]
    spec: JobGroupSpec
    status: JobGroupStatus
    members: dict[str, MemberView]
    now: dt.datetime


@dataclass
class GroupDecision:
    """What the controller must do: write `status`, post events, maybe delete the group."""

    status: JobGroupStatus
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    delete_self: bool = False


def member_summary(members: int, missing: int) -> str:
    """status.memberSummary (the Members column): "3 jobs", "3 jobs, 1 missing"."""
    text = f"{members} job" + ("" if members == 1 else "s")
    return f"{text}, {missing} missing" if missing else text


def trigger_of(group_run: str) -> str:
    """The trigger a member's run carries for group run ``group_run`` (``<group>.<n>``)."""
    return f"group:{group_run}"


def member_requests(status: JobGroupStatus | None) -> list[tuple[str, GroupRequest]]:
    """(member name, request) pairs this group status makes of its members.

    The current run asks its current member to run; every finished, Canceled group run
    still in history asks the members it canceled to cancel their run for it. A cancel
    request is harmless to a member whose current run is not that group run's, so it may
    stay as long as the history keeps it; only a positive request ever stops a run, never
    the absence of one (which is what an operator that has not listed every group yet sees).
    """
    if status is None:
        return []
    requests: list[tuple[str, GroupRequest]] = []
    run = status.current_run
    if run is not None and run.members and run.member_index is not None and \
            run.member_index < len(run.members):
        member = run.members[run.member_index]
        if member.phase in (MemberPhase.QUEUED, MemberPhase.IN_PROGRESS):
            requested = member.requested_at or run.started_at
            requests.append((member.name, GroupRequest(run.id, requested)))
    for entry in status.history or []:
        if entry.phase != RunPhase.CANCELED:
            continue
        requests += [(m.name, GroupRequest(entry.id, m.requested_at, canceled=True))
                     for m in entry.members or [] if m.phase == MemberPhase.CANCELED]
    return requests


def member_waits(status: JobGroupStatus | None) -> list[tuple[str, GroupRequest]]:
    """(member name, waiting request) for the members after the current run's current
    member: their turn has not come, and they show phase AwaitingDependency meanwhile."""
    run = status.current_run if status is not None else None
    if run is None or not run.members or run.member_index is None:
        return []
    return [(m.name, GroupRequest(run.id, waiting=True))
            for m in run.members[run.member_index + 1:]
            if m.phase == MemberPhase.AWAITING_DEPENDENCY]


def _group_result(members: list[MemberRun], policy: FailurePolicy) -> tuple[RunPhase, str]:
    """The phase and summary of a group run whose members all ended."""
    counts = {phase: [m.name for m in members if m.phase == phase] for phase in MemberPhase}
    ok = [m.name for m in members if m.phase in SUCCESSES]
    summary = f"{len(ok)} of {len(members)} members succeeded"
    details = [f"{phase.value.lower()}: {', '.join(names)}" for phase, names in counts.items()
               if names and phase != MemberPhase.SUCCEEDED]
    if details:
        summary += "; " + "; ".join(details)
    if len(ok) == len(members):
        return RunPhase.SUCCEEDED, summary
    bad = [m for m in members if m.phase in NOT_SUCCEEDED]
    if bad and policy == FailurePolicy.STOP_ON_FAILURE:
        return RunPhase.FAILED, f'stopped at member "{bad[0].name}": {summary}'
    if not ok and not counts[MemberPhase.PARTIALLY_SUCCEEDED]:
        return RunPhase.FAILED, summary
    return RunPhase.PARTIALLY_SUCCEEDED, summary


class _GroupReconciler:
    """One pass over one group; a class only to share the observation between steps."""

    def __init__(self, obs: GroupObservation) -> None:
        self.obs = obs
        self.now = obs.now
        self.spec = obs.spec
        self.status = obs.status.model_copy(deep=True)
        self.decision = GroupDecision(status=self.status)
        self.handled = self.status.last_handled or LastHandledRequests()

    def event(self, type_: str, reason: str, message: str) -> None:
        post(self.decision, type_, reason, message)

    def requeue(self, seconds: float) -> None:
        requeue(self.decision, seconds)

    def missing_members(self) -> list[str]:
        members = self.obs.members
        return [m for m in self.spec.members if m not in members or members[m].deleting]

    # --- the pass ----------------------------------------------------------------------

    def run(self) -> GroupDecision:
        problem = schedule_problem(self.spec.schedule)
        missing = self.missing_members()
        self.handled, refused = refuse_oversized_requests(self.obs.annotations, self.handled,
                                                          JOBGROUP_REQUESTS)
        for message in refused:
            self.event("Warning", "RequestTooLong", message)
        stop = new_request(self.obs.annotations, ANNOTATION_STOP_REQUESTED_AT,
                           self.handled.stop_requested_at)
        if stop:
            self.handled.stop_requested_at = stop
            self.stop()
        self.advance()
        if not expired(self.spec.expires_at, self.now):
            # Past expiresAt no new group run starts (as for ExportJobs): slots that came
            # during the last group run would otherwise keep a scheduled group from expiring.
            self.handle_requests(missing)
            if problem is None:
                self.follow_schedule(missing)
        self.advance()
        self.finish_status(problem, missing)
        expire(self.decision, self.spec.expires_at, self.now,
               blocked=self.status.current_run is not None)
        return self.decision

    def stop(self) -> None:
        run = self.status.current_run
        if run is None:
            self.event("Warning", "NothingToStop", "stop requested but no group run is active")
            return
        for member in run.members or []:
            if member.phase in (MemberPhase.QUEUED, MemberPhase.IN_PROGRESS):
                member.phase = MemberPhase.CANCELED
                member.finished_at = self.now
                member.message = "stopped by request (ferry.dev/stop-requested-at)"
            elif member.phase == MemberPhase.AWAITING_DEPENDENCY:
                member.phase = MemberPhase.SKIPPED
                member.message = "the group run was stopped"
        self.finish(run, RunPhase.CANCELED, "stopped by request (ferry.dev/stop-requested-at)")

    # --- following the members -----------------------------------------------------------

    def advance(self) -> None:
        """Follow the current member; when it has ended, apply the policy and move on."""
        run = self.status.current_run
        while run is not None and run.members and run.member_index is not None:
            member = run.members[run.member_index]
            self.follow(run, member)
            if member.phase not in FINISHED_MEMBER_PHASES:
                self.describe_waiting(run, member)
                self.requeue(FOLLOW_POLL_SECONDS)
                return
            following = run.member_index + 1
            stop_here = member.phase in NOT_SUCCEEDED and \
                self.spec.failure_policy == FailurePolicy.STOP_ON_FAILURE
            if stop_here or following == len(run.members):
                for later in run.members[following:]:
                    later.phase = MemberPhase.SKIPPED
                    later.message = f'member "{member.name}" did not succeed (StopOnFailure)'
                phase, message = _group_result(run.members, self.spec.failure_policy)
                self.finish(run, phase, message)
                return
            run.member_index = following
            self.request(run.members[following])

    def request(self, member: MemberRun) -> None:
        member.phase = MemberPhase.QUEUED
        member.requested_at = self.now
        member.message = None

    def follow(self, run: GroupRunStatus, member: MemberRun) -> None:
        """Update ``member`` from the member ExportJob's own status."""
        if member.phase in FINISHED_MEMBER_PHASES:
            return
        view = self.obs.members.get(member.name)
        if view is None:
            self.end_member(member, MemberPhase.FAILED, f'member "{member.name}" not found')
            return
        trigger = trigger_of(run.id)
        record = next((r for r in view.group_runs if r.group_run == run.id), None)
        current = view.current_run
        if current is not None and current.trigger == trigger:
            member.run_id = current.id
            member.phase = MemberPhase(current.phase.value)
            member.started_at = current.started_at
            member.message = current.message
            return
        entry = next((h for h in view.history if h.trigger == trigger), None)
        if entry is not None:
            member.run_id = entry.id
            member.started_at = entry.started_at
            self.end_member(member, MemberPhase(entry.phase.value), entry.message,
                            entry.finished_at)
        elif record is not None and record.run_id is None:
            self.end_member(member, MemberPhase.SUCCEEDED, record.message)
        elif record is not None:
            self.end_member(member, MemberPhase.FAILED,
                            f"the result of run {record.run_id} is no longer in the member's "
                            "history: raise its spec.historyLimit")
        elif view.deleting:
            self.end_member(member, MemberPhase.FAILED, f'member "{member.name}" is being deleted')
        elif view.suspend:
            self.end_member(member, MemberPhase.SKIPPED,
                            f'member "{member.name}" is suspended (spec.suspend: true): skipped')
        elif current is not None:
            member.phase = MemberPhase.QUEUED
            member.message = f"waiting for the member's run {current.id} ({current.trigger}) " \
                             "to end"
        else:
            member.phase = MemberPhase.QUEUED
            member.message = "waiting for the member to start its run"

    def end_member(self, member: MemberRun, phase: MemberPhase, message: str | None,
                   finished_at: dt.datetime | None = None) -> None:
        member.phase = phase
        member.message = message
        member.finished_at = finished_at or self.now

    def describe_waiting(self, run: GroupRunStatus, member: MemberRun) -> None:
        index = (run.member_index or 0) + 1
        run.phase = RunPhase.QUEUED if member.phase == MemberPhase.QUEUED else \
            RunPhase.IN_PROGRESS
        run.message = f'member {index}/{len(run.members or [])} "{member.name}" is ' \
                      f"{member.phase.value}" + (f": {member.message}" if member.message else "")

    def finish(self, run: GroupRunStatus, phase: RunPhase, message: str) -> None:
        started = run.started_at
        entry = GroupHistoryEntry(
            id=run.id, number=run.number, trigger=run.trigger, scheduled_for=run.scheduled_for,
            retry_of=run.retry_of, started_at=started, finished_at=self.now,
            duration_seconds=int((self.now - started).total_seconds()) if started else None,
            phase=phase, members=run.members, message=fit(message),
            started_by=run.started_by,
        )
        close_run(self.status, entry, self.spec.history_limit)
        self.decision.events.append(run_ended(f"group run {run.id}", phase, message))

    # --- starting group runs -------------------------------------------------------------

    def handle_requests(self, missing: list[str]) -> None:
        annotations = self.obs.annotations
        retry = new_request(annotations, ANNOTATION_RETRY_REQUESTED_AT,
                            self.handled.retry_requested_at)
        run_now = new_request(annotations, ANNOTATION_RUN_REQUESTED_AT,
                              self.handled.run_requested_at)
        if retry:
            self.handled.retry_requested_at = retry
            self.retry(missing)
        if run_now:
            self.handled.run_requested_at = run_now
            refusal = self.refusal(missing)
            if refusal:
                self.event("Warning", "RunRequestRejected", refusal)
            else:
                self.new_run("manual", self.now, started_by=requested_by(annotations))

    def refusal(self, missing: list[str]) -> str | None:
        """Why no group run can start now, if it cannot."""
        run = self.status.current_run
        if run is not None:
            return f"group run {run.id} is {run.phase.value}: request a run again after it " \
                   "ends, or stop it first"
        if missing:
            return self.missing_message(missing) + ": no group run started"
        return None

    def retry(self, missing: list[str]) -> None:
        last = self.status.last_run
        refusal = self.refusal(missing)
        if last is None or last.phase not in RETRYABLE_RUN_PHASES:
            refusal = refusal or ("nothing to retry: the last group run succeeded" if last else
                                  "nothing to retry: the group has not run yet")
        if refusal is not None or last is None:
            self.event("Warning", "RetryRejected", str(refusal))
            return
        previous = last.members or []
        first = next((i for i, m in enumerate(previous) if m.phase not in SUCCESSES), 0)
        carried = [m.model_copy(update={"message": f"succeeded in group run {last.id}"})
                   for m in previous[:first]]
        self.new_run("retry", self.now, retry_of=last.id, carried=carried,
                     names=[m.name for m in previous] or None)

    def follow_schedule(self, missing: list[str]) -> None:
        schedule = self.spec.schedule
        if schedule is None:
            return
        step = follow_schedule(
            schedule, self.status.last_scheduled_slot, self.now,
            created_at=self.obs.created_at, busy=self.status.current_run is not None,
            suspended=self.spec.suspend,
            held=self.missing_message(missing) if missing else None)
        wake_for(self.decision, step.next_fire, self.now)
        if step.waiting:
            self.requeue(FOLLOW_POLL_SECONDS)
            return
        if step.start is not None:
            self.new_run(step.start.trigger, step.start.slot)
        if step.decided is not None:
            self.status.last_scheduled_slot = step.decided
        record_missed(self.status, step.missed)

    def new_run(self, trigger: str, slot: dt.datetime, started_by: str | None = None,
                retry_of: str | None = None, carried: list[MemberRun] | None = None,
                names: list[str] | None = None) -> None:
        """Start a group run over ``names`` (default: spec.members), skipping ``carried``.

        The run keeps its member list until it ends; a retry reruns the list of the run
        it retries, whatever the spec says now.
        """
        carried = carried or []
        number = next_run_number(self.status)
        members = [*carried, *(MemberRun(name=m, phase=MemberPhase.AWAITING_DEPENDENCY)
                               for m in (names or self.spec.members)[len(carried):])]
        run = GroupRunStatus(
            id=run_id(self.obs.name, number), number=number, trigger=trigger,
            scheduled_for=slot, retry_of=retry_of, phase=RunPhase.QUEUED,
            started_by=started_by, started_at=self.now, member_index=len(carried),
            members=members,
        )
        self.status.current_run = run
        self.request(members[len(carried)])
        self.event("Normal", "Started", f"group run {run.id} started ({trigger})")

    # --- status --------------------------------------------------------------------------

    @staticmethod
    def missing_message(missing: list[str]) -> str:
        names = ", ".join(f'"{m}"' for m in missing)
        return f"member {names} not found" if len(missing) == 1 else \
            f"members {names} not found"

    def finish_status(self, problem: InvalidScheduleError | None,
                      missing: list[str]) -> None:
        status, spec, now, generation = self.status, self.spec, self.now, self.obs.generation
        record_observed(status, generation, self.handled, self.obs.annotations)
        schedule = spec.schedule
        once_done = schedule is not None and schedule.once is not None and \
            status.last_scheduled_slot is not None
        show_schedule(status, schedule, now, created_at=self.obs.created_at,
                      active=problem is None and not spec.suspend and not once_done)
        run = status.current_run
        status.current = f"{(run.member_index or 0) + 1}/{len(run.members or [])}" \
            if run is not None else None
        status.member_summary = member_summary(len(spec.members), len(missing))
        set_phase(status, job_phase(
            run.phase if run else None, status.last_run.phase if status.last_run else None,
            invalid=problem is not None, suspended=spec.suspend,
            scheduled=status.next_run_at is not None))
        if problem is not None:
            ready = Verdict(False, problem.reason, str(problem))
        elif missing:
            ready = Verdict(False, ConditionReason.MEMBER_NOT_FOUND,
                            self.missing_message(missing))
        else:
            ready = Verdict(True, ConditionReason.VALID,
                            "every member exists and the schedule is valid")
        set_standard_condition(status, ConditionType.READY, ready, now, generation)
        # kstatus (Helm --wait, Flux) reads Stalled: a spec error or a missing member
        # stops the group until someone changes something.
        stalled = Verdict(True, ready.reason, ready.message) if not ready.holds else \
            Verdict(False, ConditionReason.PROGRESSING, "nothing is stuck")
        set_standard_condition(status, ConditionType.STALLED, stalled, now, generation)
        set_running(status, (run.id, run.phase) if run else None, "group run", now, generation)
        # OneTimeStarted is an ExportJob's (docs/api.md): its spec is frozen once the run
        # started, a group's is not.
        set_suspended(status, suspended=spec.suspend, one_time_done=False, noun="group run",
                      now=now, generation=generation)


def reconcile_group(obs: GroupObservation) -> GroupDecision:
    """Decide the status of one JobGroup at ``obs.now``."""
    return _GroupReconciler(obs).run()
