"""Prometheus metrics of the operator, served on --metrics-port by every replica.

Counted where the operator learns the fact: a run's result and the slots it missed when
the status write that records them succeeded (so a retried write never counts twice in
one process); queue depth, timers and each job's last success and data lag when scraped,
from what the last pass over the job saw.

Labels name the job's namespace `job_namespace`, not `namespace`: a scrape through a
ServiceMonitor attaches the target's own `namespace` label (the operator's namespace),
and a metric's `namespace` would then be renamed `exported_namespace`.

A standby replica serves the same endpoint with `ferry_leader` 0 and no job metrics, so
a second replica is an up target, not a down one.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable, Iterator

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from ferry.api.status import ExportJobStatus, HistoryEntry, RunPhase
from ferry.constants import IMPORTJOB_KIND
from ferry.controller.workqueue import WorkQueue

NS = "job_namespace"
KIND = "job_kind"
RUNS = Counter("ferry_runs_total", "Finished runs by kind (ExportJob, ImportJob) and result.",
               [NS, KIND, "result"])
RUN_DURATION = Histogram(
    "ferry_run_duration_seconds", "Duration of finished runs.", [NS],
    buckets=(10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 24 * 3600),
)
RECORDS = Counter("ferry_records_exported_total", "Rows exported by finished runs.", [NS])
BYTES = Counter("ferry_bytes_exported_total", "Bytes written by finished runs.", [NS])
IMPORTED = Counter("ferry_records_imported_total", "Rows loaded by finished ImportJob runs.",
                   [NS])
REJECTED = Counter("ferry_records_rejected_total", "Rows finished ImportJob runs rejected "
                   "into their audit logs (under spec.maxErrors).", [NS])
MISSED = Counter("ferry_missed_runs_total", "Schedule slots that did not run, by reason.",
                 [NS, KIND, "reason"])
RECONCILE_ERRORS = Counter("ferry_reconcile_errors_total",
                           "Reconcile passes that failed and were retried.", ["reason"])
QUEUE_DEPTH = Gauge("ferry_workqueue_depth", "ExportJobs and ImportJobs waiting to be "
                    "reconciled.")
TIMERS = Gauge("ferry_scheduled_wakeups", "ExportJobs and ImportJobs with a pending wake-up "
               "(next slot, progress poll or queue poll).")
QUEUED_RUNS = Gauge("ferry_queued_runs", "Runs waiting for their data source.")
LEADER = Gauge("ferry_leader", "1 while this replica acts (holds the Lease, or runs without "
               "--leader-elect); 0 while it stands by.")
BUILD_INFO = Gauge("ferry_build_info", "Always 1; the operator's version as a label.",
                   ["version"])


class JobFacts(Collector):
    """Per job: when its last successful run ended and how far behind its data is.

    Kept as two numbers per job and turned into samples when scraped, so the data lag
    grows between passes as the real lag does, and ten thousand jobs cost two floats
    each, not a gauge child each that would have to be kept in step."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.jobs: dict[tuple[str, str, str], tuple[float | None, float | None]] = {}

    def observe(self, kind: str, namespace: str, name: str, status: ExportJobStatus) -> None:
        success = next((h.finished_at for h in [*filter(None, [status.last_run]),
                                                *(status.history or [])]
                        if h.phase in SUCCESS and h.finished_at), None)
        end = status.last_successful_window_end
        self.jobs[(namespace, kind, name)] = (success.timestamp() if success else None,
                                              end.timestamp() if end else None)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self.jobs.pop((namespace, kind, name), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = [NS, KIND, "job_name"]
        success = GaugeMetricFamily(
            "ferry_last_success_timestamp_seconds",
            "When the job's latest successful run ended (Unix time).", labels=labels)
        lag = GaugeMetricFamily(
            "ferry_data_lag_seconds", "Now minus the end of the newest time window a "
            "successful run exported (status.lastSuccessfulWindowEnd).", labels=labels)
        now = self.clock()
        for key, (ended, window_end) in sorted(self.jobs.items()):
            if ended is not None:
                success.add_metric(list(key), ended)
            if window_end is not None:
                lag.add_metric(list(key), max(0.0, now - window_end))
        yield success
        yield lag


SUCCESS = frozenset({RunPhase.SUCCEEDED, RunPhase.SUCCEEDED_WITH_ERRORS})
"""Runs that count as the job's last success (an import's rejected rows are in its audit
log; its files all loaded)."""

JOBS = JobFacts()
REGISTRY.register(JOBS)


def start(port: int, leading: bool) -> None:
    """Serve /metrics from the start of the process, standby or not."""
    BUILD_INFO.labels(importlib.metadata.version("ferry-operator")).set(1)
    LEADER.set(1 if leading else 0)
    start_http_server(port)


def bind(queues: list[WorkQueue], queued_runs: list[Callable[[], int]]) -> None:
    """The acting operator's gauges, read from its kinds' queues and registries when
    scraped."""
    QUEUE_DEPTH.set_function(lambda: sum(len(q) for q in queues))
    TIMERS.set_function(lambda: sum(q.timers for q in queues))
    QUEUED_RUNS.set_function(lambda: sum(count() for count in queued_runs))
    LEADER.set(1)


def record_run(kind: str, namespace: str, entry: HistoryEntry) -> None:
    RUNS.labels(namespace, kind, entry.phase.value).inc()
    if entry.duration_seconds is not None:
        RUN_DURATION.labels(namespace).observe(entry.duration_seconds)
    if kind == IMPORTJOB_KIND:
        IMPORTED.labels(namespace).inc(entry.records or 0)
        REJECTED.labels(namespace).inc(entry.records_rejected or 0)
        return
    RECORDS.labels(namespace).inc(entry.records or 0)
    BYTES.labels(namespace).inc(entry.bytes or 0)


def record_missed(kind: str, namespace: str, old: ExportJobStatus,
                  new: ExportJobStatus) -> None:
    """Count the slots ``new`` records as missed that ``old`` did not."""
    seen = {m.scheduled_for for m in old.missed_runs or []}
    for missed in new.missed_runs or []:
        if missed.scheduled_for not in seen:
            MISSED.labels(namespace, kind, missed.reason.value).inc()
