"""kopf registrations: every watch event becomes "reconcile this ExportJob (ImportJob,
JobGroup)".

The handlers only enqueue; the work queue's workers do the reconciling. kopf keeps
no state of its own for event handlers (no progress or last-handled annotations),
so the objects users keep in Git are never written to by kopf.

Pods are not watched: a run in progress is polled for its progress anyway (it lives in
pod annotations, which no Job event reports; every 5 s, less often with more than 100
runs in progress, see `ferry.reconcile.progress.progress_poll_interval`), and its Job's
status moves when its pods start, succeed or fail. Watching them cost two or three
events per run that kopf parses and the operator reconciled on, which at the top of the
hour was a sixth of the operator's CPU (bench/operator_scale.py). What must not wait for
a poll comes as an event and wakes the ExportJob or ImportJob at once: the Job's changes (a
batch or the whole run ended) and the request annotations (stop, run now, retry).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from typing import Any

import kopf

from ferry.constants import (
    EXPORTJOB_KIND,
    EXPORTJOB_PLURAL,
    GROUP,
    IMPORTJOB_KIND,
    IMPORTJOB_PLURAL,
    JOBGROUP_PLURAL,
    LABEL_IMPORTJOB,
    LABEL_JOB,
    VERSION,
)
from ferry.controller import admission, metrics
from ferry.controller.events import EventPoster
from ferry.controller.importjobs import import_jobs
from ferry.controller.jobgroups import JobGroupLoop, JobGroups
from ferry.controller.kube import Kube, load_config
from ferry.controller.loop import Loop, utc_now
from ferry.controller.runjobs import RunJobLoop, RunJobs, export_jobs
from ferry.controller.workqueue import WorkQueue
from ferry.reconcile.jobspec import WorkerDefaults

WORKERS = int(os.environ.get("FERRY_RECONCILE_WORKERS", "64"))
"""Reconciles in flight at once. A reconcile is a few sequential API round trips, so
workers mostly wait: at the top of the hour on a busy API server (hundreds of ms a
request) 16 of them left runs waiting while the operator used a third of a core
(bench/operator_scale.py); each worker has at most one request in flight, which also caps
the operator's concurrent requests to the API server (plus the Event posters)."""
IMPORT_WORKERS = 16
"""Reconciles of ImportJobs in flight at once: imports are fewer than exports (a table is
loaded from many exports' files), and their own queue keeps them from waiting behind
the top of the hour's exports."""
GROUP_WORKERS = 2
EVENT_DRAIN_SECONDS = 5.0
"""On shutdown, Events still queued behind a slot get this long to be posted."""


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's "last handled state" for change handlers, which this operator has none of.

    kopf builds the diff base (a deep copy of the object) on every watch event anyway;
    with event handlers only, nothing ever reads it. Building nothing saved an eighth of
    the operator's CPU at the top of the hour (bench/operator_scale.py).
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    await load_config()
    kube = Kube()
    queue = WorkQueue()
    events = EventPoster(kube=kube, calm=queue.calm, clock=utc_now)
    worker = WorkerDefaults(
        image=os.environ.get("FERRY_WORKER_IMAGE", "ferry-worker:0.1.0"),
        service_account=os.environ.get("FERRY_WORKER_SERVICE_ACCOUNT", "ferry-worker"),
    )
    stall_after = memo.get("stall_after", dt.timedelta(minutes=15))
    exportjobs = export_jobs(kube, worker, stall_after)
    memo.kube = kube
    memo.events = events
    memo.exportjobs = exportjobs
    memo.exportjob_loop = Loop(kube=kube, kind=exportjobs, events=events, queue=queue)
    importjobs = import_jobs(kube, worker, memo.exportjob_loop, exportjobs.groups, stall_after)
    memo.importjobs = importjobs
    memo.importjob_loop = Loop(kube=kube, kind=importjobs, events=events,
                               queue=WorkQueue())
    memo.jobgroups = JobGroups(
        loops={EXPORTJOB_KIND: memo.exportjob_loop, IMPORTJOB_KIND: memo.importjob_loop},
        registry=exportjobs.groups)
    memo.jobgroup_loop = Loop(kube=kube, events=events, kind=memo.jobgroups)
    metrics.bind([queue, memo.importjob_loop.queue],
                 [exportjobs.registry.queued, importjobs.registry.queued])
    memo.tasks = [asyncio.create_task(memo.exportjob_loop.run_worker()) for _ in range(WORKERS)]
    memo.tasks += [asyncio.create_task(memo.importjob_loop.run_worker())
                   for _ in range(IMPORT_WORKERS)]
    memo.tasks += [asyncio.create_task(memo.jobgroup_loop.run_worker())
                   for _ in range(GROUP_WORKERS)]


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks", []):
        task.cancel()
    await asyncio.gather(*memo.get("tasks", []), return_exceptions=True)
    if "events" in memo:
        await memo.events.drain(EVENT_DRAIN_SECONDS)
        await memo.kube.close()


def _job_changed(event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str,
                 loop: RunJobLoop, memo: kopf.Memo) -> None:
    """Reconcile the job (unless the event is the operator's own write), and wake the
    groups it belongs to when something they follow changed."""
    jobs: RunJobs = loop.kind  # type: ignore[assignment]
    deleted = event["type"] == "DELETED"
    obj = None if deleted else dict(body)
    if deleted:
        loop.forget(namespace, name)
    else:
        assert obj is not None
        jobs.registry.observe(namespace, name, obj)
        if loop.observed(namespace, name, obj):
            loop.queue.add((namespace, name))
    member = jobs.member_prefix + name
    if jobs.groups.member_changed(namespace, member, obj):
        for group in jobs.groups.groups_of(namespace, member):
            memo.jobgroup_loop.queue.add(group)


@kopf.on.event(GROUP, VERSION, EXPORTJOB_PLURAL)  # type: ignore[arg-type]
async def exportjob_changed(
    event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    _job_changed(event, body, namespace, name, memo.exportjob_loop, memo)


@kopf.on.event(GROUP, VERSION, IMPORTJOB_PLURAL)  # type: ignore[arg-type]
async def importjob_changed(
    event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    _job_changed(event, body, namespace, name, memo.importjob_loop, memo)


@kopf.on.event(GROUP, VERSION, JOBGROUP_PLURAL)  # type: ignore[arg-type]
async def jobgroup_changed(
    event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """Reconcile the group, and wake the members it asks something of."""
    loop: JobGroupLoop = memo.jobgroup_loop
    exportjobs: RunJobs = memo.exportjobs
    if event["type"] == "DELETED":
        loop.forget(namespace, name)
        return
    obj = dict(body)
    for member in exportjobs.groups.observe(namespace, name, obj):
        memo.jobgroups.wake(namespace, member)
    if loop.observed(namespace, name, obj):
        loop.queue.add((namespace, name))


def _child_changed(event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str,
                   owner: str, loop: RunJobLoop) -> None:
    jobs: RunJobs = loop.kind  # type: ignore[assignment]
    if event["type"] == "DELETED":
        jobs.jobs.drop(namespace, owner, name)
    else:
        jobs.jobs.observe(namespace, owner, dict(body))
    loop.queue.add((namespace, owner))


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_JOB: kopf.PRESENT})  # type: ignore[arg-type]
async def child_changed(event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels,
                        namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    _child_changed(event, body, namespace, name, labels[LABEL_JOB], memo.exportjob_loop)


@kopf.on.event("batch", "v1", "jobs",  # type: ignore[arg-type]
               labels={LABEL_IMPORTJOB: kopf.PRESENT})
async def import_child_changed(event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels,
                               namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    _child_changed(event, body, namespace, name, labels[LABEL_IMPORTJOB], memo.importjob_loop)


logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
admission.register()
