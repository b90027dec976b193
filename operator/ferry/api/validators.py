"""Checks the API server cannot make, for the controller to run and report as conditions.

CEL has no cron parser and no time zone database, so the CRD checks only the shape of
``schedule.cron.expression`` and ``schedule.timeZone``; the controller calls these and
sets condition Ready=False (reason InvalidSchedule / InvalidTimeZone) with the message.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ferry.api.schedule import Schedule


def validate_cron(expression: str) -> str | None:
    """None if ``expression`` is a valid five-field cron expression, else why not."""
    if len(expression.split()) != 5 and not expression.startswith("@"):
        return (
            f"cron expression {expression!r} must have five fields "
            "(minute hour day-of-month month day-of-week)"
        )
    if not croniter.is_valid(expression):
        return f"cron expression {expression!r} is not valid; see crontab(5), e.g. '15 */4 * * *'"
    return None


def validate_time_zone(name: str) -> str | None:
    """None if ``name`` is a known IANA time zone, else why not."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"time zone {name!r} is not a known IANA time zone, e.g. UTC or Europe/Berlin"
    return None


def validate_schedule(schedule: Schedule) -> str | None:
    """None if the schedule's cron expression and time zone are valid, else the first problem."""
    if schedule.cron is not None and (problem := validate_cron(schedule.cron.expression)):
        return problem
    return validate_time_zone(schedule.time_zone)
