"""When a job or group runs: the Schedule type shared by ExportJob and JobGroup.

Exactly one kind (once, hourly, daily, weekly, monthly, cron) is set. Wall-clock
kinds are interpreted in ``timeZone`` (IANA, default UTC), except ``hourly``, whose
hours are always counted from 00:00 UTC like the services Ferry replaces: a zone with
hourly is refused rather than silently ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from ferry.api.base import FerryModel, cel, count_set, exactly_one_rule, require, validations

TIME_OF_DAY_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}$"
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|hourly)|\S+(\s+\S+){4})$"

TimeOfDay = Annotated[str, Field(max_length=5, pattern=TIME_OF_DAY_PATTERN)]

SCHEDULE_KINDS = ["once", "hourly", "daily", "weekly", "monthly", "cron"]
MSG_SCHEDULE_ONE_KIND = "set exactly one of once, hourly, daily, weekly, monthly or cron"
MSG_HOURLY_TIME_ZONE = (
    "spec.schedule.timeZone does not apply to hourly: its hours are counted from 00:00 UTC "
    "(every: 4 runs at 00, 04, 08, 12, 16 and 20 UTC); remove timeZone, or for wall-clock "
    "hours in a zone use cron (e.g. expression: \"15 */4 * * *\" with timeZone)"
)
MSG_MAX_CATCH_UP = (
    "spec.schedule.maxCatchUp only applies when missedRunPolicy is All: "
    "remove it or set missedRunPolicy: All"
)


class Weekday(StrEnum):
    """Day of the week for weekly schedules."""

    MONDAY = "Monday"
    TUESDAY = "Tuesday"
    WEDNESDAY = "Wednesday"
    THURSDAY = "Thursday"
    FRIDAY = "Friday"
    SATURDAY = "Saturday"
    SUNDAY = "Sunday"


class MissedRunPolicy(StrEnum):
    """What to do with slots that passed while the operator was down or the job suspended."""

    SKIP = "Skip"
    """Run none of them; wait for the next slot."""
    LATEST = "Latest"
    """Run only the most recent missed slot (the default)."""
    ALL = "All"
    """Run every missed slot, oldest first, at most maxCatchUp of them."""


class OnceSchedule(FerryModel):
    """Run one time: immediately on creation, or at the time given by at.

    Once the run has started the job is suspended for good and its spec can no
    longer be changed (see status.oneTimeStartedAt); clone it to run it again.
    """

    at: AwareDatetime | None = Field(
        default=None,
        description="When to start (RFC 3339, e.g. 2030-01-31T02:00:00Z). "
        "Absent: start as soon as the job is created.",
    )


class HourlySchedule(FerryModel):
    """Run every N hours (every: 1-23) at a minute past the hour (minute: 0-59).

    Hours are counted from 00:00 UTC whatever the time zone: every: 4 runs at
    00, 04, 08, 12, 16 and 20 UTC (plus minute).
    """

    every: int = Field(default=1, ge=1, le=23, description="Hours between runs, 1-23.")
    minute: int = Field(default=0, ge=0, le=59, description="Minute past the hour, 0-59.")


class DailySchedule(FerryModel):
    """Run every day at a time of day."""

    at: TimeOfDay = Field(description='Time of day "HH:MM" (24-hour) in schedule.timeZone.')


class WeeklySchedule(FerryModel):
    """Run once a week on a day at a time of day."""

    day: Weekday = Field(description="Day of the week: Monday ... Sunday.")
    at: TimeOfDay = Field(description='Time of day "HH:MM" (24-hour) in schedule.timeZone.')


class MonthlySchedule(FerryModel):
    """Run once a month on a day of the month at a time of day.

    A month without that day is skipped: day 31 runs only in 31-day months, day 30
    never runs in February.
    """

    day: int = Field(ge=1, le=31, description="Day of the month, 1-31.")
    at: TimeOfDay = Field(description='Time of day "HH:MM" (24-hour) in schedule.timeZone.')


class CronSchedule(FerryModel):
    """Run on a standard five-field cron expression."""

    expression: Annotated[str, Field(min_length=1, max_length=128, pattern=CRON_PATTERN)] = Field(
        description='Five-field cron expression ("minute hour day-of-month month '
        'day-of-week", e.g. "15 */4 * * 1-5") or a macro (@hourly, @daily, @weekly, '
        "@monthly, @yearly), evaluated in schedule.timeZone. The API server checks only "
        "the shape; the controller parses it fully and reports an invalid expression "
        "as condition Ready=False, reason InvalidSchedule."
    )


class Schedule(FerryModel):
    """When to run. Set exactly one of once, hourly, daily, weekly, monthly or cron.

    timeZone, missedRunPolicy, maxCatchUp and startingDeadlineSeconds refine it.
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(exactly_one_rule(SCHEDULE_KINDS), MSG_SCHEDULE_ONE_KIND),
            cel(
                "!has(self.hourly) || !has(self.timeZone) || self.timeZone == 'UTC'",
                MSG_HOURLY_TIME_ZONE,
                field_path=".timeZone",
            ),
            cel(
                "!has(self.maxCatchUp) || self.missedRunPolicy == 'All'",
                MSG_MAX_CATCH_UP,
                field_path=".maxCatchUp",
            ),
        )
    )

    once: OnceSchedule | None = None
    hourly: HourlySchedule | None = None
    daily: DailySchedule | None = None
    weekly: WeeklySchedule | None = None
    monthly: MonthlySchedule | None = None
    cron: CronSchedule | None = None
    time_zone: Annotated[str, Field(min_length=1, max_length=64, pattern=TIME_ZONE_PATTERN)] = (
        Field(
            default="UTC",
            description="IANA time zone for daily, weekly, monthly and cron times, e.g. "
            "Europe/Berlin (default UTC). Daylight saving time is handled: a time that does "
            "not exist on a spring-forward day runs at the first instant after the gap, a "
            "repeated time runs once. The API server checks only the shape; the controller "
            "reports an unknown zone as condition Ready=False, reason InvalidTimeZone. "
            "Refused with hourly (its hours count from 00:00 UTC: use cron for wall-clock "
            "hours in a zone); ignored by once (at carries its own offset).",
        )
    )
    missed_run_policy: MissedRunPolicy = Field(
        default=MissedRunPolicy.LATEST,
        description="Slots missed while the operator was down or the job was suspended: "
        "Skip (run none), Latest (run only the newest; default) or All (run each, oldest "
        "first, up to maxCatchUp). Missed slots are listed in status.missedRuns.",
    )
    max_catch_up: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="With missedRunPolicy All: the most missed slots to run (1-100, default 10).",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=31_536_000,
        description="A slot not started within this many seconds after its time is "
        "counted as missed (reason DeadlineExceeded) instead of run. Absent: no deadline.",
    )

    @model_validator(mode="after")
    def _check(self) -> Schedule:
        require(count_set(self, SCHEDULE_KINDS) == 1, MSG_SCHEDULE_ONE_KIND)
        require(self.hourly is None or self.time_zone == "UTC", MSG_HOURLY_TIME_ZONE)
        require(
            self.max_catch_up is None or self.missed_run_policy == MissedRunPolicy.ALL,
            MSG_MAX_CATCH_UP,
        )
        return self

    @property
    def kind(self) -> str:
        """The name of the kind that is set: once, hourly, daily, weekly, monthly or cron."""
        return next(k for k in SCHEDULE_KINDS if getattr(self, k) is not None)


DEFAULT_MAX_CATCH_UP = 10
"""maxCatchUp when missedRunPolicy is All and maxCatchUp is absent."""
