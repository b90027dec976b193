"""The soak (issue 8 item 15): N ExportJobs cycling for M minutes, sampled every minute.

Each ExportJob runs every K minutes (`--soak-every`, default 1), job i at the minutes
congruent to i mod K, so N/K runs start in every minute. Worker pods stay Pending, so
the benchmark stops every run once its Job exists (the stop annotation): each run
starts, is canceled, folds into history and its Job is deleted. Every minute: the
operator's RSS (read then, and by its own metrics), the largest status, the longest
history, runs started, the ExportJobs' Events and the Jobs (seal Jobs apart) and pods
left.
"""

from __future__ import annotations

import os
import time
from typing import Any

from kubernetes import client

from bench.harness import exportjobs, metrics, namespaces
from bench.harness.operator_process import OperatorProcess
from bench.harness.report import log
from bench.harness.settings import Settings
from ferry.constants import EXPORTJOB_KIND, LABEL_SEAL

HISTORY_LIMIT = 3
"""Small, so that a soak of a few minutes already runs into the bound."""
POLL = 3.0
"""Seconds between looks for runs to stop."""


def schedule(every: int) -> exportjobs.Schedule:
    """Every `every` minutes, job i at the minutes congruent to i: the runs spread evenly
    over the minutes instead of all N at once."""
    if every == 1:
        return lambda _index: {"cron": {"expression": "* * * * *"}}
    return lambda index: {"cron": {"expression": f"{index % every}-59/{every} * * * *"}}


def run(jobs: int, settings: Settings) -> dict[str, Any]:
    every = settings.soak_every
    namespace = namespaces.create(f"bench-operator-soak-{jobs}-{os.getpid()}")
    exportjobs.create_all(namespace, jobs, schedule(every), settings.threads,
                          {"historyLimit": HISTORY_LIMIT})
    minutes: list[dict[str, Any]] = []
    log(f"{namespace}: {jobs} ExportJobs, each every {every} minute(s), staggered, "
        f"for {settings.soak_minutes} minutes")
    try:
        with OperatorProcess(namespace, f"operator-soak-{jobs}", settings.metrics_port,
                             settings.workers) as operator:
            started = time.time()
            next_sample = started + 60
            stops = 0
            while time.time() < started + settings.soak_minutes * 60:
                time.sleep(POLL)
                operator.check()
                stops += exportjobs.stop_active_runs(namespace)
                if time.time() >= next_sample:
                    next_sample += 60
                    minutes.append(sample(operator, namespace, len(minutes) + 1, stops))
                    log(f"soak minute {len(minutes)}: {minutes[-1]}")
    finally:
        namespaces.remove(namespace, settings)
    half = minutes[len(minutes) // 2:]
    return {
        "jobs": jobs, "minutes": settings.soak_minutes,
        "schedule": f"cron, each job every {every} min, job i at minute i mod {every}",
        "history_limit": HISTORY_LIMIT,
        "samples": minutes,
        "rss_mb_first": minutes[0]["rss_mb"] if minutes else None,
        "rss_mb_last": minutes[-1]["rss_mb"] if minutes else None,
        "rss_mb_max_second_half": max((m["rss_mb"] for m in half), default=None),
        "rss_mb_min_second_half": min((m["rss_mb"] for m in half), default=None),
    }


def sample(operator: OperatorProcess, namespace: str, minute: int,
           stops: int) -> dict[str, Any]:
    """One minute's figures."""
    core = client.CoreV1Api()
    largest, history, runs = exportjobs.status_sizes(namespace)
    events = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind={EXPORTJOB_KIND}").items
    jobs = client.BatchV1Api().list_namespaced_job(namespace).items
    return {
        "minute": minute,
        "rss_mb": operator.rss_mb(),
        "rss_mb_metrics": metrics.rss_mb(operator.port),
        "largest_status_bytes": largest, "longest_history": history,
        "runs_started": runs, "stop_requests": stops,
        "events": len(events),
        "events_count_total": sum(e.count or 1 for e in events),
        "jobs": len(jobs),
        # Seal Jobs: their pods stay Pending like the workers', so none ends and is deleted.
        "seal_jobs": sum(LABEL_SEAL in (j.metadata.labels or {}) for j in jobs),
        "pods": len(core.list_namespaced_pod(namespace).items),
    }
