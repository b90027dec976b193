"""The schedule caches of ferry.reconcile.schedule.fires answer exactly as a fresh computation.

The operator asks every job's fire times on every pass, in no particular order of
``now`` across jobs; the cache keeps the times around the last instant asked per rule.
These tests ask in shuffled order, across DST transitions, and compare every answer
with the uncached enumeration (``_fires``).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import pytest

from ferry.api.schedule import Schedule
from ferry.reconcile.schedule import fires
from ferry.reconcile.schedule.fires import next_fire_after, upcoming
from ferry.reconcile.schedule.slots import due_slots

SCHEDULES = [
    {"hourly": {"every": 1, "minute": 7}},
    {"hourly": {"every": 4, "minute": 15}},
    {"daily": {"at": "02:30"}, "timeZone": "America/New_York"},
    {"daily": {"at": "01:30"}, "timeZone": "Europe/Berlin"},
    {"cron": {"expression": "*/20 * * * *"}, "timeZone": "America/New_York"},
    {"cron": {"expression": "0 2 * * 1-5"}, "timeZone": "Europe/Berlin"},
    {"monthly": {"day": 31, "at": "00:00"}, "timeZone": "UTC"},
]
"""Every kind with a rule, including times inside spring-forward gaps and repeated on
fall-back days (2026: US transitions March 8 / November 1, EU March 29 / October 25)."""


def sched(spec: dict[str, Any]) -> Schedule:
    return Schedule.model_validate(spec)


def instants(seed: int) -> list[datetime]:
    """Times near both 2026 DST transitions, on and around fire times, shuffled."""
    starts = [datetime(2026, 3, 7, 20, tzinfo=UTC), datetime(2026, 10, 24, 20, tzinfo=UTC),
              datetime(2026, 10, 31, 20, tzinfo=UTC)]
    times = [start + timedelta(minutes=5 * k + offset) for start in starts
             for k in range(0, 12 * 30, 4) for offset in (0, 2)]
    times += [t - timedelta(microseconds=1) for t in times[::7]]
    random.Random(seed).shuffle(times)
    return times


def fresh_upcoming(schedule: Schedule, now: datetime, not_before: datetime) -> list[datetime]:
    return list(islice(fires._fires(schedule, now, forward=True, not_before=not_before), 3))


@pytest.mark.parametrize("spec", SCHEDULES, ids=lambda s: next(iter(s)))
def test_cached_fire_times_equal_a_fresh_enumeration_in_any_order(spec: dict[str, Any]) -> None:
    schedule = sched(spec)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    for now in instants(seed=len(str(spec))):
        expected = fresh_upcoming(schedule, now, created)
        assert upcoming(schedule, now, not_before=created) == expected, now
        assert next_fire_after(schedule, now, not_before=created) == expected[0], now


@pytest.mark.parametrize("spec", SCHEDULES, ids=lambda s: next(iter(s)))
def test_cached_due_decision_equals_a_fresh_one(spec: dict[str, Any]) -> None:
    """The cached shortcut (nothing due since the last slot) agrees with the full scan,
    including for a slot found late and for a job created after the slot."""
    schedule = sched(spec)
    for now in instants(seed=7)[:60]:
        previous = fires.previous_fire_before(schedule, now + timedelta(microseconds=1))
        for last_slot in (previous, previous - timedelta(hours=1) if previous else None):
            for created in (now - timedelta(days=2), now - timedelta(minutes=3)):
                fires._AROUND.clear()
                fresh = due_slots(schedule, last_slot, now, not_before=created)
                assert due_slots(schedule, last_slot, now, not_before=created) == fresh
                due_slots(schedule, last_slot, now + timedelta(hours=2), not_before=created)
                assert due_slots(schedule, last_slot, now, not_before=created) == fresh


def test_jobs_created_after_a_fire_time_never_see_it_through_the_cache() -> None:
    """Two jobs on one rule share its cache entry; the later one's creation time still
    hides the slot before it."""
    schedule = sched({"hourly": {"every": 1, "minute": 0}})
    now = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    early = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    late = datetime(2026, 11, 22, 10, 10, tzinfo=UTC)

    assert due_slots(schedule, None, now, not_before=early).run_slots == (
        datetime(2026, 11, 22, 10, 0, tzinfo=UTC),)
    assert due_slots(schedule, None, now, not_before=late).run_slots == ()
    assert upcoming(schedule, datetime(2026, 11, 22, 8, tzinfo=UTC), not_before=late)[0] == \
        datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
