"""When schedules fire (ferry.reconcile.schedule.fires): hourly, daily, weekly, monthly,
cron and once, in time zones and across DST.

Every time is explicit: no sleeping, no wall clock.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ferry.api.schedule import MSG_HOURLY_TIME_ZONE, Schedule, Weekday
from ferry.reconcile.schedule.fires import (
    display_zone,
    fire_times_between,
    next_fire_after,
    previous_fire_before,
    upcoming,
)

from .schedules import (
    BERLIN,
    NEW_YORK,
    ZONES,
    hhmm,
    instants,
    local_strings,
    sched,
    schedules,
    times_of_day,
    utc,
)

# --- hourly: anchored at 00:00 UTC ----------------------------------------------------


def test_hourly_every_4_at_15_runs_from_midnight_utc() -> None:
    fires = fire_times_between(
        sched(hourly={"every": 4, "minute": 15}), utc(2026, 5, 1), utc(2026, 5, 2, 1)
    )
    assert hhmm(fires) == [
        "01 00:15", "01 04:15", "01 08:15", "01 12:15", "01 16:15", "01 20:15", "02 00:15",
    ]  # fmt: skip


def test_hourly_every_5_restarts_at_midnight_not_every_5_hours() -> None:
    fires = fire_times_between(
        sched(hourly={"every": 5, "minute": 7}), utc(2026, 5, 1), utc(2026, 5, 2, 6)
    )
    assert hhmm(fires) == [
        "01 00:07", "01 05:07", "01 10:07", "01 15:07", "01 20:07", "02 00:07", "02 05:07",
    ]  # fmt: skip


@pytest.mark.parametrize("every", range(1, 24))
def test_hourly_every_n_fires_at_multiples_of_n_each_day(every: int) -> None:
    schedule = sched(hourly={"every": every, "minute": 30})
    fires = fire_times_between(schedule, utc(2026, 12, 31), utc(2027, 1, 2))
    expected_hours = [h for h in range(24) if h % every == 0]
    for day in (utc(2026, 12, 31), utc(2027, 1, 1)):
        on_day = [t for t in fires if t.date() == day.date()]
        assert [t.hour for t in on_day] == expected_hours
        assert all(t.minute == 30 for t in on_day)
    # across midnight (and the year end) the next fire is 00:30, not last + every hours
    last_of_year = max(t for t in fires if t.year == 2026)
    assert next_fire_after(schedule, last_of_year) == utc(2027, 1, 1, 0, 30)


def test_hourly_refuses_a_time_zone_instead_of_ignoring_it() -> None:
    with pytest.raises(ValidationError) as info:
        sched(hourly={"every": 6, "minute": 0}, timeZone="America/New_York")
    assert MSG_HOURLY_TIME_ZONE in str(info.value)
    explicit_utc = sched(hourly={"every": 6, "minute": 0}, timeZone="UTC")
    fires = fire_times_between(explicit_utc, utc(2026, 3, 8), utc(2026, 3, 9))
    assert [t.hour for t in fires] == [0, 6, 12, 18]


# --- daily, weekly, monthly in a zone -------------------------------------------------


def test_daily_in_utc() -> None:
    fires = fire_times_between(sched(daily={"at": "02:30"}), utc(2026, 1, 1), utc(2026, 1, 4))
    assert fires == [utc(2026, 1, 1, 2, 30), utc(2026, 1, 2, 2, 30), utc(2026, 1, 3, 2, 30)]


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        (
            "America/New_York",
            utc(2026, 3, 7),
            ["2026-03-07 02:30-0500", "2026-03-08 03:30-0400", "2026-03-09 02:30-0400"],
        ),
        (
            "Europe/Berlin",
            utc(2026, 3, 28),
            ["2026-03-28 02:30+0100", "2026-03-29 03:30+0200", "2026-03-30 02:30+0200"],
        ),
    ],
)
def test_daily_in_spring_forward_gap_runs_once_shifted_by_the_gap(
    zone: str, start: datetime, expected: list[str]
) -> None:
    schedule = sched(daily={"at": "02:30"}, timeZone=zone)
    fires = fire_times_between(schedule, start, start + timedelta(days=3))
    assert local_strings(fires, ZoneInfo(zone)) == expected


@pytest.mark.parametrize(
    ("zone", "at", "start", "expected"),
    [
        (
            "America/New_York",
            "01:30",
            utc(2026, 10, 31, 12),
            ["2026-11-01 01:30-0400", "2026-11-02 01:30-0500", "2026-11-03 01:30-0500"],
        ),
        (
            "Europe/Berlin",
            "02:30",
            utc(2026, 10, 24, 12),
            ["2026-10-25 02:30+0200", "2026-10-26 02:30+0100", "2026-10-27 02:30+0100"],
        ),
    ],
)
def test_daily_at_a_repeated_time_runs_once_at_the_first_occurrence(
    zone: str, at: str, start: datetime, expected: list[str]
) -> None:
    schedule = sched(daily={"at": at}, timeZone=zone)
    fires = fire_times_between(schedule, start, start + timedelta(days=3))
    assert local_strings(fires, ZoneInfo(zone)) == expected


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin"])
@pytest.mark.parametrize("at", ["00:00", "01:00", "01:30", "02:00", "02:30", "02:59", "03:00"])
def test_daily_fires_exactly_once_every_local_day_through_both_transitions(
    zone: str, at: str
) -> None:
    tz = ZoneInfo(zone)
    start = datetime(2026, 3, 1, tzinfo=tz)
    end = datetime(2026, 11, 30, tzinfo=tz)
    fires = fire_times_between(sched(daily={"at": at}, timeZone=zone), start, end)
    per_day = Counter(t.astimezone(tz).date() for t in fires)
    assert set(per_day.values()) == {1}
    assert sorted(per_day) == [date(2026, 3, 1) + timedelta(days=n) for n in range(274)]


@pytest.mark.parametrize("day", list(Weekday))
def test_weekly_runs_on_the_named_day(day: Weekday) -> None:
    fires = fire_times_between(
        sched(weekly={"day": day, "at": "09:00"}), utc(2026, 6, 1), utc(2026, 6, 29)
    )
    assert len(fires) == 4
    assert {t.strftime("%A") for t in fires} == {day.value}
    assert {(t.hour, t.minute) for t in fires} == {(9, 0)}


def test_weekly_in_a_zone_keeps_local_time_across_dst() -> None:
    schedule = sched(weekly={"day": "Monday", "at": "09:00"}, timeZone="Europe/Berlin")
    fires = fire_times_between(schedule, utc(2026, 3, 20), utc(2026, 4, 7))
    assert local_strings(fires, BERLIN) == [
        "2026-03-23 09:00+0100", "2026-03-30 09:00+0200", "2026-04-06 09:00+0200",
    ]  # fmt: skip
    assert [t.hour for t in fires] == [8, 7, 7]


def test_monthly_day_31_skips_months_without_it() -> None:
    fires = fire_times_between(
        sched(monthly={"day": 31, "at": "06:00"}), utc(2026, 1, 1), utc(2027, 1, 1)
    )
    assert [t.month for t in fires] == [1, 3, 5, 7, 8, 10, 12]
    assert {(t.day, t.hour) for t in fires} == {(31, 6)}


def test_monthly_day_30_never_runs_in_february() -> None:
    fires = fire_times_between(
        sched(monthly={"day": 30, "at": "06:00"}), utc(2026, 1, 1), utc(2030, 1, 1)
    )
    assert len(fires) == 4 * 11
    assert 2 not in {t.month for t in fires}


def test_monthly_day_29_runs_in_february_of_leap_years_only() -> None:
    schedule = sched(monthly={"day": 29, "at": "00:00"})
    februaries = [
        t for t in fire_times_between(schedule, utc(2026, 1, 1), utc(2033, 1, 1)) if t.month == 2
    ]
    assert februaries == [utc(2028, 2, 29), utc(2032, 2, 29)]
    assert fire_times_between(schedule, utc(2100, 2, 1), utc(2100, 3, 1)) == []  # not a leap year


def test_monthly_on_a_spring_forward_day_runs_after_the_gap() -> None:
    schedule = sched(monthly={"day": 29, "at": "02:30"}, timeZone="Europe/Berlin")
    assert next_fire_after(schedule, utc(2026, 3, 1)) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST


# --- cron -----------------------------------------------------------------------------


def test_cron_in_utc() -> None:
    fires = fire_times_between(
        sched(cron={"expression": "0 */2 * * *"}), utc(2026, 1, 1), utc(2026, 1, 1, 7)
    )
    assert [t.hour for t in fires] == [0, 2, 4, 6]


def test_cron_is_evaluated_in_the_zone() -> None:
    schedule = sched(cron={"expression": "0 9 * * 1-5"}, timeZone="Europe/Berlin")
    assert next_fire_after(schedule, utc(2026, 1, 5)) == utc(2026, 1, 5, 8)  # 09:00 CET
    assert next_fire_after(schedule, utc(2026, 7, 6)) == utc(2026, 7, 6, 7)  # 09:00 CEST
    assert next_fire_after(schedule, utc(2026, 7, 10, 8)) == utc(2026, 7, 13, 7)  # Fri -> Mon


def test_cron_at_a_gap_time_runs_once_after_the_gap() -> None:
    # croniter alone would fire at 03:00 here
    schedule = sched(cron={"expression": "30 2 * * *"}, timeZone="America/New_York")
    fires = fire_times_between(schedule, utc(2026, 3, 7), utc(2026, 3, 10))
    assert local_strings(fires, NEW_YORK) == [
        "2026-03-07 02:30-0500", "2026-03-08 03:30-0400", "2026-03-09 02:30-0400",
    ]  # fmt: skip


def test_cron_at_a_fixed_repeated_time_runs_once() -> None:
    # croniter alone would fire twice here (01:30 EDT and 01:30 EST)
    schedule = sched(cron={"expression": "30 1 * * *"}, timeZone="America/New_York")
    fires = fire_times_between(schedule, utc(2026, 10, 31), utc(2026, 11, 3))
    assert local_strings(fires, NEW_YORK) == [
        "2026-10-31 01:30-0400", "2026-11-01 01:30-0400", "2026-11-02 01:30-0500",
    ]  # fmt: skip


def test_cron_with_fixed_hour_and_minute_steps_runs_the_repeated_hour_once() -> None:
    schedule = sched(cron={"expression": "*/15 1 * * *"}, timeZone="America/New_York")
    fires = fire_times_between(schedule, utc(2026, 11, 1), utc(2026, 11, 2))
    assert local_strings(fires, NEW_YORK) == [
        "2026-11-01 01:00-0400", "2026-11-01 01:15-0400",
        "2026-11-01 01:30-0400", "2026-11-01 01:45-0400",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("zone", "day", "count"),
    [
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("Europe/Berlin", date(2026, 3, 29), 23),
        ("Europe/Berlin", date(2026, 10, 25), 25),
    ],
)
def test_hourly_cron_in_a_zone_runs_every_real_hour_once(zone: str, day: date, count: int) -> None:
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    schedule = sched(cron={"expression": "0 * * * *"}, timeZone=zone)
    fires = fire_times_between(schedule, start, start + timedelta(hours=count))
    assert len(fires) == count
    assert {b - a for a, b in pairwise(fires)} == {timedelta(hours=1)}
    assert {t.astimezone(tz).date() for t in fires} == {day}


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin"])
def test_half_hourly_cron_never_double_fires_around_transitions(zone: str) -> None:
    schedule = sched(cron={"expression": "*/30 * * * *"}, timeZone=zone)
    for start in (utc(2026, 3, 7), utc(2026, 10, 24)):
        fires = fire_times_between(schedule, start, start + timedelta(days=10))
        assert {b - a for a, b in pairwise(fires)} == {timedelta(minutes=30)}


def test_cron_macros() -> None:
    daily = sched(cron={"expression": "@daily"}, timeZone="Europe/Berlin")
    assert next_fire_after(daily, utc(2026, 7, 1, 12)) == utc(2026, 7, 1, 22)  # midnight CEST
    hourly = sched(cron={"expression": "@hourly"})
    assert next_fire_after(hourly, utc(2026, 7, 1, 12, 1)) == utc(2026, 7, 1, 13)


# --- once -----------------------------------------------------------------------------


def test_once_at_fires_once_at_at() -> None:
    schedule = sched(once={"at": "2026-12-01T11:00:00+01:00"})
    assert next_fire_after(schedule, utc(2026, 1, 1)) == utc(2026, 12, 1, 10)
    assert next_fire_after(schedule, utc(2026, 12, 1, 10)) is None
    assert upcoming(schedule, utc(2026, 1, 1)) == [utc(2026, 12, 1, 10)]


def test_once_immediately_fires_at_the_creation_time() -> None:
    schedule = sched(once={})
    created = utc(2026, 5, 1, 8, 0, 3)
    assert next_fire_after(schedule, utc(2026, 5, 1), not_before=created) == created
    with pytest.raises(ValueError, match="needs not_before"):
        next_fire_after(schedule, utc(2026, 5, 1))


def test_once_at_before_creation_runs_at_creation() -> None:
    schedule = sched(once={"at": "2026-01-01T00:00:00Z"})
    created = utc(2026, 2, 1)
    assert next_fire_after(schedule, utc(2025, 1, 1), not_before=created) == created


# --- queries --------------------------------------------------------------------------


def test_next_fire_after_is_strict_and_previous_fire_before_is_strict() -> None:
    schedule = sched(daily={"at": "06:00"})
    assert next_fire_after(schedule, utc(2026, 1, 1, 6)) == utc(2026, 1, 2, 6)
    assert next_fire_after(schedule, utc(2026, 1, 1, 5, 59, 59)) == utc(2026, 1, 1, 6)
    assert previous_fire_before(schedule, utc(2026, 1, 1, 6)) == utc(2025, 12, 31, 6)
    assert previous_fire_before(schedule, utc(2026, 1, 1, 6, 0, 1)) == utc(2026, 1, 1, 6)


def test_fire_times_between_is_half_open_and_limited() -> None:
    schedule = sched(hourly={"every": 1})
    assert fire_times_between(schedule, utc(2026, 1, 1, 1), utc(2026, 1, 1, 4)) == [
        utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3),
    ]  # fmt: skip
    assert len(fire_times_between(schedule, utc(2026, 1, 1), utc(2027, 1, 1), 5)) == 5


def test_not_before_hides_earlier_slots() -> None:
    schedule = sched(hourly={"every": 1})
    fires = fire_times_between(
        schedule, utc(2026, 1, 1), utc(2026, 1, 1, 4), not_before=utc(2026, 1, 1, 2)
    )
    assert fires == [utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]
    assert previous_fire_before(schedule, utc(2026, 1, 1, 2), not_before=utc(2026, 1, 1, 2)) is None


def test_upcoming_lists_the_next_three_and_shows_in_the_zone() -> None:
    schedule = sched(daily={"at": "02:30"}, timeZone="Europe/Berlin")
    runs = upcoming(schedule, utc(2026, 3, 27, 12))
    assert runs == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]
    assert all(t.tzinfo is UTC for t in runs)
    shown = [t.astimezone(display_zone(schedule)).isoformat() for t in runs]
    assert shown == [
        "2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00",
    ]  # fmt: skip


def test_results_are_utc_whatever_the_input_offset() -> None:
    schedule = sched(daily={"at": "06:00"})
    after = datetime(2026, 1, 1, 8, tzinfo=ZoneInfo("Asia/Tokyo"))  # 2025-12-31T23:00Z
    result = next_fire_after(schedule, after)
    assert result == utc(2026, 1, 1, 6) and result.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(
        ValueError, match="naive datetime 2026-01-01T00:00:00: pass a timezone-aware one"
    ):
        next_fire_after(sched(hourly={"every": 1}), datetime(2026, 1, 1))


# --- properties -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(schedule=schedules, after=instants)
def test_property_next_fire_is_after_and_nothing_fires_in_between(
    schedule: Schedule, after: datetime
) -> None:
    fire = next_fire_after(schedule, after)
    assert fire is not None and fire > after and fire.tzinfo is UTC
    previous = previous_fire_before(schedule, fire)
    assert previous is None or previous <= after


@settings(max_examples=100, deadline=None)
@given(schedule=schedules, start=instants)
def test_property_fire_times_strictly_increase_and_agree_with_next_and_previous(
    schedule: Schedule, start: datetime
) -> None:
    fires = fire_times_between(schedule, start, start + timedelta(days=70), 40)
    assert fires and all(a < b for a, b in pairwise(fires))
    chained = [fires[0]]
    for _ in fires[1:]:
        following = next_fire_after(schedule, chained[-1])
        assert following is not None
        chained.append(following)
    assert chained == fires
    backwards = [fires[-1]]
    for _ in fires[1:]:
        preceding = previous_fire_before(schedule, backwards[-1])
        assert preceding is not None
        backwards.append(preceding)
    assert backwards[::-1] == fires


@settings(max_examples=60, deadline=None)
@given(
    at=times_of_day,
    zone=st.sampled_from(ZONES),
    start=st.dates(min_value=date(2020, 1, 1), max_value=date(2034, 1, 1)),
)
def test_property_daily_fires_once_per_local_day(at: str, zone: str, start: date) -> None:
    tz = ZoneInfo(zone)
    first = datetime(start.year, start.month, start.day, tzinfo=tz).astimezone(UTC)
    fires = fire_times_between(
        sched(daily={"at": at}, timeZone=zone), first, first + timedelta(days=400)
    )
    per_day = Counter(t.astimezone(tz).date() for t in fires)
    assert set(per_day.values()) == {1}
    assert all(start + timedelta(days=n) in per_day for n in range(399))
