"""When a schedule fires: cron, hourly and once, in time zones and across DST.

Everything here is pure: ``now`` is always a parameter, datetimes in and out are
timezone-aware and returned in UTC. A *slot* is a fire time; it is the identity of a
scheduled run (which slots are due, and what a missed one becomes, is ``slots``).

Every recurring kind is compiled to a cron expression over local wall-clock times
(hourly over UTC, the others over ``schedule.timeZone``) and croniter enumerates the
naive local times. croniter's own time zone handling is not used: on a fall-back day it
fires a repeated wall-clock time twice and on a spring-forward day it moves a missing
time to the top of the hour. Mapping local times to instants here instead gives:

- a local time inside a spring-forward gap fires shifted forward by the length of the
  gap (02:30 on a day that jumps 02:00 -> 03:00 fires at 03:30), once;
- a repeated local time on a fall-back day fires once, at its first occurrence (fold=0),
  except for cron expressions whose hour field starts with ``*``: those fire by elapsed
  time ("every hour"), so both occurrences fire and no hour of data is left out;
- two local times mapping to the same instant fire once.

Answers are cached (see ``_around``): the operator asks every ExportJob's next fire times
on every reconcile pass, and croniter's parsing and stepping were three quarters of a
pass's CPU at the top of the hour (bench/operator_scale.py). The caches hold what a rule
*is* (its parsed croniter, whether it ever fires) and the fire times around the last
instant asked, which stay true until the next fire time passes.
"""

from __future__ import annotations

import copy
import functools
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import islice, takewhile

from croniter import CroniterBadDateError, croniter

from ferry.api.schedule import OnceSchedule, Schedule, Weekday
from ferry.reconcile.schedule.validate import (
    CRON_MACROS,
    InvalidScheduleError,
    invalid_cron,
    never_fires,
    time_zone,
)

SCAN_LIMIT = 1000
"""Most fire times one enumeration lists: missed slots are enumerated one by one up to
it (``slots`` summarises older ones in one entry), so a long downtime costs bounded work."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SCAN_MARGIN = timedelta(minutes=1)
_OFFSET_SAMPLES = [timedelta(hours=12 * k) for k in range(-4, 5)]
_AROUND_COUNT = 3
"""Fire times after an instant kept per rule: status.upcomingRuns shows three."""
_AROUND_LIMIT = 4096
"""Rules whose fire times are cached; past it the cache starts over (distinct schedules,
not jobs: ten thousand jobs on the same hourly minute share one entry)."""

_CRON_WEEKDAY = {
    Weekday.SUNDAY: 0,
    Weekday.MONDAY: 1,
    Weekday.TUESDAY: 2,
    Weekday.WEDNESDAY: 3,
    Weekday.THURSDAY: 4,
    Weekday.FRIDAY: 5,
    Weekday.SATURDAY: 6,
}


@dataclass(frozen=True)
class _Rule:
    """A recurring schedule as a cron expression over local times in ``zone``."""

    expression: str
    zone: tzinfo
    repeat_folds: bool

    def instants(self, local: datetime) -> tuple[datetime, ...]:
        """The UTC instants a naive local fire time maps to (see the module docstring)."""
        first = local.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if not self.repeat_folds:
            return (first,)
        second = local.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        return (first, second) if second > first else (first,)


# --- validation and compilation ---------------------------------------------------------


def check_schedule(schedule: Schedule) -> None:
    """Raise :class:`InvalidScheduleError` if the schedule cannot fire as written.

    The full check behind the Ready=False condition (unknown zone, bad or never-firing
    cron expression): it lives with the engine because "never fires" is a question
    only the engine can answer.
    """
    time_zone(schedule.time_zone)
    if schedule.cron is not None and not _ever_fires(_rule(schedule)):
        raise never_fires(schedule.cron.expression)


def schedule_problem(schedule: Schedule | None) -> InvalidScheduleError | None:
    """What `check_schedule` would raise, as a value (None: fine, or no schedule)."""
    if schedule is None:
        return None
    try:
        check_schedule(schedule)
    except InvalidScheduleError as e:
        return e
    return None


@functools.lru_cache(maxsize=1024)
def _ever_fires(rule: _Rule) -> bool:
    """The rule has a fire time after 1970 (a constant per rule: checked once)."""
    return next(_scan(rule, _EPOCH, forward=True), None) is not None


def display_zone(schedule: Schedule) -> tzinfo:
    """The zone to show this schedule's times in (``timeZone``, also for hourly)."""
    return time_zone(schedule.time_zone)


def _rule(schedule: Schedule) -> _Rule:
    """Compile a recurring schedule; once has no rule (see :func:`once_slot`)."""
    if schedule.hourly is not None:
        hourly = schedule.hourly
        # "*/N" in the hour field is 0, N, 2N, ... < 24: anchored at 00:00 UTC each day.
        return _Rule(f"{hourly.minute} */{hourly.every} * * *", UTC, repeat_folds=False)
    zone = time_zone(schedule.time_zone)
    if schedule.daily is not None:
        return _Rule(_at_expression(schedule.daily.at, "*", "*"), zone, repeat_folds=False)
    if schedule.weekly is not None:
        weekday = str(_CRON_WEEKDAY[schedule.weekly.day])
        return _Rule(_at_expression(schedule.weekly.at, "*", weekday), zone, repeat_folds=False)
    if schedule.monthly is not None:
        day = str(schedule.monthly.day)
        return _Rule(_at_expression(schedule.monthly.at, day, "*"), zone, repeat_folds=False)
    if schedule.cron is not None:
        return _cron_rule(schedule.cron.expression, zone)
    raise ValueError(f"schedule kind {schedule.kind!r} has no recurring rule")


def _at_expression(at: str, day_of_month: str, day_of_week: str) -> str:
    """Cron expression for "HH:MM" on the given day fields."""
    hour, minute = (int(part) for part in at.split(":"))
    return f"{minute} {hour} {day_of_month} * {day_of_week}"


@functools.lru_cache(maxsize=1024)
def _cron_rule(expression: str, zone: tzinfo) -> _Rule:
    """A user cron expression; repeated hours fire twice only for ``*`` hour fields.

    That is Vixie cron's rule: a job at a fixed hour is a wall-clock appointment and
    runs once, a job "every hour" runs by elapsed time.
    """
    text = CRON_MACROS.get(expression.strip().lower(), expression.strip())
    fields = text.split()
    if len(fields) != 5 or not croniter.is_valid(text):
        raise invalid_cron(expression)
    return _Rule(text, zone, repeat_folds=fields[1].startswith("*"))


# --- enumeration ---------------------------------------------------------------------


def _offsets_near(zone: tzinfo, instant: datetime) -> list[timedelta]:
    """UTC offsets of ``zone`` within two days of ``instant``: how far a local time can be
    from its instant around here (DST transitions are never closer than that)."""
    offsets = [(instant + delta).astimezone(zone).utcoffset() for delta in _OFFSET_SAMPLES]
    return [offset or timedelta(0) for offset in offsets]


def _beyond(candidate: datetime, origin: datetime, forward: bool) -> bool:
    """``candidate`` lies strictly on the scan's side of ``origin``."""
    return candidate > origin if forward else candidate < origin


def _scan(rule: _Rule, origin: datetime, *, forward: bool) -> Iterator[datetime]:
    """Fire instants strictly after (forward) or before ``origin``, nearest first, once each.

    Local times map to instants almost but not quite monotonically (a shifted gap time
    can land on or after the next real one), so instants wait in a heap until no later
    local time can map to an instant nearer than theirs.
    """
    sign = 1 if forward else -1
    offsets = _offsets_near(rule.zone, origin)
    first_local = origin + (min(offsets) if forward else max(offsets))
    start = first_local.replace(tzinfo=None) - sign * _SCAN_MARGIN
    step = _stepper(_croniter_at(rule.expression, start), forward)
    pending: list[tuple[int, datetime]] = []
    last = origin
    while (local := step()) is not None:
        nominal = local.replace(tzinfo=UTC)
        near = _offsets_near(rule.zone, nominal)
        frontier = nominal - (max(near) if forward else min(near))
        while pending and pending[0][0] <= sign * _micros(frontier):
            instant = heapq.heappop(pending)[1]
            if _beyond(instant, last, forward):
                yield instant
                last = instant
        for instant in rule.instants(local):
            if _beyond(instant, last, forward):
                heapq.heappush(pending, (sign * _micros(instant), instant))
    while pending:
        instant = heapq.heappop(pending)[1]
        if _beyond(instant, last, forward):
            yield instant
            last = instant


@functools.lru_cache(maxsize=1024)
def _parsed(expression: str) -> croniter:
    """A parsed expression to copy: parsing (croniter's ``_expand``) is most of its cost."""
    return croniter(expression, _EPOCH.replace(tzinfo=None))


def _croniter_at(expression: str, start: datetime) -> croniter:
    """A croniter over ``expression`` starting at the naive ``start``, as
    ``croniter(expression, start)`` but without parsing the expression again (the
    parsed fields are shared and never modified; the position is the copy's own)."""
    iterator = copy.copy(_parsed(expression))
    iterator.set_current(start, force=True)
    return iterator


@dataclass(frozen=True)
class _Around:
    """A rule's fire times around an instant, true for every ``now`` in [lo, hi).

    ``previous`` is the last fire at or before ``now``, ``following`` the next few
    strictly after it. Both stay the same until the first of ``following`` (``hi``),
    and they are the same for any ``now`` back to ``previous``, as no fire lies between.
    """

    lo: datetime
    hi: datetime | None
    previous: datetime | None
    following: tuple[datetime, ...]

    def covers(self, now: datetime) -> bool:
        return self.hi is not None and self.lo <= now < self.hi


_AROUND: dict[_Rule, _Around] = {}


def _around(rule: _Rule, now: datetime) -> _Around:
    """The fire times around ``now`` (UTC), from the cache while they are still true."""
    known = _AROUND.get(rule)
    if known is not None and known.covers(now):
        return known
    previous = next(_scan(rule, now + _MICROSECOND, forward=False), None)
    following = tuple(islice(_scan(rule, now, forward=True), _AROUND_COUNT))
    around = _Around(lo=previous if previous is not None else now,
                     hi=following[0] if following else None,
                     previous=previous, following=following)
    if around.hi is not None:
        if len(_AROUND) >= _AROUND_LIMIT:
            _AROUND.clear()
        _AROUND[rule] = around
    return around


def _stepper(iterator: croniter, forward: bool) -> Callable[[], datetime | None]:
    """Next naive local fire time in the scan direction, None when there is none."""

    def step() -> datetime | None:
        try:
            value = iterator.get_next(datetime) if forward else iterator.get_prev(datetime)
        except CroniterBadDateError:
            return None
        return value if isinstance(value, datetime) else None

    return step


def _micros(instant: datetime) -> int:
    """Exact integer key for heap ordering (floats would round microseconds)."""
    return (instant - _EPOCH) // _MICROSECOND


def once_slot(once: OnceSchedule, not_before: datetime | None) -> datetime:
    """The single slot of a one-time schedule: ``at``, or the creation time.

    Without ``at`` (or with an ``at`` before the job existed) the slot is ``not_before``,
    the job's creation time: "immediately" is a fixed instant, so it is a stable slot
    identity across operator restarts.
    """
    at = as_utc(once.at) if once.at is not None else None
    if not_before is None:
        if at is None:
            raise ValueError("schedule.once without at needs not_before (the creation time)")
        return at
    return max(at, as_utc(not_before)) if at is not None else as_utc(not_before)


def _fires(
    schedule: Schedule, origin: datetime, *, forward: bool, not_before: datetime | None
) -> Iterator[datetime]:
    """All fire times strictly beyond ``origin`` in the scan direction, none before
    ``not_before`` (the job's creation: a new job never fires for the past)."""
    if schedule.once is not None:
        slot = once_slot(schedule.once, not_before)
        if _beyond(slot, origin, forward):
            yield slot
        return
    floor = as_utc(not_before) if not_before is not None else None
    if forward and floor is not None:
        origin = max(origin, floor - _MICROSECOND)
    rule = _rule(schedule)
    for instant in _scan(rule, origin, forward=forward):
        if floor is not None and instant < floor:
            return
        yield instant


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; naive datetimes are a caller bug (their zone is a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware one")
    return value.astimezone(UTC)


# --- public fire-time queries --------------------------------------------------------------


def next_fire_after(
    schedule: Schedule, after: datetime, *, not_before: datetime | None = None
) -> datetime | None:
    """The first fire time strictly after ``after`` (and not before ``not_before``).

    None when the schedule never fires again (a past once, a cron that never matches).
    For ``once`` without ``at``, ``not_before`` (the creation time) is required.
    """
    following = _following(schedule, as_utc(after), not_before)
    if following is not None:
        return following[0] if following else None
    return next(_fires(schedule, as_utc(after), forward=True, not_before=not_before), None)


def _following(schedule: Schedule, origin: datetime,
               not_before: datetime | None) -> tuple[datetime, ...] | None:
    """The cached next fire times strictly after ``origin`` (UTC) and not before
    ``not_before``, as ``_fires`` forward gives them; None for a one-time schedule."""
    if schedule.once is not None:
        return None
    if not_before is not None:
        origin = max(origin, as_utc(not_before) - _MICROSECOND)
    return _around(_rule(schedule), origin).following


def previous_fire_before(
    schedule: Schedule, before: datetime, *, not_before: datetime | None = None
) -> datetime | None:
    """The last fire time strictly before ``before`` (and not before ``not_before``)."""
    return next(_fires(schedule, as_utc(before), forward=False, not_before=not_before), None)


def fire_times_between(
    schedule: Schedule,
    start: datetime,
    end: datetime,
    limit: int = SCAN_LIMIT,
    *,
    not_before: datetime | None = None,
) -> list[datetime]:
    """Fire times in ``[start, end)``, ascending, at most ``limit`` (the earliest ones)."""
    end = as_utc(end)
    fires = _fires(schedule, as_utc(start) - _MICROSECOND, forward=True, not_before=not_before)
    return list(islice(takewhile(lambda t: t < end, fires), limit))


def upcoming(
    schedule: Schedule, now: datetime, count: int = 3, *, not_before: datetime | None = None
) -> list[datetime]:
    """The next ``count`` fire times after ``now`` (status.upcomingRuns, in UTC).

    Convert with ``display_zone(schedule)`` to show them in the job's zone.
    """
    following = _following(schedule, as_utc(now), not_before) \
        if count <= _AROUND_COUNT else None
    if following is not None:
        return list(following[:count])
    fires = _fires(schedule, as_utc(now), forward=True, not_before=not_before)
    return list(islice(fires, count))


def last_fire(schedule: Schedule, now: datetime) -> datetime | None:
    """The last fire time at or before ``now`` (UTC) of a recurring schedule, from the
    cache: what tells ``slots.due_slots`` in one lookup that nothing is due."""
    return _around(_rule(schedule), now).previous


def fires_until(schedule: Schedule, now: datetime, *,
                not_before: datetime | None = None) -> Iterator[datetime]:
    """Fire times at or before ``now`` (and not before ``not_before``), newest first,
    enumerated lazily: a caller takes as many as it will look at."""
    return _fires(schedule, as_utc(now) + _MICROSECOND, forward=False, not_before=not_before)
