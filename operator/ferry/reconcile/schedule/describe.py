"""A schedule in words, and the next slots it shows: status, ``kubectl get``, the CLI.

Kept apart from the engine because it is presentation: the text is what the
``Schedule`` printer column and ``kubectl ferry`` show, the slots are shown in the
schedule's own zone (status.upcomingRuns) while the operator works in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ferry.api.schedule import Schedule
from ferry.api.status import ScheduleType
from ferry.reconcile.schedule.fires import as_utc, display_zone, upcoming

ON_DEMAND: ScheduleType = "on demand"
ONE_TIME: ScheduleType = "one-time"
RECURRING: ScheduleType = "recurring"
"""status.scheduleType's values: what the job does without anyone asking."""


@dataclass(frozen=True)
class ScheduleView:
    """What an ExportJob's or JobGroup's status shows about its schedule."""

    summary: str
    upcoming: list[datetime] | None
    next_run_at: datetime | None
    type: ScheduleType = ON_DEMAND
    """The Type column: one-time, recurring or on demand (`schedule_type`)."""


def schedule_view(schedule: Schedule | None, now: datetime, *, not_before: datetime,
                  active: bool) -> ScheduleView:
    """Summary, the next three slots (in the schedule's zone) and the next slot (UTC);
    no slots while the schedule cannot fire (``active`` false: invalid, suspended, or a
    one-time schedule that has run)."""
    if schedule is None:
        return ScheduleView("on demand", None, None, ON_DEMAND)
    if not active:
        return ScheduleView(describe(schedule), None, None, schedule_type(schedule))
    slots = upcoming(schedule, now, not_before=not_before)
    zone = display_zone(schedule)
    return ScheduleView(describe(schedule), [t.astimezone(zone) for t in slots] or None,
                        slots[0] if slots else None, schedule_type(schedule))


def schedule_type(schedule: Schedule | None) -> ScheduleType:
    """The schedule type people sort jobs by (one-time, recurring, on demand): what a
    job does without anyone asking, as opposed to `describe`'s when."""
    if schedule is None:
        return ON_DEMAND
    return ONE_TIME if schedule.once is not None else RECURRING


def describe(schedule: Schedule) -> str:
    """A short human summary for ``kubectl get``, e.g. "daily at 02:30 Europe/Berlin"."""
    zone = schedule.time_zone
    if schedule.once is not None:
        at = schedule.once.at
        return f"once at {_short_iso(at)}" if at is not None else "once (immediately)"
    if schedule.hourly is not None:
        every, minute = schedule.hourly.every, schedule.hourly.minute
        prefix = "hourly" if every == 1 else f"every {every}h"
        return f"{prefix} at :{minute:02d} UTC"
    if schedule.daily is not None:
        return f"daily at {schedule.daily.at} {zone}"
    if schedule.weekly is not None:
        return f"weekly {schedule.weekly.day.value[:3]} at {schedule.weekly.at} {zone}"
    if schedule.monthly is not None:
        return f"monthly day {schedule.monthly.day} at {schedule.monthly.at} {zone}"
    if schedule.cron is not None:
        return f"cron {schedule.cron.expression} {zone}"
    raise ValueError(f"unknown schedule kind {schedule.kind!r}")


def _short_iso(value: datetime) -> str:
    """2026-12-01T10:00Z: UTC, seconds only when set."""
    utc = as_utc(value)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S" if utc.second else "%Y-%m-%dT%H:%M")
    return f"{text}Z"
