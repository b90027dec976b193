"""Splitting a run into batches: one completion index of the run's Job each.

A batch is a slice of the run's data, and the slices of a run cover its window
exactly once whatever the data does while the run is in flight, without any query
against the source (the operator never holds database credentials):

- with `source.keyColumn` on a table, batch i of N takes the i-th of N contiguous key
  ranges (NULL keys in batch 0), which the first batch's worker plans from a sample of
  the data and commits into the run folder (ferry.worker.keyranges); on a `query`
  source, the rows whose key hashes to i, each over the whole window;
- otherwise, with a bounded window on `source.timestampColumn`, batch i is the i-th
  of N equal, contiguous, half-open time slices;
- otherwise (timeframe all without a key column) the run is a single batch.

The number of batches is `batching.batches`, or for `batching.rowsPerBatch` the
previous successful run's records divided by it (rounded up; one batch until a run has
succeeded). A run records the count it started with (`batchesPlanned`), and its retry
re-runs indexes of that same split.

Hash partitions cost each batch a scan of the window, which is why they are left only
where no range can be planned (docs/worker.md, "Key ranges").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ferry.api.exportjob import ExportJobSpec
from ferry.contract.limits import MAX_BATCHES


@dataclass(frozen=True)
class Slice:
    """One batch: its index among the run's ``total`` batches (file names use it), its
    time slice and, when the run is split by key, whether it is hash partition
    ``index`` of ``total``."""

    index: int
    total: int
    start: dt.datetime | None
    end: dt.datetime | None
    by_key: bool = False


def batch_count(spec: ExportJobSpec, start: dt.datetime | None, end: dt.datetime | None,
                previous_records: int | None = None) -> int:
    """How many batches a new run over [start, end) gets (time slices: one second each).

    ``rowsPerBatch`` needs a row count before the run, and the operator never queries the
    source; the previous successful run's record count is the estimate (a recurring
    export's volume moves slowly), so a job without one runs as a single batch.
    """
    wanted = min(_wanted(spec, previous_records), MAX_BATCHES)
    if wanted == 1 or spec.source.key_column is not None:
        return wanted
    if start is None or end is None or spec.source.timestamp_column is None:
        return 1
    return max(1, min(wanted, int((end - start).total_seconds())))


def _wanted(spec: ExportJobSpec, previous_records: int | None) -> int:
    batching = spec.batching
    if batching is None:
        return 1
    if batching.rows_per_batch:
        return max(1, -(-(previous_records or 0) // batching.rows_per_batch))
    return batching.batches or 1


def plan_slices(spec: ExportJobSpec, count: int, start: dt.datetime | None,
                end: dt.datetime | None) -> list[Slice]:
    """``count`` slices of [start, end); the same inputs always give the same slices,
    which is what lets a retry re-run exactly the failed batches of an earlier run."""
    if count > 1 and spec.source.key_column is not None:
        return [Slice(i, count, start, end, by_key=True) for i in range(count)]
    if count == 1 or start is None or end is None:
        return [Slice(0, 1, start, end)]
    span = end - start
    bounds = [start + span * i / count for i in range(count)] + [end]
    return [Slice(i, count, bounds[i], bounds[i + 1]) for i in range(count)]


def retry_slices(previous: list[Slice], failed: list[int]) -> list[Slice]:
    """The slices a retry re-runs: only the failed batches, with their original indexes."""
    wanted = set(failed)
    return [s for s in previous if s.index in wanted]
