"""Time windows of runs (ferry.reconcile.windows): all, fixed, relative, incremental, backfill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ferry.api.common import Window as ApiWindow
from ferry.api.schedule import Schedule
from ferry.api.timeframe import RelativeTimeframe, Timeframe
from ferry.reconcile.windows import (
    MAX_BACKFILL_RUNS,
    BackfillRun,
    Window,
    backfill_windows,
    relative_length,
    resolve_window,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def frame(**spec: Any) -> Timeframe:
    return Timeframe.model_validate(spec)


def sched(**spec: Any) -> Schedule:
    return Schedule.model_validate(spec)


SLOT = utc(2026, 5, 10, 2)


# --- resolve_window -------------------------------------------------------------------------


def test_all_is_unbounded_on_both_sides() -> None:
    assert resolve_window(frame(all={}), SLOT, None) == Window(None, None)
    assert resolve_window(frame(all={}), SLOT, utc(2026, 5, 9)) == Window(None, None)


def test_fixed_is_the_same_for_every_run_and_in_utc() -> None:
    timeframe = frame(fixed={"start": "2024-01-01T01:00:00+01:00", "end": "2024-02-01T00:00:00Z"})
    expected = Window(utc(2024, 1, 1), utc(2024, 2, 1))
    assert resolve_window(timeframe, SLOT, None) == expected
    assert resolve_window(timeframe, SLOT + timedelta(days=1), utc(2026, 5, 10)) == expected
    assert expected.start is not None and expected.start.tzinfo is UTC


@pytest.mark.parametrize(
    ("last", "length"),
    [
        ("4h", timedelta(hours=4)),
        ("30m", timedelta(minutes=30)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_relative_ends_at_the_slot(last: str, length: timedelta) -> None:
    window = resolve_window(frame(relative={"last": last}), SLOT, None)
    assert window == Window(SLOT - length, SLOT)


def test_relative_window_depends_on_the_slot_not_on_a_late_start() -> None:
    # a run for the 02:00 slot that only starts at 05:17 still exports [22:00, 02:00)
    window = resolve_window(frame(relative={"last": "4h"}), utc(2026, 5, 10, 2), None)
    assert window == Window(utc(2026, 5, 9, 22), utc(2026, 5, 10, 2))


def test_slot_with_an_offset_is_normalised_to_utc() -> None:
    slot = datetime(2026, 5, 10, 4, tzinfo=ZoneInfo("Europe/Berlin"))
    window = resolve_window(frame(relative={"last": "1h"}), slot, None)
    assert window == Window(utc(2026, 5, 10, 1), utc(2026, 5, 10, 2))
    assert window.end is not None and window.end.tzinfo is UTC


def test_incremental_first_run_without_initial_start_exports_everything_before_the_slot() -> None:
    assert resolve_window(frame(incremental={}), SLOT, None) == Window(None, SLOT)


def test_incremental_first_run_starts_at_initial_start() -> None:
    timeframe = frame(incremental={"initialStart": "2026-05-01T00:00:00Z"})
    assert resolve_window(timeframe, SLOT, None) == Window(utc(2026, 5, 1), SLOT)


def test_incremental_continues_from_the_last_successful_window_end() -> None:
    timeframe = frame(incremental={"initialStart": "2026-05-01T00:00:00Z"})
    last_end = utc(2026, 5, 9, 2)
    assert resolve_window(timeframe, SLOT, last_end) == Window(last_end, SLOT)


def test_incremental_with_nothing_new_is_none() -> None:
    assert resolve_window(frame(incremental={}), SLOT, SLOT) is None
    assert resolve_window(frame(incremental={}), SLOT, SLOT + timedelta(hours=1)) is None
    later_start = frame(incremental={"initialStart": "2026-06-01T00:00:00Z"})
    assert resolve_window(later_start, SLOT, None) is None


def test_window_as_status_field() -> None:
    window = Window(utc(2026, 5, 9, 22), utc(2026, 5, 10, 2))
    assert window.to_api() == ApiWindow(from_=utc(2026, 5, 9, 22), to=utc(2026, 5, 10, 2))
    assert window.to_api().to_k8s() == {
        "from": "2026-05-09T22:00:00Z",
        "to": "2026-05-10T02:00:00Z",
    }
    assert Window(None, None).to_api().to_k8s() == {}


def test_relative_length_names_the_field() -> None:
    unchecked = RelativeTimeframe.model_construct(last="4x")
    with pytest.raises(ValueError) as err:
        relative_length(unchecked)
    assert str(err.value) == (
        "spec.timeframe.relative.last: not a duration: '4x' (use e.g. 4h, 90m, 1d12h)"
    )


@pytest.mark.parametrize("last", ["4x", "40", "hh", "-1h", "1.5h", "4 h"])
def test_bad_relative_durations_are_rejected_by_the_api(last: str) -> None:
    with pytest.raises(ValidationError) as err:
        frame(relative={"last": last})
    [error] = err.value.errors()
    assert error["loc"] == ("relative", "last")
    assert error["type"] == "string_pattern_mismatch"


def test_zero_relative_duration_is_rejected() -> None:
    with pytest.raises(ValidationError) as err:
        frame(relative={"last": "0h"})
    [error] = err.value.errors()
    assert error["loc"] == ("relative",)
    assert error["msg"] == "Value error, last must be greater than zero, e.g. 4h, 90m or 1d"


# --- incremental runs tile the timeline -------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    initial=st.one_of(st.none(), st.just(utc(2026, 1, 1))),
    gaps=st.lists(st.integers(0, 3 * 86400), min_size=1, max_size=30),
    outcomes=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_property_successful_incremental_windows_tile_without_gap_or_overlap(
    initial: datetime | None, gaps: list[int], outcomes: list[bool]
) -> None:
    timeframe = frame(incremental={} if initial is None else {"initialStart": initial})
    slot = utc(2026, 1, 1)
    last_end: datetime | None = None
    exported: list[Window] = []
    for gap, succeeded in zip(gaps, outcomes, strict=False):
        slot += timedelta(seconds=gap)
        window = resolve_window(timeframe, slot, last_end)
        if window is None:
            start = last_end if last_end is not None else initial
            assert start is not None and start >= slot
            continue
        assert window.end == slot
        if succeeded:
            exported.append(window)
            last_end = window.end
    if exported:
        assert exported[0].start == initial
        assert all(a.end == b.start for a, b in pairwise(exported))
        assert all(w.start is None or (w.end is not None and w.start < w.end) for w in exported)


# --- backfill ----------------------------------------------------------------------------------

DAILY = sched(daily={"at": "00:00"})
NOW = utc(2026, 6, 1)


def test_backfill_relative_runs_each_slot_of_the_range() -> None:
    runs = backfill_windows(
        frame(relative={"last": "24h"}), DAILY, utc(2026, 1, 1), utc(2026, 1, 4), now=NOW
    )
    assert runs == [
        BackfillRun(utc(2026, 1, 1), Window(utc(2025, 12, 31), utc(2026, 1, 1))),
        BackfillRun(utc(2026, 1, 2), Window(utc(2026, 1, 1), utc(2026, 1, 2))),
        BackfillRun(utc(2026, 1, 3), Window(utc(2026, 1, 2), utc(2026, 1, 3))),
    ]


def test_backfill_incremental_windows_are_the_scheduled_ones_and_tile() -> None:
    timeframe = frame(incremental={"initialStart": "2026-01-01T12:00:00Z"})
    runs = backfill_windows(timeframe, DAILY, utc(2026, 1, 1), utc(2026, 1, 5), now=NOW)
    assert [r.window for r in runs] == [
        None,  # the Jan 1 slot ends before initialStart: nothing to export
        Window(utc(2026, 1, 1, 12), utc(2026, 1, 2)),
        Window(utc(2026, 1, 2), utc(2026, 1, 3)),
        Window(utc(2026, 1, 3), utc(2026, 1, 4)),
    ]


def test_backfill_incremental_across_dst_in_a_zone() -> None:
    schedule = sched(daily={"at": "02:30"}, timeZone="Europe/Berlin")
    runs = backfill_windows(
        frame(incremental={}), schedule, utc(2026, 3, 28), utc(2026, 3, 31), now=NOW
    )
    assert [r.slot for r in runs] == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
    ]
    windows = [r.window for r in runs]
    assert windows[0] == Window(utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30))
    assert all(a is not None and b is not None and a.end == b.start for a, b in pairwise(windows))


def test_backfill_stops_at_now() -> None:
    runs = backfill_windows(
        frame(all={}), DAILY, utc(2026, 5, 30), utc(2026, 6, 10), now=utc(2026, 6, 1, 12)
    )
    assert runs == [
        BackfillRun(utc(2026, 5, 30), Window(None, None)),
        BackfillRun(utc(2026, 5, 31), Window(None, None)),
        BackfillRun(utc(2026, 6, 1), Window(None, None)),
    ]


def test_backfill_rejects_an_empty_range() -> None:
    with pytest.raises(ValueError) as err:
        backfill_windows(frame(all={}), DAILY, utc(2026, 1, 2), utc(2026, 1, 1), now=NOW)
    assert str(err.value) == "backfill: --from (2026-01-02T00:00:00+00:00) must be before --to"


def test_backfill_rejects_too_many_slots() -> None:
    hourly = sched(hourly={"every": 1})
    with pytest.raises(ValueError) as err:
        backfill_windows(frame(all={}), hourly, utc(2025, 1, 1), utc(2026, 1, 1), now=NOW)
    assert str(err.value) == (
        f"backfill: more than {MAX_BACKFILL_RUNS} slots between 2025-01-01T00:00:00+00:00 "
        "and 2026-01-01T00:00:00+00:00: split the range"
    )
    assert (
        len(backfill_windows(frame(all={}), hourly, utc(2025, 1, 1), utc(2025, 1, 2), now=NOW))
        == 24
    )


def test_backfill_needs_a_recurring_schedule() -> None:
    with pytest.raises(ValueError, match="backfill needs a recurring schedule"):
        backfill_windows(frame(all={}), sched(once={}), utc(2026, 1, 1), utc(2026, 1, 2), now=NOW)
