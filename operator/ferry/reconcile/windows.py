"""Which rows a run exports: its time window, resolved from the timeframe and the slot.

Windows are half-open, [start, end), by ``spec.source.timestampColumn``; None on a side
means unbounded. Every window is computed from the run's *slot* (its scheduled time),
never from when it actually started, so a late start never shifts the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ferry.api.common import Window as ApiWindow
from ferry.api.schedule import Schedule
from ferry.api.timeframe import RelativeTimeframe, Timeframe
from ferry.api.units import parse_duration
from ferry.reconcile.schedule.fires import as_utc, fire_times_between, previous_fire_before

MAX_BACKFILL_RUNS = 1000
"""Most runs one backfill request may create; a larger range must be split."""


@dataclass(frozen=True)
class Window:
    """Rows with ``start <= timestamp < end``; None means unbounded on that side."""

    start: datetime | None
    end: datetime | None

    def to_api(self) -> ApiWindow:
        """The status representation (``from``/``to``)."""
        return ApiWindow(from_=self.start, to=self.end)


@dataclass(frozen=True)
class BackfillRun:
    """One run a backfill request creates: the slot it stands for and its window."""

    slot: datetime
    window: Window | None


def resolve_window(
    timeframe: Timeframe, slot: datetime, last_successful_window_end: datetime | None
) -> Window | None:
    """The window of the run for ``slot``; None when there is nothing new to export.

    - all: (None, None). ``all`` needs no timestamp column, so it cannot be bounded.
    - fixed: (start, end), the same for every run.
    - relative: (slot - last, slot).
    - incremental: (previous successful window end, else initialStart, else None; slot).
      Runs tile the timeline: each starts exactly where the last success ended. None
      when that start is not before the slot (e.g. a run-now right after a run).
    """
    slot = as_utc(slot)
    if timeframe.fixed is not None:
        return Window(as_utc(timeframe.fixed.start), as_utc(timeframe.fixed.end))
    if timeframe.relative is not None:
        return Window(slot - relative_length(timeframe.relative), slot)
    if timeframe.incremental is not None:
        initial = timeframe.incremental.initial_start
        start = last_successful_window_end if last_successful_window_end is not None else initial
        return _bounded(start, slot)
    return Window(None, None)


def relative_length(relative: RelativeTimeframe) -> timedelta:
    """``relative.last`` as a duration (reuses the API's parser, naming the field)."""
    try:
        return parse_duration(relative.last)
    except ValueError as exc:
        raise ValueError(f"spec.timeframe.relative.last: {exc}") from exc


def backfill_windows(
    timeframe: Timeframe,
    schedule: Schedule,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    limit: int = MAX_BACKFILL_RUNS,
) -> list[BackfillRun]:
    """The runs of a backfill over ``[start, end)``: each past slot and its window.

    Slots after ``now`` are left to the schedule. An incremental window here is
    [previous slot, slot), what the run would have exported had every scheduled run
    succeeded, so consecutive backfill runs tile the range; the previous slot is
    clamped to initialStart. Raises ValueError for an empty, oversized or
    unschedulable request.
    """
    start, end, now = as_utc(start), as_utc(end), as_utc(now)
    if schedule.once is not None:
        raise ValueError("backfill needs a recurring schedule; a once job has a single slot")
    if start >= end:
        raise ValueError(f"backfill: --from ({start.isoformat()}) must be before --to")
    past_end = min(end, now + timedelta(microseconds=1))
    slots = fire_times_between(schedule, start, past_end, limit + 1)
    if len(slots) > limit:
        raise ValueError(
            f"backfill: more than {limit} slots between {start.isoformat()} and "
            f"{end.isoformat()}: split the range"
        )
    return [BackfillRun(slot, _backfill_window(timeframe, schedule, slot)) for slot in slots]


def _backfill_window(timeframe: Timeframe, schedule: Schedule, slot: datetime) -> Window | None:
    """A past slot's window as if every earlier scheduled run had succeeded."""
    if timeframe.incremental is None:
        return resolve_window(timeframe, slot, None)
    initial = timeframe.incremental.initial_start
    previous = previous_fire_before(schedule, slot)
    candidates = [t for t in (previous, initial) if t is not None]
    return _bounded(max(candidates, default=None), slot)


def _bounded(start: datetime | None, end: datetime) -> Window | None:
    """[start, end), or None when it would be empty."""
    if start is None:
        return Window(None, end)
    start = as_utc(start)
    return Window(start, end) if start < end else None
