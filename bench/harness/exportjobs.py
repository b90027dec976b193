"""The benchmark's ExportJobs, and the Jobs the operator renders for their runs.

Every ExportJob reads its own table on its own concurrency key (nothing queues), and its
worker pods are pinned by nodeSelector to a label no node has: every pod stays Pending,
the node agent never runs a worker, and what is measured ends at "Job created".
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from ferry.api.exportjob import ExportJobSpec
from ferry.api.status import run_id
from ferry.constants import (
    ANNOTATION_STOP_REQUESTED_AT,
    API_VERSION,
    EXPORTJOB_KIND,
    EXPORTJOB_PLURAL,
    GROUP,
    VERSION,
)
from ferry.reconcile.batches import batch_count, plan_slices
from ferry.reconcile.jobspec import Owner, WorkerDefaults, build_job
from ferry.reconcile.windows import resolve_window

NO_SUCH_NODE = {f"{GROUP}/bench-operator": "no-such-node"}
WORKER = WorkerDefaults(image="ferry-worker:bench", service_account="default")
"""What the benchmark's operator is told to put in its Jobs (it never runs)."""
RETRIED = (429, 500, 503, 504)
"""Statuses a create is retried on: a busy API server's, not the benchmark's mistakes."""

Schedule = Callable[[int], dict[str, Any]]
"""The schedule of ExportJob number i."""


def hourly(minute: int) -> Schedule:
    """All ExportJobs due at `minute` of every hour: N runs in the same minute."""
    return lambda _index: {"hourly": {"every": 1, "minute": minute}}


def name(index: int) -> str:
    return f"ej-{index:05d}"


def manifest(namespace: str, index: int, schedule: dict[str, Any],
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """ExportJob number `index`; `extra` adds spec fields (e.g. historyLimit)."""
    return {
        "apiVersion": API_VERSION,
        "kind": EXPORTJOB_KIND,
        "metadata": {"name": name(index), "namespace": namespace},
        "spec": {
            "title": f"bench {index}",
            "source": {
                "type": "postgres",
                "connectionSecretRef": {"name": "bench-db", "key": "uri"},
                "table": f"public.t{index}",
                "timestampColumn": "ts",
            },
            "timeframe": {"relative": {"last": "1h"}},
            "schedule": schedule,
            "output": {"s3": {"bucket": "bench", "prefix": f"j{index}"}, "format": "jsonl"},
            "concurrency": {"key": f"bench-{index}"},
            "worker": {"nodeSelector": NO_SUCH_NODE},
            **(extra or {}),
        },
    }


def create(body: dict[str, Any]) -> dict[str, Any] | None:
    """Create one ExportJob, retrying a busy API server; None if it already exists."""
    api = client.CustomObjectsApi()
    namespace = body["metadata"]["namespace"]
    for attempt in range(10):
        try:
            created: dict[str, Any] = api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, EXPORTJOB_PLURAL, body)
            return created
        except ApiException as e:
            if e.status == 409:
                return None
            if e.status not in RETRIED or attempt == 9:
                raise
            time.sleep(0.5 * (attempt + 1))
    return None


def create_all(namespace: str, count: int, schedule: Schedule, threads: int,
               extra: dict[str, Any] | None = None) -> None:
    """Create ExportJobs 0..count-1 with `threads` clients."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: create(manifest(namespace, i, schedule(i), extra)),
                      range(count)))


def list_all(namespace: str) -> Iterator[dict[str, Any]]:
    """Every ExportJob of the namespace, in pages of 2,000; none once it is gone."""
    api = client.CustomObjectsApi()
    token = None
    while True:
        try:
            page = api.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                     EXPORTJOB_PLURAL, limit=2000,
                                                     _continue=token)
        except ApiException as e:
            if e.status == 404:
                return
            raise
        yield from page["items"]
        token = page["metadata"].get("continue")
        if not token:
            return


def unfinalize(namespace: str, exportjob: str) -> None:
    """Drop the ExportJob's finalizers (gone already is fine)."""
    try:
        client.CustomObjectsApi().patch_namespaced_custom_object(
            GROUP, VERSION, namespace, EXPORTJOB_PLURAL, exportjob,
            {"metadata": {"finalizers": None}})
    except ApiException as e:
        if e.status != 404:
            raise


def delete_all(namespace: str) -> None:
    """Delete every ExportJob of the namespace (gone already is fine)."""
    try:
        client.CustomObjectsApi().delete_collection_namespaced_custom_object(
            GROUP, VERSION, namespace, EXPORTJOB_PLURAL)
    except ApiException as e:
        if e.status != 404:
            raise


def scheduled(namespace: str, slot: dt.datetime) -> tuple[int, int]:
    """(ExportJobs whose status says nextRunAt == slot, all ExportJobs)."""
    expected = slot.strftime("%Y-%m-%dT%H:%M:%SZ")
    ok = total = 0
    for obj in list_all(namespace):
        total += 1
        ok += (obj.get("status") or {}).get("nextRunAt") == expected
    return ok, total


def status_sizes(namespace: str) -> tuple[int, int, int]:
    """(largest status in bytes of JSON, longest history, runs started over all jobs)."""
    statuses = [o.get("status") or {} for o in list_all(namespace)]
    return (max((len(json.dumps(s)) for s in statuses), default=0),
            max((len(s.get("history") or []) for s in statuses), default=0),
            sum(s.get("runCounter") or 0 for s in statuses))


def stop_active_runs(namespace: str) -> int:
    """Ask every run in progress whose Job exists to stop, once per run (the run id is the
    request's value, so a second patch for the same run would be the same request)."""
    api = client.CustomObjectsApi()
    stopped = 0
    for obj in list_all(namespace):
        run = (obj.get("status") or {}).get("currentRun") or {}
        annotations = obj["metadata"].get("annotations") or {}
        if run.get("phase") == "InProgress" and run.get("jobName") and \
                annotations.get(ANNOTATION_STOP_REQUESTED_AT) != run["id"]:
            api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, EXPORTJOB_PLURAL, obj["metadata"]["name"],
                {"metadata": {"annotations": {ANNOTATION_STOP_REQUESTED_AT: run["id"]}}})
            stopped += 1
    return stopped


def job_manifests(namespace: str, count: int, slot: dt.datetime,
                  owner_uid: str) -> list[dict[str, Any]]:
    """The Jobs the operator renders for the first runs of ExportJobs 0..count-1 due at
    `slot` (its own code), all owned by the ExportJob `owner_uid`."""
    manifests = []
    for index in range(count):
        body = manifest(namespace, index, hourly(slot.minute)(index))
        spec = ExportJobSpec.model_validate(body["spec"])
        window = resolve_window(spec.timeframe, slot, None)
        start, end = (window.start, window.end) if window else (None, None)
        slices = plan_slices(spec, batch_count(spec, start, end), start, end)
        owner = Owner(name=body["metadata"]["name"], namespace=namespace, uid=owner_uid)
        manifests.append(build_job(owner, spec, 1, run_id(owner.name, 1), slices, WORKER))
    return manifests
