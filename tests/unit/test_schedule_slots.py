"""Due slots, catch-up and the missed-run policies (ferry.reconcile.schedule.slots).

Every time is explicit: no sleeping, no wall clock.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.api.common import MissedRun, MissedRunReason
from ferry.api.schedule import Schedule
from ferry.reconcile.schedule.fires import SCAN_LIMIT, fire_times_between
from ferry.reconcile.schedule.slots import DueDecision, due_slots

from .schedules import BERLIN, instants, local_strings, sched, schedules, utc

# --- once -----------------------------------------------------------------------------


def test_once_due_slots() -> None:
    created = utc(2026, 5, 1, 8)
    immediate = sched(once={}, startingDeadlineSeconds=60)
    # late by three days (operator down): still runs, it is the job's only run
    late = due_slots(immediate, None, utc(2026, 5, 4, 8), not_before=created)
    assert late == DueDecision((created,), (), None)
    # started: never again
    assert due_slots(immediate, created, utc(2026, 5, 4), not_before=created) == DueDecision(
        (), (), None
    )
    future = sched(once={"at": "2026-06-01T00:00:00Z"})
    waiting = due_slots(future, None, utc(2026, 5, 2), not_before=created)
    assert waiting == DueDecision((), (), utc(2026, 6, 1))


# --- missed runs ----------------------------------------------------------------------


HOURLY = {"hourly": {"every": 1}}
DOWN_FROM = utc(2026, 4, 1, 10)  # last slot decided before the operator went down
BACK_AT = utc(2026, 4, 4, 10, 20)  # three days later; 72 slots missed, newest 10:00
MISSED = [DOWN_FROM + timedelta(hours=h) for h in range(1, 73)]
def reasons(decision: DueDecision) -> Counter[MissedRunReason]:
    return Counter(s.reason for s in decision.skipped_slots)


def skipped(decision: DueDecision) -> list[datetime]:
    return [s.slot for s in decision.skipped_slots]


def test_on_time_slot_runs_and_next_is_reported() -> None:
    decision = due_slots(sched(**HOURLY), utc(2026, 4, 1, 9), utc(2026, 4, 1, 10, 0, 5))
    assert decision == DueDecision((utc(2026, 4, 1, 10),), (), utc(2026, 4, 1, 11))
    assert decision.last_decided == utc(2026, 4, 1, 10)


def test_nothing_due_between_slots() -> None:
    decision = due_slots(sched(**HOURLY), utc(2026, 4, 1, 10), utc(2026, 4, 1, 10, 30))
    assert decision == DueDecision((), (), utc(2026, 4, 1, 11))
    assert decision.last_decided is None


def test_latest_after_downtime_runs_only_the_newest_slot() -> None:
    decision = due_slots(sched(**HOURLY), DOWN_FROM, BACK_AT)
    assert decision.run_slots == (MISSED[-1],)
    assert skipped(decision) == MISSED[:-1]
    assert reasons(decision) == {MissedRunReason.SKIPPED: 71}
    assert decision.skipped_slots[0].message == (
        "missedRunPolicy Latest: only the newest missed slot runs"
    )
    assert decision.next_fire == utc(2026, 4, 4, 11)
    assert decision.last_decided == MISSED[-1]


def test_latest_beyond_the_starting_deadline_runs_nothing() -> None:
    decision = due_slots(sched(**HOURLY, startingDeadlineSeconds=600), DOWN_FROM, BACK_AT)
    assert decision.run_slots == ()
    assert skipped(decision) == MISSED
    assert reasons(decision) == {MissedRunReason.DEADLINE_EXCEEDED: 72}
    assert decision.skipped_slots[-1].message == (
        "found 1200s after its time, later than startingDeadlineSeconds (600)"
    )
    assert decision.last_decided == MISSED[-1]


def test_latest_within_the_starting_deadline_runs_the_newest() -> None:
    decision = due_slots(sched(**HOURLY, startingDeadlineSeconds=3600), DOWN_FROM, BACK_AT)
    assert decision.run_slots == (MISSED[-1],)
    assert reasons(decision) == {MissedRunReason.DEADLINE_EXCEEDED: 71}


def test_skip_after_downtime_runs_nothing_late() -> None:
    decision = due_slots(sched(**HOURLY, missedRunPolicy="Skip"), DOWN_FROM, BACK_AT)
    assert decision.run_slots == ()
    assert skipped(decision) == MISSED
    assert reasons(decision) == {MissedRunReason.SKIPPED: 72}
    assert decision.skipped_slots[0].message == "missedRunPolicy Skip: not run late"


def test_skip_still_runs_a_slot_that_is_due_now() -> None:
    now = MISSED[-1] + timedelta(seconds=30)
    decision = due_slots(sched(**HOURLY, missedRunPolicy="Skip"), DOWN_FROM, now)
    assert decision.run_slots == (MISSED[-1],)
    assert reasons(decision) == {MissedRunReason.SKIPPED: 71}
    custom = due_slots(
        sched(**HOURLY, missedRunPolicy="Skip"), DOWN_FROM, now, on_time_grace=timedelta(seconds=10)
    )
    assert custom.run_slots == ()


def test_all_runs_the_newest_max_catch_up_oldest_first() -> None:
    decision = due_slots(sched(**HOURLY, missedRunPolicy="All"), DOWN_FROM, BACK_AT)
    assert decision.run_slots == tuple(MISSED[-10:])  # default maxCatchUp 10
    assert skipped(decision) == MISSED[:-10]
    assert reasons(decision) == {MissedRunReason.CATCH_UP_LIMIT: 62}
    assert decision.skipped_slots[0].message == (
        "more than maxCatchUp (10) slots were missed: only the newest 10 run"
    )


def test_all_with_a_large_cap_runs_every_missed_slot() -> None:
    decision = due_slots(sched(**HOURLY, missedRunPolicy="All", maxCatchUp=100), DOWN_FROM, BACK_AT)
    assert decision.run_slots == tuple(MISSED)
    assert decision.skipped_slots == ()


def test_all_respects_the_starting_deadline() -> None:
    schedule = sched(
        **HOURLY, missedRunPolicy="All", maxCatchUp=100, startingDeadlineSeconds=4 * 3600
    )
    decision = due_slots(schedule, DOWN_FROM, BACK_AT)
    assert decision.run_slots == tuple(MISSED[-4:])  # 07:00 .. 10:00 are within 4h of 10:20
    assert reasons(decision) == {MissedRunReason.DEADLINE_EXCEEDED: 68}


def test_daily_downtime_across_dst_in_a_zone() -> None:
    schedule = sched(daily={"at": "02:30"}, timeZone="Europe/Berlin", missedRunPolicy="All")
    decision = due_slots(schedule, utc(2026, 3, 27, 1, 30), utc(2026, 3, 31, 12))
    assert local_strings(list(decision.run_slots), BERLIN) == [
        "2026-03-28 02:30+0100", "2026-03-29 03:30+0200",
        "2026-03-30 02:30+0200", "2026-03-31 02:30+0200",
    ]  # fmt: skip


def test_a_new_job_never_fires_for_slots_before_its_creation() -> None:
    schedule = sched(**HOURLY)
    created = utc(2026, 4, 1, 10, 30)
    assert due_slots(schedule, None, utc(2026, 4, 1, 10, 30, 1), not_before=created) == DueDecision(
        (), (), utc(2026, 4, 1, 11)
    )
    assert due_slots(schedule, None, utc(2026, 4, 1, 11, 0, 2), not_before=created).run_slots == (
        utc(2026, 4, 1, 11),
    )
    exactly = due_slots(schedule, None, utc(2026, 4, 1, 11), not_before=utc(2026, 4, 1, 11))
    assert exactly.run_slots == (utc(2026, 4, 1, 11),)


def test_a_long_downtime_is_scanned_in_bounded_steps_with_a_summary() -> None:
    every_minute = sched(cron={"expression": "* * * * *"})
    decision = due_slots(every_minute, utc(2025, 1, 1), utc(2026, 1, 1))  # 525,600 slots
    assert decision.run_slots == (utc(2026, 1, 1),)
    assert len(decision.skipped_slots) == SCAN_LIMIT
    summary = decision.skipped_slots[0]
    assert summary.slot == utc(2026, 1, 1) - timedelta(minutes=SCAN_LIMIT)
    assert summary.message == (
        "more than 1000 slots were missed: this slot and every earlier one after "
        "2025-01-01T00:00:00+00:00 did not run "
        "(missedRunPolicy Latest: only the newest missed slot runs)"
    )
    small = due_slots(every_minute, utc(2025, 1, 1), utc(2026, 1, 1), scan_limit=5)
    assert len(small.run_slots) + len(small.skipped_slots) == 6
    assert small.skipped_slots[0].message.startswith("more than 5 slots were missed")


def test_skipped_slot_as_status_entry() -> None:
    decision = due_slots(sched(**HOURLY, missedRunPolicy="Skip"), DOWN_FROM, BACK_AT)
    entry = decision.skipped_slots[-1].to_missed_run()
    assert entry == MissedRun(
        scheduled_for=MISSED[-1],
        reason=MissedRunReason.SKIPPED,
        message="missedRunPolicy Skip: not run late",
    )
    assert entry.to_k8s() == {
        "scheduledFor": "2026-04-04T10:00:00Z",
        "reason": "Skipped",
        "message": "missedRunPolicy Skip: not run late",
    }


def test_passing_back_last_decided_never_returns_a_slot_again() -> None:
    schedule = sched(**HOURLY, missedRunPolicy="All")
    first = due_slots(schedule, DOWN_FROM, BACK_AT)
    again = due_slots(schedule, first.last_decided, BACK_AT)  # restart / re-apply
    assert again == DueDecision((), (), utc(2026, 4, 4, 11))


# --- properties -----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    schedule=schedules,
    start=instants,
    steps=st.lists(st.integers(1, 3 * 86400), min_size=1, max_size=25),
    policy=st.sampled_from(["Skip", "Latest", "All"]),
    deadline=st.one_of(st.none(), st.integers(1, 86400)),
)
def test_property_every_slot_is_decided_exactly_once(
    schedule: Schedule, start: datetime, steps: list[int], policy: str, deadline: int | None
) -> None:
    schedule = schedule.model_copy(
        update={"missed_run_policy": policy, "starting_deadline_seconds": deadline}
    )
    last: datetime | None = None
    now = start
    decided: list[datetime] = []
    for step in steps:
        now += timedelta(seconds=step)
        decision = due_slots(schedule, last, now, not_before=start)
        slots = sorted([*decision.run_slots, *(s.slot for s in decision.skipped_slots)])
        assert len(slots) == len(set(slots))
        assert all(a < b for a, b in pairwise(decision.run_slots))
        assert len(decision.run_slots) <= (10 if policy == "All" else 1)
        if decision.run_slots and decision.skipped_slots:
            assert decision.skipped_slots[-1].slot < decision.run_slots[0]
        decided += slots
        last = decision.last_decided or last
        if decision.next_fire is not None:
            assert decision.next_fire > now
    assert decided == sorted(set(decided))  # never twice, in order
    assert decided == fire_times_between(schedule, start, now + timedelta(microseconds=1), 10**6)


def test_starting_one_catch_up_slot_at_a_time_returns_the_rest_next_call() -> None:
    schedule = sched(**HOURLY, missedRunPolicy="All", maxCatchUp=3)
    first = due_slots(schedule, DOWN_FROM, BACK_AT)
    assert first.run_slots == tuple(MISSED[-3:])
    second = due_slots(schedule, first.run_slots[0], BACK_AT)
    assert second == DueDecision(tuple(MISSED[-2:]), (), utc(2026, 4, 4, 11))
