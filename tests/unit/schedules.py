"""Schedules and instants shared by the tests of ferry.reconcile.schedule (one test file
per module: test_schedule_fires, _slots, _describe, _validate).

Every time is explicit: no sleeping, no wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from ferry.api.schedule import Schedule, Weekday

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def sched(**spec: Any) -> Schedule:
    return Schedule.model_validate(spec)


def local_strings(times: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).strftime("%Y-%m-%d %H:%M%z") for t in times]


def hhmm(times: list[datetime]) -> list[str]:
    return [t.strftime("%d %H:%M") for t in times]



ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # DST at midnight
    "Asia/Kolkata",
]
CRONS = ["0 * * * *", "*/30 * * * *", "30 2 * * *", "15 1 * * 0", "0 0 1 * *", "5 */3 * * 1-5"]
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)
times_of_day = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 1, 30, 59])
)
schedules = st.one_of(
    st.builds(
        lambda every, minute: sched(hourly={"every": every, "minute": minute}),
        st.integers(1, 23),
        st.integers(0, 59),
    ),
    st.builds(
        lambda at, zone: sched(daily={"at": at}, timeZone=zone),
        times_of_day,
        st.sampled_from(ZONES),
    ),
    st.builds(
        lambda day, at, zone: sched(weekly={"day": day, "at": at}, timeZone=zone),
        st.sampled_from(list(Weekday)),
        times_of_day,
        st.sampled_from(ZONES),
    ),
    st.builds(
        lambda day, at, zone: sched(monthly={"day": day, "at": at}, timeZone=zone),
        st.integers(1, 31),
        times_of_day,
        st.sampled_from(ZONES),
    ),
    st.builds(
        lambda expr, zone: sched(cron={"expression": expr}, timeZone=zone),
        st.sampled_from(CRONS),
        st.sampled_from(ZONES),
    ),
)
