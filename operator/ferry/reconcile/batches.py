"""Splitting a run into batches: one completion index of the run's Job each.

A batch is a slice of the run's data. Slices are contiguous half-open time
intervals covering the run's window exactly, so every row of the window falls in
exactly one batch whatever the data does while the run is in flight: the split
needs no query against the source, and the operator never holds database
credentials. Runs whose window is unbounded (timeframe all, or the first
incremental run without initialStart) are a single batch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ferry.api.exportjob import ExportJobSpec

MAX_BATCHES = 1000


@dataclass(frozen=True)
class Slice:
    """One batch: its index in the run (file names use it) and its time slice."""

    index: int
    start: dt.datetime | None
    end: dt.datetime | None


def batch_count(spec: ExportJobSpec, start: dt.datetime | None, end: dt.datetime | None) -> int:
    """How many batches a new run over [start, end) gets (at least one second each)."""
    wanted = spec.batching.batches if spec.batching and spec.batching.batches else 1
    if wanted == 1 or start is None or end is None or spec.source.timestamp_column is None:
        return 1
    return max(1, min(wanted, MAX_BATCHES, int((end - start).total_seconds())))


def plan_slices(count: int, start: dt.datetime | None, end: dt.datetime | None) -> list[Slice]:
    """``count`` equal slices of [start, end); the same inputs always give the same slices,
    which is what lets a retry re-run exactly the failed batches of an earlier run."""
    if count == 1 or start is None or end is None:
        return [Slice(0, start, end)]
    span = end - start
    bounds = [start + span * i / count for i in range(count)] + [end]
    return [Slice(i, bounds[i], bounds[i + 1]) for i in range(count)]


def retry_slices(previous: list[Slice], failed: list[int]) -> list[Slice]:
    """The slices a retry re-runs: only the failed batches, with their original indexes."""
    wanted = set(failed)
    return [s for s in previous if s.index in wanted]
