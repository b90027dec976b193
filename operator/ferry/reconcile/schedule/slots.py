"""Which slots are due at ``now``, which were missed and why: the missed-run policy.

A slot is a fire time (``fires``) and the identity of a scheduled run, so a slot at or
before the last decided slot is never returned again, whatever DST, restarts or
re-applies do. After a pause (the operator down, the job suspended) the slots that
passed are decided here at once: missedRunPolicy (Latest, All, Skip), maxCatchUp and
startingDeadlineSeconds say which run late; every other one becomes a status.missedRuns
entry saying why it did not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice, takewhile

from ferry.api.common import MissedRun, MissedRunReason
from ferry.api.schedule import DEFAULT_MAX_CATCH_UP, MissedRunPolicy, OnceSchedule, Schedule
from ferry.reconcile.schedule.fires import (
    SCAN_LIMIT,
    as_utc,
    fires_until,
    last_fire,
    next_fire_after,
    once_slot,
)

ON_TIME_GRACE = timedelta(seconds=60)
"""With missedRunPolicy Skip, a slot found up to this late still counts as on time:
the scheduler loop needs a moment to notice a slot, and that is not a missed run."""


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
    latest = last_fire(schedule, now)
    if latest is None or (floor is not None and latest <= floor) or \
            (not_before is not None and latest < as_utc(not_before)):
        # Nothing due since the last decided slot: every pass but one per slot.
        return DueDecision((), (), next_fire_after(schedule, now, not_before=not_before))
    newest_first = fires_until(schedule, now, not_before=not_before)
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
    slot = once_slot(once, not_before)
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
