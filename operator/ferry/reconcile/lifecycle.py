"""The lifecycle every kind shares: its schedule, its expiry, its standard conditions and
its phase, written once for ExportJob, JobGroup and the kinds to come.

A kind decides what a run *is* (Jobs and batches for an ExportJob, members for a
JobGroup); around that, every kind follows its schedule to the next slot, records the
slots it missed, expires at spec.expiresAt, numbers and closes its runs, shows its
schedule and reports Ready, Running, Suspended (and Stalled) the same way, so that
``kubectl wait``, GitOps health checks and docs/api.md hold for all of them.

Each transition takes plain data (a status, the clock, the few facts only the kind
knows) and either returns a value the kind applies or changes the status in place and
returns whether it changed anything, as kueue's ``pkg/workload`` does (``SetX(...)
bool``). The statuses are matched structurally (``KindStatus``, ``RunRecords``): a new
kind's status declares the same fields and reuses this module unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ferry.api.common import (
    Condition,
    ConditionReason,
    ConditionType,
    LastHandledRequests,
    MissedRun,
    MissedRunReason,
)
from ferry.api.schedule import Schedule
from ferry.api.status import MAX_MISSED_RUNS, JobPhase, RunPhase, ScheduleType, created_by
from ferry.reconcile.conditions import set_condition
from ferry.reconcile.schedule.describe import schedule_view
from ferry.reconcile.schedule.slots import ON_TIME_GRACE, due_slots

SUSPENDED_SLOT_MESSAGE = "spec.suspend was true"
"""status.missedRuns message of a slot that passed while the object was suspended."""


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the object being reconciled."""

    type: str
    reason: str
    message: str


class Effects(Protocol):
    """The part of a kind's decision this module acts on (its Decision dataclass)."""

    events: list[Event]
    requeue_after: float | None
    delete_self: bool


class KindStatus(Protocol):
    """The status fields every kind has: what the transitions here read and write."""

    observed_generation: int | None
    phase: JobPhase | None
    conditions: list[Condition] | None
    schedule_summary: str | None
    schedule_type: ScheduleType | None
    upcoming_runs: list[dt.datetime] | None
    next_run_at: dt.datetime | None
    created_by: str | None
    last_handled: LastHandledRequests | None
    missed_runs: list[MissedRun] | None


R = TypeVar("R")
E = TypeVar("E")


class RunRecords(Protocol[R, E]):
    """A status's runs: the current one (``R``), the finished ones (``E``), the counter."""

    run_counter: int | None
    current_run: R | None
    last_run: E | None
    history: list[E] | None


# --- effects -----------------------------------------------------------------------------


def post(effects: Effects, type_: str, reason: str, message: str) -> None:
    """Queue an Event for the controller to post."""
    effects.events.append(Event(type_, reason, message))


def requeue(effects: Effects, seconds: float) -> bool:
    """Ask to be reconciled again within ``seconds``; the earliest wish wins. Returns
    whether this wish moved the next pass earlier."""
    current = effects.requeue_after
    if current is not None and current <= seconds:
        return False
    effects.requeue_after = seconds
    return True


# --- the schedule ------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledRun:
    """A run the schedule starts now: its slot, and whether it is on time or a catch-up."""

    trigger: str
    slot: dt.datetime


@dataclass(frozen=True)
class ScheduleStep:
    """What following the schedule at ``now`` asks of a kind.

    ``start`` is the run to start (None: none); ``missed`` the slots to record in
    status.missedRuns; ``decided`` the newest slot decided, to persist as the last slot
    so that it never comes back; ``next_fire`` the next slot, to wake up for. ``waiting``:
    a slot is due but a run is still active, so nothing was decided and the slot waits.
    """

    start: ScheduledRun | None
    missed: tuple[MissedRun, ...]
    decided: dt.datetime | None
    next_fire: dt.datetime | None
    waiting: bool = False


def follow_schedule(schedule: Schedule, last_slot: dt.datetime | None, now: dt.datetime, *,
                    created_at: dt.datetime, busy: bool, suspended: bool,
                    held: str | None = None) -> ScheduleStep:
    """The slots due since ``last_slot``: the one to start, the ones missed, and why.

    ``busy``: a run is active, so a due slot waits for it (a slot is never skipped for
    that). ``suspended`` (spec.suspend): every passed slot of a recurring schedule is
    recorded as Suspended instead of run; a one-time schedule still runs. ``held``: the
    kind cannot run now for this reason (a JobGroup's missing member), so the due slots
    are recorded as Skipped with it.
    """
    due = due_slots(schedule, last_slot, now, not_before=created_at)
    if busy and due.run_slots:
        return ScheduleStep(None, (), None, due.next_fire, waiting=True)
    missed = [s.to_missed_run() for s in due.skipped_slots]
    if suspended and schedule.once is None:
        slots = sorted([*due.run_slots, *(m.scheduled_for for m in missed)])
        return ScheduleStep(None, tuple(_missed(slots, MissedRunReason.SUSPENDED,
                                                SUSPENDED_SLOT_MESSAGE)),
                            due.last_decided, due.next_fire)
    if held is not None:
        missed += _missed(due.run_slots, MissedRunReason.SKIPPED, held)
        return ScheduleStep(None, tuple(missed), due.last_decided, due.next_fire)
    if due.run_slots:
        slot = due.run_slots[0]
        trigger = "schedule" if slot >= now - ON_TIME_GRACE else "catchup"
        return ScheduleStep(ScheduledRun(trigger, slot), tuple(missed), slot, due.next_fire)
    return ScheduleStep(None, tuple(missed), due.last_decided, due.next_fire)


def _missed(slots: tuple[dt.datetime, ...] | list[dt.datetime], reason: MissedRunReason,
            message: str) -> list[MissedRun]:
    return [MissedRun(scheduled_for=s, reason=reason, message=message) for s in slots]


def record_missed(status: KindStatus, missed: tuple[MissedRun, ...] | list[MissedRun]) -> bool:
    """Add slots to status.missedRuns: newest first, the newest MAX_MISSED_RUNS kept."""
    if not missed:
        return False
    merged = sorted([*missed, *(status.missed_runs or [])],
                    key=lambda m: m.scheduled_for, reverse=True)
    status.missed_runs = merged[:MAX_MISSED_RUNS]
    return True


def wake_for(effects: Effects, slot: dt.datetime | None, now: dt.datetime) -> bool:
    """Be reconciled again at ``slot`` (the next fire time), if there is one."""
    return slot is not None and requeue(effects, max(0.0, (slot - now).total_seconds()))


def show_schedule(status: KindStatus, schedule: Schedule | None, now: dt.datetime, *,
                  created_at: dt.datetime, active: bool) -> bool:
    """status.scheduleSummary, upcomingRuns and nextRunAt (no slots while ``active`` is
    false: invalid, suspended, or a one-time schedule that has run)."""
    view = schedule_view(schedule, now, not_before=created_at, active=active)
    before = (status.schedule_summary, status.schedule_type, status.upcoming_runs,
              status.next_run_at)
    status.schedule_summary = view.summary
    status.schedule_type = view.type
    status.upcoming_runs = view.upcoming
    status.next_run_at = view.next_run_at
    return before != (view.summary, view.type, view.upcoming, view.next_run_at)


# --- expiry ------------------------------------------------------------------------------


def expired(expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Past spec.expiresAt no new run starts: a GitOps tool recreating an expired object
    must not make it run again before the operator deletes it."""
    return expires_at is not None and expires_at <= now


def expire(effects: Effects, expires_at: dt.datetime | None, now: dt.datetime, *,
           blocked: bool) -> bool:
    """Delete the object once spec.expiresAt has passed and nothing ``blocked`` it (a run
    that must end first); until then wake up at expiresAt. Returns whether it asked for
    the deletion."""
    if expires_at is None:
        return False
    if expires_at > now:
        requeue(effects, (expires_at - now).total_seconds())
        return False
    if blocked:
        return False
    effects.delete_self = True
    post(effects, "Normal", "Expired", f"spec.expiresAt {expires_at.isoformat()} has passed")
    return True


# --- runs --------------------------------------------------------------------------------


def next_run_number(status: RunRecords[R, E]) -> int:
    """Count a new run and return its number (the id is ``run_id(name, number)``)."""
    number = (status.run_counter or 0) + 1
    status.run_counter = number
    return number


def close_run(status: RunRecords[R, E], entry: E, history_limit: int) -> None:
    """The current run has ended as ``entry``: it heads the history (cut to
    spec.historyLimit) and is status.lastRun, which a historyLimit of 0 keeps alone."""
    status.history = [entry, *(status.history or [])][:history_limit]
    status.last_run = entry
    status.current_run = None


def run_ended(what: str, phase: RunPhase, message: str) -> Event:
    """The Event for a run (``what``: "run <id>", "group run <id>") that ended: a Warning
    when not everything succeeded."""
    kind = "Warning" if phase in (RunPhase.FAILED, RunPhase.PARTIALLY_SUCCEEDED) else "Normal"
    return Event(kind, phase.value, f"{what} {phase.value}: {message}")


# --- status ------------------------------------------------------------------------------


def record_observed(status: KindStatus, generation: int, handled: LastHandledRequests,
                    annotations: Mapping[str, str]) -> bool:
    """The generation this status reflects, the requests handled, and who created the
    object (kept once known: the annotation is the webhook's, not the user's)."""
    before = (status.observed_generation, status.last_handled, status.created_by)
    status.observed_generation = generation
    status.last_handled = handled
    if status.created_by is None:
        status.created_by = created_by(annotations)
    return before != (status.observed_generation, status.last_handled, status.created_by)


def job_phase(current: RunPhase | None, last: RunPhase | None, *, invalid: bool,
              suspended: bool, scheduled: bool, awaiting_dependency: bool = False) -> JobPhase:
    """status.phase: the first that applies of the current run's phase, Invalid,
    Suspended, AwaitingDependency, the last run's result, Scheduled, Drafted (docs/api.md,
    ``JobPhase``)."""
    if current is not None:
        return JobPhase(current.value)
    if invalid:
        return JobPhase.INVALID
    if suspended:
        return JobPhase.SUSPENDED
    if awaiting_dependency:
        return JobPhase.AWAITING_DEPENDENCY
    if last is not None:
        return JobPhase(last.value)
    if scheduled:
        return JobPhase.SCHEDULED
    return JobPhase.DRAFTED


def set_phase(status: KindStatus, phase: JobPhase) -> bool:
    """Set status.phase; returns whether it changed."""
    if status.phase == phase:
        return False
    status.phase = phase
    return True


# --- standard conditions -----------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A condition's value: whether it holds, the ConditionReason, what to do."""

    holds: bool
    reason: str
    message: str


def set_standard_condition(status: KindStatus, type_: ConditionType, verdict: Verdict,
                           now: dt.datetime, generation: int) -> bool:
    """Set one condition (lastTransitionTime moves only when it flips); returns whether
    the conditions changed."""
    conditions = set_condition(status.conditions, type_, verdict.holds, verdict.reason,
                               verdict.message, now, generation)
    changed = conditions != status.conditions
    status.conditions = conditions
    return changed


def set_running(status: KindStatus, active: tuple[str, RunPhase] | None, noun: str,
                now: dt.datetime, generation: int) -> bool:
    """Running: True with the run's phase as reason while a run (id, phase) is active;
    ``noun`` names a run in the message ("run", "group run")."""
    if active is not None:
        run, phase = active
        verdict = Verdict(True, phase.value, f"{noun} {run} is {phase.value}")
    else:
        verdict = Verdict(False, ConditionReason.IDLE, f"no {noun} is active")
    return set_standard_condition(status, ConditionType.RUNNING, verdict, now, generation)


def set_suspended(status: KindStatus, *, suspended: bool, one_time_done: bool, noun: str,
                  now: dt.datetime, generation: int) -> bool:
    """Suspended: True while spec.suspend is, or once a one-time schedule has started
    its run (it never runs again); ``noun`` names a run in the message."""
    if one_time_done:
        verdict = Verdict(True, ConditionReason.ONE_TIME_STARTED,
                          "a one-time job runs once: clone it to run it again")
    elif suspended:
        verdict = Verdict(True, ConditionReason.SPEC_SUSPEND,
                          f"spec.suspend is true: no new scheduled {noun}s")
    else:
        verdict = Verdict(False, ConditionReason.ACTIVE, f"scheduled {noun}s are enabled")
    return set_standard_condition(status, ConditionType.SUSPENDED, verdict, now, generation)
