"""The floor: the same N Jobs created with no operator, how fast this cluster takes them.

The Jobs are the ones the operator renders for these runs (`build_job`, run 1 of each
ExportJob), POSTed by as many concurrent clients as the operator has reconcile workers,
with no status writes and nothing else: no operator design can create its Jobs faster.
Latency = when the benchmark's Job watch first sees each Job - the first POST.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client

from bench.harness import exportjobs, namespaces
from bench.harness.jobwatch import JobWatch
from bench.harness.report import log
from bench.harness.settings import Settings
from bench.harness.stats import rounded

OWNER_INDEX = 99999
"""The one ExportJob created, so that the Jobs' ownerReference resolves."""


def run(jobs: int, settings: Settings) -> dict[str, Any]:
    namespace = namespaces.create(f"bench-operator-floor-{jobs}-{os.getpid()}")
    owner = exportjobs.create(exportjobs.manifest(
        namespace, OWNER_INDEX, exportjobs.hourly(0)(OWNER_INDEX)))
    assert owner is not None  # the namespace is new
    slot = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    manifests = exportjobs.job_manifests(namespace, jobs, slot, owner["metadata"]["uid"])
    batch = client.BatchV1Api()
    clients = settings.clients
    result: dict[str, Any] = {"jobs": jobs, "clients": clients}
    try:
        with JobWatch(namespace) as watch:
            log(f"{namespace}: creating {jobs} Jobs with {clients} concurrent clients")
            started = time.time()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(lambda m: batch.create_namespaced_job(  # raw: no V1Job models
                    namespace, m, _preload_content=False), manifests))
            watch.wait_for(jobs, time.time() + settings.timeout)
        latencies = [t - started for t in watch.first_seen.values()]
        result.update(
            jobs_created=len(latencies),
            start_to_job_p50_s=rounded(latencies, 50),
            start_to_job_p99_s=rounded(latencies, 99),
            jobs_per_second=round(len(latencies) / max(latencies), 1) if latencies else None,
        )
        log(f"floor: {len(latencies)} Jobs, p50 {result['start_to_job_p50_s']}s, "
            f"p99 {result['start_to_job_p99_s']}s ({result['jobs_per_second']} Jobs/s)")
    finally:
        namespaces.remove(namespace, settings)
    return result
