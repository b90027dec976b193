"""Progress arithmetic behind the Progress and ETA printer columns."""

from __future__ import annotations

import datetime as dt

import pytest

from ferry.reconcile.progress import (
    estimated_total,
    eta_seconds,
    human_count,
    human_duration,
    parse_indexes,
    progress_text,
)


@pytest.mark.parametrize(("text", "indexes"), [
    ("", set()), (None, set()), ("0", {0}), ("1,3-5", {1, 3, 4, 5}), ("0-2,7", {0, 1, 2, 7}),
])
def test_job_index_ranges(text: str | None, indexes: set[int]) -> None:
    assert parse_indexes(text) == indexes


def test_pending_batches_are_estimated_from_the_counted_ones() -> None:
    assert estimated_total([None, None]) is None
    assert estimated_total([100, None, None, 300]) == 800
    assert estimated_total([100, 200]) == 300


def test_eta_follows_the_observed_rate() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert eta_seconds(250, 1000, start, start + dt.timedelta(seconds=60)) == 180
    assert eta_seconds(0, 1000, start, start + dt.timedelta(seconds=60)) is None
    assert eta_seconds(10, None, start, start + dt.timedelta(seconds=60)) is None


@pytest.mark.parametrize(("processed", "total", "text"), [
    (4_500_000, 10_000_000, "45% 4.5M/10M"), (0, 0, "100% 0/0"), (1234, None, "1.2k rows"),
    (0, None, "starting"),
    (999, 1000, "99% 999/1k"),
])
def test_progress_column(processed: int, total: int | None, text: str) -> None:
    assert progress_text(processed, total) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59, "59s"), (90, "1m30s"), (3600, "1h"), (3700, "1h1m"), (120, "2m"),
])
def test_durations(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_counts() -> None:
    assert [human_count(n) for n in (999, 1000, 1_500_000, 2_000_000_000)] == [
        "999", "1k", "1.5M", "2G"]
