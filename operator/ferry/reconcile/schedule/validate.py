"""Why a schedule the API schema accepts cannot work, in words the user can act on.

The API server only checks the shape of a time zone or a cron expression; the operator
finds the rest (an unknown zone, an invalid or never-firing cron expression) and reports
it as Ready=False. Every such message is built here, so the admission webhook, the
reconcilers and the fire-time engine (which meets the same problems while compiling a
rule) say the same thing. This module needs no fire-time engine; the full check, which
also asks whether a rule ever fires, is ``fires.check_schedule``.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ferry.api.common import ConditionReason

CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The macros a cron expression may be, as the five fields they stand for."""


class InvalidScheduleError(ValueError):
    """A schedule the API schema accepts but that cannot work.

    ``reason`` is the Ready condition reason (InvalidSchedule or InvalidTimeZone); the
    message says what to fix.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; a clear error instead of a KeyError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidScheduleError(
            ConditionReason.INVALID_TIME_ZONE,
            f"spec.schedule.timeZone {name!r} is not an IANA time zone "
            "(use e.g. UTC, Europe/Berlin, America/New_York)",
        ) from exc


def invalid_cron(expression: str) -> InvalidScheduleError:
    """The error for an expression that is not five valid cron fields."""
    return InvalidScheduleError(
        ConditionReason.INVALID_SCHEDULE,
        f"spec.schedule.cron.expression {expression!r} is not a valid five-field cron "
        'expression ("minute hour day-of-month month day-of-week", e.g. "15 */4 * * 1-5")',
    )


def never_fires(expression: str) -> InvalidScheduleError:
    """The error for a valid cron expression that matches no date."""
    return InvalidScheduleError(
        ConditionReason.INVALID_SCHEDULE,
        f"spec.schedule.cron.expression {expression!r} never fires "
        "(e.g. day 30 of February): fix the day and month fields",
    )
