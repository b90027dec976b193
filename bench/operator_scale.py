# ruff: noqa: E402  (the stdlib imports follow a sys.path fix, see below)
"""Operator scale benchmark (`make bench-operator`): N ExportJobs due in the same minute.

For each size (default 1,000 then 10,000) in a namespace of its own:

1. create N ExportJobs while no operator runs: an hourly schedule whose slot is a few
   minutes ahead (`hourly: {every: 1, minute: M}`, so all N are due in the same
   minute), each on its own concurrency key (none queue), worker pods pinned by
   nodeSelector to a node label no node has, so every pod stays Pending: the node
   agent never runs a worker and the measured path ends at "Job created";
2. cold start: start `ferry-operator -n <ns>` and wait until every ExportJob is
   reconciled (work queue empty, one wake-up timer per job, nextRunAt in every status);
3. idle: the operator's RSS and CPU over a quiet window (psutil);
4. the slot: watch the namespace's Jobs from a thread and note when each is first
   seen; peak RSS/CPU from the slot until the last Job; latency = first seen - slot
   (sub-second; the Jobs' creationTimestamp, whole seconds, is reported alongside);
5. HTTP 429s: responses the operator got (its log: kopf logs 429s, the controller logs
   "API 429"; and its ferry_reconcile_errors_total{reason="api-429"}), and the API
   server's apiserver_request_total{code="429"} before/after (cluster-wide: it also
   counts other clients of a shared cluster);
6. stop the operator, drop the finalizers, delete the namespace.

Results: a table on stdout and bench/results/operator.json.

`--floor`: the same N Jobs (the manifests the operator renders for these runs) created
directly by this script with as many concurrent clients as the operator has workers, no
operator: how fast this cluster can take N Jobs at all. No operator design can create
its Jobs faster than that, so it is the yardstick for the latency above.

`--soak-minutes M [--soak-every K]` (issue 8 item 15): N ExportJobs cycling for M minutes,
each every K minutes (default 1), staggered so that N/K runs start in every minute.
Worker pods stay Pending as above, so this script stops every run once its Job exists
(ferry.dev/stop-requested-at): each due job starts a run, the run is
canceled, folded into history and its Job deleted. Every minute it samples the
operator's RSS, the largest status, the longest history, the ExportJobs' Events and the
Jobs and pods left, and reports whether they stayed bounded (results under "soak").
"""

from __future__ import annotations

import sys

# This file is named like the standard library's `operator`, which argparse, enum and
# datetime import: run as a script, its own directory must not shadow the stdlib.
sys.path[:] = [p for p in sys.path if p not in ("", __file__.rpartition("/")[0] or ".")]

import argparse
import datetime as dt
import json
import math
import os
import re
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from ferry.api.exportjob import ExportJobSpec
from ferry.reconcile.batches import batch_count, plan_slices
from ferry.reconcile.jobspec import Owner, WorkerDefaults, build_job
from ferry.reconcile.windows import resolve_window

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "operator.json"
KUBECONFIG = ROOT / ".cache" / "cluster" / "admin.kubeconfig"
KUBECTL = next((ROOT / ".cache" / "k8s").glob("*/bin/kubectl"), Path("kubectl"))
LOGS = ROOT / ".cache" / "bench-operator"
GROUP, VERSION, PLURAL = "ferry.dev", "v1alpha1", "exportjobs"
FINALIZER = "ferry.dev/run-guard"
STOP = "ferry.dev/stop-requested-at"
SOAK_HISTORY_LIMIT = 3
"""Small, so that a soak of a few minutes already runs into the bound."""
NO_SUCH_NODE = {"ferry.dev/bench-operator": "no-such-node"}
TARGETS = {1000: (250, 5.0), 10000: (400, 30.0)}  # jobs: (RSS MB, p99 s)


def kubeconfig() -> str:
    return os.environ.get("KUBECONFIG", str(KUBECONFIG))


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def exportjob(namespace: str, index: int, minute: int,
              schedule: dict[str, Any] | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExportJob",
        "metadata": {"name": f"ej-{index:05d}", "namespace": namespace},
        "spec": {
            "title": f"bench {index}",
            "source": {
                "type": "postgres",
                "connectionSecretRef": {"name": "bench-db", "key": "uri"},
                "table": f"public.t{index}",
                "timestampColumn": "ts",
            },
            "timeframe": {"relative": {"last": "1h"}},
            "schedule": schedule or {"hourly": {"every": 1, "minute": minute}},
            "output": {"s3": {"bucket": "bench", "prefix": f"j{index}"}, "format": "jsonl"},
            "concurrency": {"key": f"bench-{index}"},
            "worker": {"nodeSelector": NO_SUCH_NODE},
            **(extra or {}),
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[rank]


def apiserver_429s() -> int:
    """Sum of apiserver_request_total{code="429"} (cluster-wide)."""
    text = subprocess.run([str(KUBECTL), f"--kubeconfig={kubeconfig()}", "get", "--raw",
                           "/metrics"], check=True,
                          capture_output=True, text=True).stdout
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'code="429"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


class Sampler(threading.Thread):
    """RSS and CPU of one process every `interval` seconds (CPU over that interval)."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []  # (wall time, rss MB, cpu %)
        self.stopped = threading.Event()

    def run(self) -> None:
        self.process.cpu_percent(None)
        while not self.stopped.wait(self.interval):
            try:
                with self.process.oneshot():
                    rss = self.process.memory_info().rss / 2**20
                    cpu = self.process.cpu_percent(None)
            except psutil.Error:
                return
            self.samples.append((time.time(), rss, cpu))

    def window(self, start: float, end: float) -> list[tuple[float, float, float]]:
        return [s for s in self.samples if start <= s[0] <= end]


class JobWatch(threading.Thread):
    """First time each Job of the namespace is seen (ADDED), by a watch from now on."""

    def __init__(self, namespace: str) -> None:
        super().__init__(daemon=True)
        self.namespace = namespace
        self.first_seen: dict[str, float] = {}
        self.created: dict[str, dt.datetime] = {}
        self.stopped = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        batch = client.BatchV1Api()
        version = batch.list_namespaced_job(self.namespace, limit=1).metadata.resource_version
        self.ready.set()
        while not self.stopped.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(batch.list_namespaced_job, self.namespace,
                                           resource_version=version, timeout_seconds=60,
                                           allow_watch_bookmarks=True):
                    now = time.time()
                    obj = event["object"]
                    if event["type"] == "BOOKMARK":
                        version = obj["metadata"]["resourceVersion"]
                        continue
                    version = obj.metadata.resource_version
                    if event["type"] == "ADDED" and obj.metadata.name not in self.first_seen:
                        self.first_seen[obj.metadata.name] = now
                        self.created[obj.metadata.name] = obj.metadata.creation_timestamp
                    if self.stopped.is_set():
                        break
            except ApiException as e:
                if e.status == 410:  # expired: relist the names seen so far
                    for job in batch.list_namespaced_job(self.namespace).items:
                        self.first_seen.setdefault(job.metadata.name, time.time())
                        self.created.setdefault(job.metadata.name,
                                                job.metadata.creation_timestamp)
                    version = batch.list_namespaced_job(
                        self.namespace, limit=1).metadata.resource_version
                else:
                    time.sleep(1)
            except Exception as e:  # a broken stream: watch again from the last version
                log(f"job watch: {e!r}; watching again")
                time.sleep(1)


def scrape(port: int) -> dict[str, float]:
    values: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
    return values


def create_all(namespace: str, jobs: int, minute: int, threads: int,
               schedule: Callable[[int], dict[str, Any]] | None = None,
               extra: dict[str, Any] | None = None) -> None:
    """Create ExportJobs 0..jobs-1; `schedule(index)` gives each its own schedule."""
    api = client.CustomObjectsApi()

    def create(index: int) -> None:
        body = exportjob(namespace, index, minute, schedule(index) if schedule else None, extra)
        for attempt in range(10):
            try:
                api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
                return
            except ApiException as e:
                if e.status == 409:
                    return
                if e.status not in (429, 500, 503, 504) or attempt == 9:
                    raise
                time.sleep(0.5 * (attempt + 1))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, range(jobs)))


def cleanup(namespace: str, threads: int) -> None:
    """Drop the finalizers (the operator is stopped) and delete the namespace."""
    core = client.CoreV1Api()
    api = client.CustomObjectsApi()
    try:
        core.delete_namespace(namespace)
    except ApiException as e:
        if e.status != 404:
            raise
    names: list[str] = []
    token = None
    while True:
        try:
            page = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                     limit=2000, _continue=token)
        except ApiException as e:
            if e.status == 404:
                break
            raise
        names += [o["metadata"]["name"] for o in page["items"]
                  if FINALIZER in (o["metadata"].get("finalizers") or [])]
        token = page["metadata"].get("continue")
        if not token:
            break

    def unfinalize(name: str) -> None:
        try:
            api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                               {"metadata": {"finalizers": None}})
        except ApiException as e:
            if e.status != 404:
                raise

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(unfinalize, names))
    # The namespace controller backs off when a DELETE was refused (e.g. while a delete
    # guard webhook was registered and unreachable): delete them once more now.
    try:
        api.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    except ApiException as e:
        if e.status != 404:
            raise
    log(f"{namespace}: finalizers dropped from {len(names)} ExportJobs, namespace deleting")


def launch_operator(namespace: str, port: int, logfile: Path,
                    workers: int) -> tuple[subprocess.Popen[bytes], Sampler]:
    """`ferry-operator -n <namespace>` logging to `logfile`, and a Sampler on it."""
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KUBECONFIG": kubeconfig(),
           "FERRY_WORKER_IMAGE": "ferry-worker:bench",
           "FERRY_WORKER_SERVICE_ACCOUNT": "default"}
    if workers:
        env["FERRY_RECONCILE_WORKERS"] = str(workers)
    operator = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "ferry-operator"), "-n", namespace,
         "--metrics-port", str(port)],
        stdout=logfile.open("w"), stderr=subprocess.STDOUT, env=env)
    sampler = Sampler(operator.pid)
    sampler.start()
    return operator, sampler


def stop_run(operator: subprocess.Popen[bytes], sampler: Sampler, namespace: str,
             args: argparse.Namespace) -> None:
    """Stop the operator (SIGTERM, then SIGKILL after 30 s) and the sampler, and clean
    up the namespace unless --keep."""
    operator.terminate()
    try:
        operator.wait(30)
    except subprocess.TimeoutExpired:
        operator.kill()
        operator.wait()
    sampler.stopped.set()
    if not args.keep:
        try:
            cleanup(namespace, args.threads)
        except ApiException as e:  # the figures are taken: keep them, say what is left
            log(f"cleanup of {namespace} failed ({e.status} {e.reason}); finish it with "
                f"--cleanup {namespace}")


def all_scheduled(namespace: str, slot: dt.datetime) -> tuple[int, int]:
    """(ExportJobs with nextRunAt == slot, all ExportJobs)."""
    api = client.CustomObjectsApi()
    expected = slot.strftime("%Y-%m-%dT%H:%M:%SZ")
    ok = total = 0
    token = None
    while True:
        page = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                 limit=2000, _continue=token)
        for obj in page["items"]:
            total += 1
            ok += (obj.get("status") or {}).get("nextRunAt") == expected
        token = page["metadata"].get("continue")
        if not token:
            return ok, total


def run_size(jobs: int, args: argparse.Namespace, port: int) -> dict[str, Any]:
    namespace = f"bench-operator-{jobs}-{os.getpid()}"
    core = client.CoreV1Api()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=namespace, labels={"ferry.dev/bench": "operator"})))
    lead = args.lead if args.lead else 60 + jobs * 0.08
    slot = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead + 59)).replace(
        second=0, microsecond=0)
    log(f"{namespace}: creating {jobs} ExportJobs, all due at {slot:%H:%M:%S} UTC")
    started = time.time()
    create_all(namespace, jobs, slot.minute, args.threads)
    log(f"created {jobs} in {time.time() - started:.1f}s")

    logfile = LOGS / f"operator-{jobs}.log"
    before_429 = apiserver_429s()
    operator, sampler = launch_operator(namespace, port, logfile, args.workers)
    result: dict[str, Any] = {"jobs": jobs, "reconcile_workers": args.workers or None}
    try:
        cold = time.time()
        quiet = 0
        while True:
            time.sleep(1)
            if operator.poll() is not None:
                raise SystemExit(f"operator exited ({operator.returncode}): see {logfile}")
            try:
                metrics = scrape(port)
            except OSError:
                continue
            if metrics.get("ferry_scheduled_wakeups", 0) >= jobs and \
                    metrics.get("ferry_workqueue_depth", 1) == 0:
                quiet += 1
            else:
                quiet = 0
            if quiet >= 3:
                break
            if time.time() > slot.timestamp() - 5:
                raise SystemExit("cold start did not finish before the slot: raise --lead")
        cold_seconds = time.time() - cold
        scheduled, total = all_scheduled(namespace, slot)
        log(f"cold start: {jobs} reconciled in {cold_seconds:.1f}s "
            f"({scheduled}/{total} with nextRunAt {slot:%H:%M}Z)")
        result["cold_start_s"] = round(cold_seconds, 1)
        cold_429 = apiserver_429s()

        idle_from = time.time()
        idle_for = min(args.idle, slot.timestamp() - idle_from - 5)
        time.sleep(max(idle_for, 5))
        idle = sampler.window(idle_from + 2, time.time())
        result["idle_rss_mb"] = round(idle[-1][1], 1)
        result["idle_cpu_percent"] = round(statistics.mean(s[2] for s in idle), 1)
        log(f"idle: RSS {result['idle_rss_mb']} MB, CPU {result['idle_cpu_percent']}% "
            f"over {len(idle)}s")

        jobwatch = JobWatch(namespace)
        jobwatch.start()
        jobwatch.ready.wait(30)
        wait = slot.timestamp() - time.time()
        log(f"waiting {wait:.0f}s for the slot")
        time.sleep(max(0.0, wait))
        deadline = slot.timestamp() + args.timeout
        while len(jobwatch.first_seen) < jobs and time.time() < deadline:
            time.sleep(0.5)
            if operator.poll() is not None:
                raise SystemExit(f"operator exited ({operator.returncode}): see {logfile}")
        last = max(jobwatch.first_seen.values(), default=slot.timestamp())
        time.sleep(3)
        jobwatch.stopped.set()
        peak = sampler.window(slot.timestamp() - 1, time.time())
        seen = len(jobwatch.first_seen)
        latencies = [t - slot.timestamp() for t in jobwatch.first_seen.values()]
        created = [(c - slot).total_seconds() for c in jobwatch.created.values()]
        result.update(
            peak_rss_mb=round(max(s[1] for s in peak), 1),
            peak_cpu_percent=round(max(s[2] for s in peak), 1),
            burst_mean_cpu_percent=round(statistics.mean(s[2] for s in peak), 1),
            jobs_created=seen,
            due_to_job_p50_s=round(percentile(latencies, 50), 2) if latencies else None,
            due_to_job_p99_s=round(percentile(latencies, 99), 2) if latencies else None,
            due_to_job_max_s=round(max(latencies), 2) if latencies else None,
            creation_timestamp_p50_s=percentile(created, 50) if created else None,
            creation_timestamp_p99_s=percentile(created, 99) if created else None,
            last_job_s=round(last - slot.timestamp(), 1),
        )
        if seen < jobs:
            log(f"only {seen}/{jobs} Jobs within {args.timeout}s of the slot")
        log(f"slot: {seen} Jobs, p50 {result['due_to_job_p50_s']}s, "
            f"p99 {result['due_to_job_p99_s']}s, peak RSS {result['peak_rss_mb']} MB, "
            f"peak CPU {result['peak_cpu_percent']}%")
        try:
            metrics = scrape(port)
        except OSError:
            metrics = {}
        result["reconcile_errors"] = {
            k.split('"')[1]: int(v) for k, v in metrics.items()
            if k.startswith("ferry_reconcile_errors_total{")}
    finally:
        stop_run(operator, sampler, namespace, args)
    text = logfile.read_text(errors="replace")
    # The message only: "...,429" in a log line's timestamp is a millisecond, not a status.
    messages = [line.split(" ", 3)[-1] for line in text.splitlines()]
    lines = [m for m in messages if re.search(r"\b429\b|TooManyRequests", m)]
    reinit = [line for line in lines if "storage is (re)initializing" in line]
    result["http_429"] = max(len(lines) - len(reinit),
                             result.get("reconcile_errors", {}).get("api-429", 0))
    # The API server answers 429 "storage is (re)initializing" to every watch and request
    # of a custom resource while its CRD is being updated (someone applied the CRDs):
    # not throttling, counted apart.
    result["http_429_crd_reinit"] = len(reinit)
    result["apiserver_429_cold_start"] = cold_429 - before_429
    result["apiserver_429_total"] = apiserver_429s() - before_429
    return result


def job_manifests(namespace: str, jobs: int, slot: dt.datetime,
                  owner_uid: str) -> list[dict[str, Any]]:
    """The Jobs the operator renders for these runs (its own code, run number 1)."""
    manifests = []
    for index in range(jobs):
        body = exportjob(namespace, index, slot.minute)
        spec = ExportJobSpec.model_validate(body["spec"])
        window = resolve_window(spec.timeframe, slot, None)
        start, end = (window.start, window.end) if window else (None, None)
        slices = plan_slices(spec, batch_count(spec, start, end), start, end)
        owner = Owner(name=body["metadata"]["name"], namespace=namespace, uid=owner_uid)
        manifests.append(build_job(owner, spec, 1, f"{owner.name}.1", slices,
                                   WorkerDefaults(image="ferry-worker:bench",
                                                  service_account="default")))
    return manifests


def run_floor(jobs: int, args: argparse.Namespace) -> dict[str, Any]:
    """N Jobs created straight away by `--workers` (default 64) concurrent clients."""
    namespace = f"bench-operator-floor-{jobs}-{os.getpid()}"
    core = client.CoreV1Api()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=namespace, labels={"ferry.dev/bench": "operator"})))
    api = client.CustomObjectsApi()
    owner = api.create_namespaced_custom_object(  # the ownerReference must resolve
        GROUP, VERSION, namespace, PLURAL, exportjob(namespace, 99999, 0))
    slot = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    manifests = job_manifests(namespace, jobs, slot, owner["metadata"]["uid"])
    batch = client.BatchV1Api()
    jobwatch = JobWatch(namespace)
    jobwatch.start()
    jobwatch.ready.wait(30)
    clients = args.workers or 64
    log(f"{namespace}: creating {jobs} Jobs with {clients} concurrent clients")
    started = time.time()
    result: dict[str, Any] = {"jobs": jobs, "clients": clients}
    try:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda m: batch.create_namespaced_job(  # raw: no V1Job models
                namespace, m, _preload_content=False), manifests))
        deadline = time.time() + args.timeout
        while len(jobwatch.first_seen) < jobs and time.time() < deadline:
            time.sleep(0.5)
        jobwatch.stopped.set()
        latencies = [t - started for t in jobwatch.first_seen.values()]
        result.update(
            jobs_created=len(latencies),
            start_to_job_p50_s=round(percentile(latencies, 50), 2),
            start_to_job_p99_s=round(percentile(latencies, 99), 2),
            jobs_per_second=round(len(latencies) / max(latencies), 1),
        )
        log(f"floor: {len(latencies)} Jobs, p50 {result['start_to_job_p50_s']}s, "
            f"p99 {result['start_to_job_p99_s']}s ({result['jobs_per_second']} Jobs/s)")
    finally:
        if not args.keep:
            cleanup(namespace, args.threads)
    return result


def status_sizes(namespace: str) -> tuple[int, int, int]:
    """(largest status in bytes of JSON, longest history, runs started over all jobs)."""
    api = client.CustomObjectsApi()
    items = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    statuses = [o.get("status") or {} for o in items]
    return (max((len(json.dumps(s)) for s in statuses), default=0),
            max((len(s.get("history") or []) for s in statuses), default=0),
            sum(s.get("runCounter") or 0 for s in statuses))


def stop_active_runs(namespace: str) -> int:
    """Stop every run in progress whose Job exists (once per run: the run id is the
    request's value, so a second patch for the same run is the same request)."""
    api = client.CustomObjectsApi()
    stopped = 0
    for obj in api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        run = (obj.get("status") or {}).get("currentRun") or {}
        annotations = obj["metadata"].get("annotations") or {}
        if run.get("phase") == "InProgress" and run.get("jobName") and \
                annotations.get(STOP) != run["id"]:
            api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, obj["metadata"]["name"],
                {"metadata": {"annotations": {STOP: run["id"]}}})
            stopped += 1
    return stopped


def operator_rss_metric(port: int) -> float | None:
    """The operator's own process_resident_memory_bytes (prometheus_client), in MB: a
    second witness for the RSS the benchmark reads from outside."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    match = re.search(r"^process_resident_memory_bytes ([0-9.e+]+)$", text, re.MULTILINE)
    return round(float(match.group(1)) / 2**20, 1) if match else None


def soak_schedule(index: int, every: int) -> dict[str, Any]:
    """Every `every` minutes, job i at the minutes congruent to i: the runs are spread evenly
    over the minutes instead of all N at once."""
    if every == 1:
        return {"cron": {"expression": "* * * * *"}}
    return {"cron": {"expression": f"{index % every}-59/{every} * * * *"}}


def run_soak(jobs: int, args: argparse.Namespace, port: int) -> dict[str, Any]:
    every = args.soak_every
    namespace = f"bench-operator-soak-{jobs}-{os.getpid()}"
    core = client.CoreV1Api()
    batch = client.BatchV1Api()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=namespace, labels={"ferry.dev/bench": "operator"})))
    create_all(namespace, jobs, 0, args.threads, lambda index: soak_schedule(index, every),
               {"historyLimit": SOAK_HISTORY_LIMIT})
    logfile = LOGS / f"operator-soak-{jobs}.log"
    operator, sampler = launch_operator(namespace, port, logfile, args.workers)
    minutes: list[dict[str, Any]] = []
    log(f"{namespace}: {jobs} ExportJobs, each every {every} minute(s), staggered, "
        f"for {args.soak_minutes} minutes")
    try:
        started = time.time()
        next_sample = started + 60
        stops = 0
        while time.time() < started + args.soak_minutes * 60:
            time.sleep(3)
            if operator.poll() is not None:
                raise SystemExit(f"operator exited ({operator.returncode}): see {logfile}")
            stops += stop_active_runs(namespace)
            if time.time() >= next_sample:
                next_sample += 60
                largest, history, runs = status_sizes(namespace)
                events = core.list_namespaced_event(
                    namespace, field_selector="involvedObject.kind=ExportJob").items
                sample = {
                    "minute": len(minutes) + 1,
                    # Read now, not the sampler's last value: a sampler thread that
                    # stopped would repeat one figure for the rest of the soak.
                    "rss_mb": round(psutil.Process(operator.pid).memory_info().rss / 2**20, 1),
                    "rss_mb_metrics": operator_rss_metric(port),
                    "largest_status_bytes": largest, "longest_history": history,
                    "runs_started": runs, "stop_requests": stops,
                    "events": len(events),
                    "events_count_total": sum(e.count or 1 for e in events),
                    "jobs": len(batch.list_namespaced_job(namespace).items),
                    "pods": len(core.list_namespaced_pod(namespace).items),
                }
                minutes.append(sample)
                log(f"soak minute {sample['minute']}: {sample}")
    finally:
        stop_run(operator, sampler, namespace, args)
    half = minutes[len(minutes) // 2:]
    return {
        "jobs": jobs, "minutes": args.soak_minutes,
        "schedule": f"cron, each job every {every} min, job i at minute i mod {every}",
        "history_limit": SOAK_HISTORY_LIMIT,
        "samples": minutes,
        "rss_mb_first": minutes[0]["rss_mb"] if minutes else None,
        "rss_mb_last": minutes[-1]["rss_mb"] if minutes else None,
        "rss_mb_max_second_half": max((m["rss_mb"] for m in half), default=None),
        "rss_mb_min_second_half": min((m["rss_mb"] for m in half), default=None),
    }


def write_results(key: str, value: Any) -> None:
    """Replace one key of bench/results/operator.json, keeping the others."""
    try:
        document = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        document = {}
    document[key] = value
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", default="1000,10000",
                        help="comma-separated sizes (default 1000,10000; e.g. 50 for a smoke run)")
    parser.add_argument("--threads", type=int, default=16, help="client threads for create/cleanup")
    parser.add_argument("--lead", type=float, default=0,
                        help="seconds from start to the slot (default 60 + 0.08 s per job)")
    parser.add_argument("--idle", type=float, default=20, help="idle sampling window, seconds")
    parser.add_argument("--timeout", type=float, default=240,
                        help="give up on Jobs this many seconds after the slot")
    parser.add_argument("--workers", type=int, default=0,
                        help="FERRY_RECONCILE_WORKERS for the operator (default: its default)")
    parser.add_argument("--metrics-port", type=int, default=18321)
    parser.add_argument("--keep", action="store_true", help="keep the namespace afterwards")
    parser.add_argument("--cleanup", metavar="NAMESPACE",
                        help="only clean up a namespace a stopped run left behind")
    parser.add_argument("--no-write", action="store_true", help="do not write operator.json")
    parser.add_argument("--floor", action="store_true",
                        help="create the Jobs directly, no operator (the cluster's own limit)")
    parser.add_argument("--soak-minutes", type=float, default=0, metavar="M",
                        help="soak: --jobs N (one size) cycling for M minutes")
    parser.add_argument("--soak-every", type=int, default=1, metavar="K",
                        help="soak: each job runs every K minutes, job i at minutes = i mod K "
                             "(default 1: every job every minute)")
    args = parser.parse_args()
    if "KUBECONFIG" not in os.environ:  # the local cluster from hack/: start it if down
        subprocess.run([sys.executable, str(ROOT / "hack" / "cluster.py"), "up"], check=True)
    config.load_kube_config(kubeconfig())
    try:
        client.ApiextensionsV1Api().read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    except ApiException as e:
        if e.status != 404:
            raise
        subprocess.run([str(KUBECTL), f"--kubeconfig={kubeconfig()}", "apply", "--server-side",
                        "-f", str(ROOT / "crds")], check=True)
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = max(args.threads * 2, args.workers or 64, 8)
    client.Configuration.set_default(cfg)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if args.cleanup:
        cleanup(args.cleanup, args.threads)
        return 0

    sizes = [int(j) for j in args.jobs.split(",")]
    if args.soak_minutes:
        soak = run_soak(sizes[0], args, args.metrics_port)
        print(json.dumps({k: v for k, v in soak.items() if k != "samples"}, indent=2))
        if not args.no_write:
            write_results("soak", soak)
        return 0
    if args.floor:
        floors = [run_floor(jobs, args) for jobs in sizes]
        if not args.no_write:
            write_results("floor", floors)
        return 0
    results = []
    for jobs in sizes:
        results.append(run_size(jobs, args, args.metrics_port))
        if not args.no_write:
            write_results("results", results)

    columns = ["jobs", "idle_rss_mb", "peak_rss_mb", "idle_cpu_percent", "peak_cpu_percent",
               "due_to_job_p50_s", "due_to_job_p99_s", "http_429", "http_429_crd_reinit",
               "cold_start_s"]
    print()
    print(" | ".join(columns))
    print(" | ".join("---" for _ in columns))
    for r in results:
        print(" | ".join(str(r.get(c)) for c in columns))
    misses = []
    for r in results:
        rss, p99 = TARGETS.get(r["jobs"], (None, None))
        if rss is not None and r["peak_rss_mb"] >= rss:
            misses.append(f"{r['jobs']}: RSS {r['peak_rss_mb']} MB >= {rss}")
        if p99 is not None and (r["due_to_job_p99_s"] is None or r["due_to_job_p99_s"] >= p99
                                or r["jobs_created"] < r["jobs"]):
            misses.append(f"{r['jobs']}: p99 {r['due_to_job_p99_s']} s >= {p99}")
        if r["http_429"]:
            misses.append(f"{r['jobs']}: {r['http_429']} HTTP 429s")
    for miss in misses:
        print(f"target missed: {miss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
