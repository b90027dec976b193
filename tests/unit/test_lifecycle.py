"""The lifecycle every kind shares (ferry.reconcile.lifecycle), on plain statuses.

The kinds' own tests (test_runs*, test_groups) drive it through `reconcile`; these pin
the transitions themselves, so a new kind can rely on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ferry.api.common import (
    ConditionReason,
    ConditionType,
    LastHandledRequests,
    MissedRun,
    MissedRunReason,
)
from ferry.api.jobgroup import JobGroupStatus
from ferry.api.schedule import Schedule
from ferry.api.status import MAX_MISSED_RUNS, ExportJobStatus, HistoryEntry, JobPhase, RunPhase
from ferry.constants import ANNOTATION_CREATED_BY
from ferry.reconcile.lifecycle import (
    Event,
    Verdict,
    close_run,
    expire,
    follow_schedule,
    job_phase,
    next_run_number,
    record_missed,
    record_observed,
    requeue,
    set_running,
    set_standard_condition,
    set_suspended,
)

T0 = datetime(2026, 4, 1, 10, tzinfo=UTC)
HOURLY = Schedule.model_validate({"hourly": {"every": 1}})


@dataclass
class Effects:
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    delete_self: bool = False


def test_requeue_keeps_the_earliest_wish() -> None:
    effects = Effects()
    assert requeue(effects, 30.0)
    assert not requeue(effects, 60.0)
    assert requeue(effects, 5.0)
    assert effects.requeue_after == 5.0


def test_a_due_slot_waits_for_an_active_run() -> None:
    step = follow_schedule(HOURLY, T0 - timedelta(hours=1), T0, created_at=T0 - timedelta(days=1),
                           busy=True, suspended=False)
    assert step.waiting and step.start is None and step.decided is None
    assert step.next_fire == T0 + timedelta(hours=1)


def test_on_time_and_late_slots_start_as_schedule_and_catchup() -> None:
    created = T0 - timedelta(days=1)
    on_time = follow_schedule(HOURLY, T0 - timedelta(hours=1), T0 + timedelta(seconds=5),
                              created_at=created, busy=False, suspended=False)
    assert on_time.start is not None and on_time.start.trigger == "schedule"
    late = follow_schedule(HOURLY, T0 - timedelta(hours=1), T0 + timedelta(minutes=20),
                           created_at=created, busy=False, suspended=False)
    assert late.start is not None and late.start.trigger == "catchup"
    assert late.decided == T0


def test_suspended_and_held_slots_are_recorded_not_run() -> None:
    created = T0 - timedelta(days=1)
    suspended = follow_schedule(HOURLY, T0 - timedelta(hours=3), T0, created_at=created,
                                busy=False, suspended=True)
    assert suspended.start is None and suspended.decided == T0
    assert {m.reason for m in suspended.missed} == {MissedRunReason.SUSPENDED}
    assert [m.scheduled_for for m in suspended.missed] == \
        [T0 - timedelta(hours=2), T0 - timedelta(hours=1), T0]
    held = follow_schedule(HOURLY, T0 - timedelta(hours=1), T0, created_at=created,
                           busy=False, suspended=False, held='member "a" not found')
    assert held.start is None
    assert held.missed == (MissedRun(scheduled_for=T0, reason=MissedRunReason.SKIPPED,
                                     message='member "a" not found'),)


def test_missed_runs_are_newest_first_and_bounded() -> None:
    status = ExportJobStatus()
    assert not record_missed(status, [])
    slots = [T0 + timedelta(hours=h) for h in range(MAX_MISSED_RUNS + 5)]
    assert record_missed(status, [MissedRun(scheduled_for=s, reason=MissedRunReason.SKIPPED)
                                  for s in slots])
    assert status.missed_runs is not None
    assert [m.scheduled_for for m in status.missed_runs] == slots[::-1][:MAX_MISSED_RUNS]


def test_expiry_waits_for_the_time_then_for_what_blocks_it() -> None:
    effects = Effects()
    assert not expire(effects, T0 + timedelta(seconds=90), T0, blocked=False)
    assert effects.requeue_after == 90.0
    assert not expire(effects, T0, T0, blocked=True)
    assert not effects.delete_self
    assert expire(effects, T0, T0, blocked=False)
    assert effects.delete_self
    assert effects.events == [Event("Normal", "Expired",
                                    f"spec.expiresAt {T0.isoformat()} has passed")]


def test_runs_are_numbered_and_closed_into_history() -> None:
    status = ExportJobStatus(run_counter=4)
    assert next_run_number(status) == 5 and status.run_counter == 5
    old = HistoryEntry(id="j.4", number=4, trigger="manual", phase=RunPhase.FAILED)
    new = HistoryEntry(id="j.5", number=5, trigger="manual", phase=RunPhase.SUCCEEDED)
    status.history = [old]
    close_run(status, new, history_limit=1)
    assert status.history == [new] and status.last_run == new and status.current_run is None


def test_phase_precedence() -> None:
    def phase(current: RunPhase | None = None, last: RunPhase | None = None, *,
              invalid: bool = False, suspended: bool = False, scheduled: bool = False,
              awaiting_dependency: bool = False) -> JobPhase:
        return job_phase(current, last, invalid=invalid, suspended=suspended,
                         scheduled=scheduled, awaiting_dependency=awaiting_dependency)

    assert phase(current=RunPhase.QUEUED, invalid=True) == JobPhase.QUEUED
    assert phase(invalid=True, suspended=True) == JobPhase.INVALID
    assert phase(suspended=True, awaiting_dependency=True) == JobPhase.SUSPENDED
    assert phase(awaiting_dependency=True, last=RunPhase.FAILED) == JobPhase.AWAITING_DEPENDENCY
    assert phase(last=RunPhase.FAILED, scheduled=True) == JobPhase.FAILED
    assert phase(scheduled=True) == JobPhase.SCHEDULED
    assert phase() == JobPhase.DRAFTED


def test_conditions_report_whether_they_changed() -> None:
    status = JobGroupStatus()
    ready = Verdict(True, ConditionReason.VALID, "fine")
    assert set_standard_condition(status, ConditionType.READY, ready, T0, 1)
    assert not set_standard_condition(status, ConditionType.READY, ready, T0, 1)
    assert set_running(status, ("g.1", RunPhase.IN_PROGRESS), "group run", T0, 1)
    assert set_suspended(status, suspended=False, one_time_done=False, noun="group run",
                         now=T0, generation=1)
    assert [(c.type, c.reason, c.message) for c in status.conditions or []] == [
        ("Ready", "Valid", "fine"),
        ("Running", "InProgress", "group run g.1 is InProgress"),
        ("Suspended", "Active", "scheduled group runs are enabled"),
    ]


def test_observed_keeps_the_first_creator() -> None:
    status = ExportJobStatus()
    handled = LastHandledRequests(run_requested_at="t1")
    assert record_observed(status, 3, handled, {ANNOTATION_CREATED_BY: "alice"})
    assert (status.observed_generation, status.last_handled, status.created_by) == \
        (3, handled, "alice")
    assert not record_observed(status, 3, handled, {ANNOTATION_CREATED_BY: "mallory"})
    assert status.created_by == "alice"
