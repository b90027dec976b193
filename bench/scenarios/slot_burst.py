"""N ExportJobs due in the same minute: cold start, idle, and the slot.

1. Create N ExportJobs while no operator runs, all due at one slot a few minutes ahead
   (`hourly: {every: 1, minute: M}`), each on its own concurrency key, pods Pending
   (`bench.harness.exportjobs`).
2. Cold start: start the operator; done when its work queue is empty and it holds N
   wake-up timers (its metrics, three scrapes in a row), checked by nextRunAt == slot.
3. Idle: RSS (last sample) and CPU (mean of 1 s samples) over `--idle` seconds.
4. The slot: latency = when the benchmark's Job watch first sees each Job - the slot;
   peak RSS and CPU from the slot until the last Job.
5. HTTP 429s: in the operator's log and its reconcile errors, and the API server's own
   counter before and after (cluster-wide).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from typing import Any

from bench.harness import cluster, exportjobs, metrics, namespaces
from bench.harness.jobwatch import JobWatch
from bench.harness.operator_process import OperatorProcess
from bench.harness.report import log
from bench.harness.settings import Settings
from bench.harness.stats import percentile, rounded

SETTLED_SCRAPES = 3
"""Scrapes a second apart that must all show the cold start done."""
LEAD_PER_JOB = 0.08
"""Seconds of lead per ExportJob (creating them and the cold start), beyond 60."""


def run(jobs: int, settings: Settings) -> dict[str, Any]:
    namespace = namespaces.create(f"bench-operator-{jobs}-{os.getpid()}")
    lead = settings.lead or 60 + jobs * LEAD_PER_JOB
    slot = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead + 59)).replace(
        second=0, microsecond=0)
    log(f"{namespace}: creating {jobs} ExportJobs, all due at {slot:%H:%M:%S} UTC")
    started = time.time()
    exportjobs.create_all(namespace, jobs, exportjobs.hourly(slot.minute), settings.threads)
    log(f"created {jobs} in {time.time() - started:.1f}s")

    before_429 = cluster.apiserver_429s()
    result: dict[str, Any] = {"jobs": jobs, "reconcile_workers": settings.workers or None}
    try:
        with OperatorProcess(namespace, f"operator-{jobs}", settings.metrics_port,
                             settings.workers) as operator:
            result["cold_start_s"] = cold_start(operator, jobs, slot)
            scheduled, total = exportjobs.scheduled(namespace, slot)
            log(f"cold start: {jobs} reconciled in {result['cold_start_s']}s "
                f"({scheduled}/{total} with nextRunAt {slot:%H:%M}Z)")
            cold_429 = cluster.apiserver_429s()
            result.update(idle(operator, settings.idle, slot))
            result.update(burst(operator, namespace, jobs, slot, settings.timeout))
            try:
                result["reconcile_errors"] = metrics.reconcile_errors(
                    metrics.scrape(operator.port))
            except OSError:
                result["reconcile_errors"] = {}
        text = operator.log_text()
    finally:
        namespaces.remove(namespace, settings)
    found, reinit = metrics.http_429s(text)
    result["http_429"] = max(found - reinit, result["reconcile_errors"].get("api-429", 0))
    result["http_429_crd_reinit"] = reinit
    result["apiserver_429_cold_start"] = cold_429 - before_429
    result["apiserver_429_total"] = cluster.apiserver_429s() - before_429
    return result


def cold_start(operator: OperatorProcess, jobs: int, slot: dt.datetime) -> float:
    """Seconds until the operator has reconciled all `jobs` ExportJobs."""
    started = time.time()
    settled = 0
    while settled < SETTLED_SCRAPES:
        time.sleep(1)
        operator.check()
        if time.time() > slot.timestamp() - 5:
            raise SystemExit("cold start did not finish before the slot: raise --lead")
        try:
            values = metrics.scrape(operator.port)
        except OSError:
            continue
        done = values.get(metrics.SCHEDULED_WAKEUPS, 0) >= jobs and \
            values.get(metrics.WORKQUEUE_DEPTH, 1) == 0
        settled = settled + 1 if done else 0
    return round(time.time() - started, 1)


def idle(operator: OperatorProcess, seconds: float, slot: dt.datetime) -> dict[str, Any]:
    """RSS and CPU while nothing is due (the first 2 s are the cold start's tail)."""
    started = time.time()
    time.sleep(max(min(seconds, slot.timestamp() - started - 5), 5))
    samples = operator.sampler.window(started + 2, time.time())
    result = {"idle_rss_mb": round(samples[-1].rss_mb, 1),
              "idle_cpu_percent": round(statistics.mean(s.cpu_percent for s in samples), 1)}
    log(f"idle: RSS {result['idle_rss_mb']} MB, CPU {result['idle_cpu_percent']}% "
        f"over {len(samples)}s")
    return result


def burst(operator: OperatorProcess, namespace: str, jobs: int, slot: dt.datetime,
          timeout: float) -> dict[str, Any]:
    """The slot: when each of the `jobs` Jobs appeared, and what it cost the operator."""
    due = slot.timestamp()
    with JobWatch(namespace) as watch:
        log(f"waiting {due - time.time():.0f}s for the slot")
        time.sleep(max(0.0, due - time.time()))
        watch.wait_for(jobs, due + timeout, operator.check)
        last = max(watch.first_seen.values(), default=due)
        time.sleep(3)
    peak = operator.sampler.window(due - 1, time.time())
    latencies = [t - due for t in watch.first_seen.values()]
    created = [(c - slot).total_seconds() for c in watch.created.values()]
    result = {
        "peak_rss_mb": round(max(s.rss_mb for s in peak), 1),
        "peak_cpu_percent": round(max(s.cpu_percent for s in peak), 1),
        "burst_mean_cpu_percent": round(statistics.mean(s.cpu_percent for s in peak), 1),
        "jobs_created": len(latencies),
        "due_to_job_p50_s": rounded(latencies, 50),
        "due_to_job_p99_s": rounded(latencies, 99),
        "due_to_job_max_s": round(max(latencies), 2) if latencies else None,
        "creation_timestamp_p50_s": percentile(created, 50) if created else None,
        "creation_timestamp_p99_s": percentile(created, 99) if created else None,
        "last_job_s": round(last - due, 1),
    }
    if len(latencies) < jobs:
        log(f"only {len(latencies)}/{jobs} Jobs within {timeout}s of the slot")
    log(f"slot: {len(latencies)} Jobs, p50 {result['due_to_job_p50_s']}s, "
        f"p99 {result['due_to_job_p99_s']}s, peak RSS {result['peak_rss_mb']} MB, "
        f"peak CPU {result['peak_cpu_percent']}%")
    return result

