"""Prometheus metrics of the operator, served on --metrics-port.

Counted where the operator learns the fact: a run's result when the status write
that folds it into history succeeded (so a retried write never counts twice in
one process), queue depth and timers when scraped.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from ferry.api.status import HistoryEntry
from ferry.controller.workqueue import WorkQueue

RUNS = Counter("ferry_runs_total", "Finished runs by result.", ["namespace", "result"])
RUN_DURATION = Histogram(
    "ferry_run_duration_seconds", "Duration of finished runs.", ["namespace"],
    buckets=(10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 24 * 3600),
)
RECORDS = Counter("ferry_records_exported_total", "Rows exported by finished runs.",
                  ["namespace"])
BYTES = Counter("ferry_bytes_exported_total", "Bytes written by finished runs.", ["namespace"])
RECONCILE_ERRORS = Counter("ferry_reconcile_errors_total",
                           "Reconcile passes that failed and were retried.", ["reason"])
QUEUE_DEPTH = Gauge("ferry_workqueue_depth", "ExportJobs waiting to be reconciled.")
TIMERS = Gauge("ferry_scheduled_wakeups", "ExportJobs with a pending wake-up (next slot, "
               "progress poll or queue poll).")
QUEUED_RUNS = Gauge("ferry_queued_runs", "Runs waiting for their data source.")


def serve(port: int, queue: WorkQueue, queued_runs: Callable[[], int]) -> None:
    """Serve /metrics; the gauges read the queue and the registry when scraped."""
    QUEUE_DEPTH.set_function(lambda: len(queue))
    TIMERS.set_function(lambda: queue.timers)
    QUEUED_RUNS.set_function(queued_runs)
    start_http_server(port)


def record_run(namespace: str, entry: HistoryEntry) -> None:
    RUNS.labels(namespace, entry.phase.value).inc()
    if entry.duration_seconds is not None:
        RUN_DURATION.labels(namespace).observe(entry.duration_seconds)
    RECORDS.labels(namespace).inc(entry.records or 0)
    BYTES.labels(namespace).inc(entry.bytes or 0)
