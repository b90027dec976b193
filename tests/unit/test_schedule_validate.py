"""What is wrong with a schedule the API schema accepts (ferry.reconcile.schedule.validate,
and the full check in ferry.reconcile.schedule.fires).

Every time is explicit: no sleeping, no wall clock.
"""

from __future__ import annotations

from typing import Any

import pytest

from ferry.reconcile.schedule.fires import check_schedule, next_fire_after
from ferry.reconcile.schedule.validate import InvalidScheduleError

from .schedules import sched, utc


def test_cron_that_never_fires() -> None:
    schedule = sched(cron={"expression": "0 0 30 2 *"})
    assert next_fire_after(schedule, utc(2026, 1, 1)) is None
    with pytest.raises(InvalidScheduleError) as err:
        check_schedule(schedule)
    assert err.value.reason == "InvalidSchedule"
    assert str(err.value) == (
        "spec.schedule.cron.expression '0 0 30 2 *' never fires "
        "(e.g. day 30 of February): fix the day and month fields"
    )


def test_invalid_cron_expression() -> None:
    schedule = sched(cron={"expression": "61 * * * *"})
    with pytest.raises(InvalidScheduleError) as err:
        check_schedule(schedule)
    assert err.value.reason == "InvalidSchedule"
    assert str(err.value) == (
        "spec.schedule.cron.expression '61 * * * *' is not a valid five-field cron "
        'expression ("minute hour day-of-month month day-of-week", e.g. "15 */4 * * 1-5")'
    )
    with pytest.raises(InvalidScheduleError):
        next_fire_after(schedule, utc(2026, 1, 1))


def test_unknown_time_zone() -> None:
    schedule = sched(daily={"at": "02:00"}, timeZone="Mars/Olympus_Mons")
    with pytest.raises(InvalidScheduleError) as err:
        check_schedule(schedule)
    assert err.value.reason == "InvalidTimeZone"
    assert str(err.value) == (
        "spec.schedule.timeZone 'Mars/Olympus_Mons' is not an IANA time zone "
        "(use e.g. UTC, Europe/Berlin, America/New_York)"
    )


@pytest.mark.parametrize(
    "spec",
    [
        {"hourly": {"every": 4}},
        {"daily": {"at": "02:30"}, "timeZone": "Asia/Kolkata"},
        {"cron": {"expression": "15 */4 * * 1-5"}, "timeZone": "America/New_York"},
        {"once": {}},
    ],
)
def test_valid_schedules_pass_the_check(spec: dict[str, Any]) -> None:
    check_schedule(sched(**spec))
