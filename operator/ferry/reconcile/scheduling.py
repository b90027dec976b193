"""When a schedule fires, and which missed slots to run after a pause.

Everything here is pure: ``now`` is always a parameter, datetimes in and out are
timezone-aware and returned in UTC. A *slot* is a fire time; it is the identity of a
scheduled run, so a slot at or before the last decided slot is never returned again.

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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from ferry.api.common import ConditionReason, MissedRun, MissedRunReason
from ferry.api.schedule import (
    DEFAULT_MAX_CATCH_UP,
    MissedRunPolicy,
    OnceSchedule,
    Schedule,
    Weekday,
)

SCAN_LIMIT = 1000
"""Most missed slots enumerated one by one; older ones are summarised in one entry."""

ON_TIME_GRACE = timedelta(seconds=60)
"""With missedRunPolicy Skip, a slot found up to this late still counts as on time:
the scheduler loop needs a moment to notice a slot, and that is not a missed run."""

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
_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class InvalidScheduleError(ValueError):
    """A schedule the API schema accepts but that cannot work.

    ``reason`` is the Ready condition reason (InvalidSchedule or InvalidTimeZone); the
    message says what to fix.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SkippedSlot:
    """A slot that will not run, and why (recorded in status.missedRuns)."""

    slot: datetime
    reason: MissedRunReason
    message: str

    def to_missed_run(self) -> MissedRun:
        """The status.missedRuns entry for this slot."""
        return MissedRun(scheduled_for=self.slot, reason=self.reason, message=self.message)


@dataclass(frozen=True)
class DueDecision:
    """What to do with a schedule at ``now``.

    ``run_slots`` are the slots to start now, oldest first; ``skipped_slots`` the slots
    that will never run, oldest first; ``next_fire`` the next slot after ``now``. Every
    skipped slot is older than every run slot, so a caller that starts only the first
    run slot may persist it as ``last_slot`` and get the others back on the next call.
    """

    run_slots: tuple[datetime, ...]
    skipped_slots: tuple[SkippedSlot, ...]
    next_fire: datetime | None

    @property
    def last_decided(self) -> datetime | None:
        """The newest slot run or skipped: persist it and pass it back as ``last_slot``.

        Persisting this (not only the last run's slot) is what keeps a skipped slot from
        coming back on the next call.
        """
        slots = [*self.run_slots, *(s.slot for s in self.skipped_slots)]
        return max(slots, default=None)


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

    The API server only checks the shape of a time zone or a cron expression; this is
    the full check behind the Ready=False condition (unknown zone, bad or never-firing
    cron expression).
    """
    _zone(schedule.time_zone)
    if schedule.cron is not None and not _ever_fires(_rule(schedule)):
        raise InvalidScheduleError(
            ConditionReason.INVALID_SCHEDULE,
            f"spec.schedule.cron.expression {schedule.cron.expression!r} never fires "
            "(e.g. day 30 of February): fix the day and month fields",
        )


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
    return _zone(schedule.time_zone)


def _zone(name: str) -> tzinfo:
    """The IANA zone ``name``; a clear error instead of a KeyError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidScheduleError(
            ConditionReason.INVALID_TIME_ZONE,
            f"spec.schedule.timeZone {name!r} is not an IANA time zone "
            "(use e.g. UTC, Europe/Berlin, America/New_York)",
        ) from exc


def _rule(schedule: Schedule) -> _Rule:
    """Compile a recurring schedule; once has no rule (see :func:`_once_slot`)."""
    if schedule.hourly is not None:
        hourly = schedule.hourly
        # "*/N" in the hour field is 0, N, 2N, ... < 24: anchored at 00:00 UTC each day.
        return _Rule(f"{hourly.minute} */{hourly.every} * * *", UTC, repeat_folds=False)
    zone = _zone(schedule.time_zone)
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
    text = _CRON_MACROS.get(expression.strip().lower(), expression.strip())
    fields = text.split()
    if len(fields) != 5 or not croniter.is_valid(text):
        raise InvalidScheduleError(
            ConditionReason.INVALID_SCHEDULE,
            f"spec.schedule.cron.expression {expression!r} is not a valid five-field cron "
            'expression ("minute hour day-of-month month day-of-week", e.g. "15 */4 * * 1-5")',
        )
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


def _once_slot(once: OnceSchedule, not_before: datetime | None) -> datetime:
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
        slot = _once_slot(schedule.once, not_before)
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


@dataclass(frozen=True)
class ScheduleView:
    """What an ExportJob's or JobGroup's status shows about its schedule."""

    summary: str
    upcoming: list[datetime] | None
    next_run_at: datetime | None


def schedule_view(schedule: Schedule | None, now: datetime, *, not_before: datetime,
                  active: bool) -> ScheduleView:
    """Summary, the next three slots (in the schedule's zone) and the next slot (UTC);
    no slots while the schedule cannot fire (``active`` false: invalid, suspended, or a
    one-time schedule that has run)."""
    if schedule is None:
        return ScheduleView("on demand", None, None)
    if not active:
        return ScheduleView(describe(schedule), None, None)
    slots = upcoming(schedule, now, not_before=not_before)
    zone = display_zone(schedule)
    return ScheduleView(describe(schedule), [t.astimezone(zone) for t in slots] or None,
                        slots[0] if slots else None)


# --- printer column ------------------------------------------------------------------


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


# --- missed runs -----------------------------------------------------------------------


def due_slots(
    schedule: Schedule,
    last_slot: datetime | None,
    now: datetime,
    *,
    not_before: datetime | None = None,
    on_time_grace: timedelta = ON_TIME_GRACE,
    scan_limit: int = SCAN_LIMIT,
) -> DueDecision:
    """Which slots to run now, which to record as missed, and the next slot.

    ``last_slot`` is the newest slot already decided (``DueDecision.last_decided`` of the
    previous call): nothing at or before it is returned again, whatever DST, restarts or
    re-applies do. ``not_before`` is the job's creation time (or when its schedule last
    changed): no slot before it fires. The policy, deadline and catch-up cap come from
    the schedule (missedRunPolicy, startingDeadlineSeconds, maxCatchUp).

    At most ``scan_limit`` missed slots are enumerated, newest first, so a long downtime
    costs bounded work; everything older is recorded as one summary entry.
    """
    now = as_utc(now)
    floor = as_utc(last_slot) if last_slot is not None else None
    if schedule.once is not None:
        return _once_decision(schedule.once, floor, now, not_before)
    latest = _around(_rule(schedule), now).previous
    if latest is None or (floor is not None and latest <= floor) or \
            (not_before is not None and latest < as_utc(not_before)):
        # Nothing due since the last decided slot: every pass but one per slot.
        return DueDecision((), (), next_fire_after(schedule, now, not_before=not_before))
    newest_first = _fires(schedule, now + _MICROSECOND, forward=False, not_before=not_before)
    unseen = takewhile(lambda t: floor is None or t > floor, newest_first)
    missed = list(islice(unseen, scan_limit + 1))[::-1]
    overflow, missed = missed[: len(missed) - scan_limit], missed[-scan_limit:]
    run = _policy_runs(schedule, missed, now, on_time_grace)
    skipped = [_skip(schedule, s, now) for s in missed if s not in run]
    skipped[:0] = [_summary(_skip(schedule, s, now), scan_limit, floor) for s in overflow]
    next_fire = next_fire_after(schedule, now, not_before=not_before)
    return DueDecision(tuple(run), tuple(skipped), next_fire)


def _once_decision(
    once: OnceSchedule, floor: datetime | None, now: datetime, not_before: datetime | None
) -> DueDecision:
    """A one-time job runs its slot once, however late: it is the job's only run, so
    dropping it for a deadline would silently do nothing. Any ``last_slot`` means it
    has started (pass status.oneTimeStartedAt)."""
    if floor is not None:
        return DueDecision((), (), None)
    slot = _once_slot(once, not_before)
    if slot <= now:
        return DueDecision((slot,), (), None)
    return DueDecision((), (), slot)


def _policy_runs(
    schedule: Schedule, missed: list[datetime], now: datetime, on_time_grace: timedelta
) -> list[datetime]:
    """The slots (ascending) the missed-run policy starts now; every other one is skipped.

    All keeps the newest maxCatchUp slots rather than the oldest: after a long outage
    the freshest data matters most, and ``last_slot`` then lands on the newest slot.
    """
    live = [s for s in missed if not _expired(schedule, s, now)]
    policy = schedule.missed_run_policy
    if policy is MissedRunPolicy.ALL:
        return live[-(schedule.max_catch_up or DEFAULT_MAX_CATCH_UP) :]
    if policy is MissedRunPolicy.SKIP:
        return [s for s in live[-1:] if now - s <= on_time_grace]
    return live[-1:]


def _expired(schedule: Schedule, slot: datetime, now: datetime) -> bool:
    """The slot is later than startingDeadlineSeconds allows (never, without one)."""
    deadline = schedule.starting_deadline_seconds
    return deadline is not None and now - slot > timedelta(seconds=deadline)


def _skip(schedule: Schedule, slot: datetime, now: datetime) -> SkippedSlot:
    """The missedRuns entry for a slot the policy does not run."""
    deadline = schedule.starting_deadline_seconds
    if deadline is not None and _expired(schedule, slot, now):
        late = int((now - slot).total_seconds())
        return SkippedSlot(
            slot,
            MissedRunReason.DEADLINE_EXCEEDED,
            f"found {late}s after its time, later than startingDeadlineSeconds ({deadline})",
        )
    policy = schedule.missed_run_policy
    if policy is MissedRunPolicy.ALL:
        cap = schedule.max_catch_up or DEFAULT_MAX_CATCH_UP
        message = f"more than maxCatchUp ({cap}) slots were missed: only the newest {cap} run"
        return SkippedSlot(slot, MissedRunReason.CATCH_UP_LIMIT, message)
    if policy is MissedRunPolicy.SKIP:
        return SkippedSlot(slot, MissedRunReason.SKIPPED, "missedRunPolicy Skip: not run late")
    return SkippedSlot(
        slot, MissedRunReason.SKIPPED, "missedRunPolicy Latest: only the newest missed slot runs"
    )


def _summary(oldest: SkippedSlot, scan_limit: int, floor: datetime | None) -> SkippedSlot:
    """One entry standing for every slot older than the enumerated ones."""
    since = f"after {floor.isoformat()}" if floor is not None else "since the job was created"
    return SkippedSlot(
        oldest.slot,
        oldest.reason,
        f"more than {scan_limit} slots were missed: this slot and every earlier one "
        f"{since} did not run ({oldest.message})",
    )
