"""kopf registrations: every watch event becomes "reconcile this ExportJob (or JobGroup)".

The handlers only enqueue; the work queue's workers do the reconciling. kopf keeps
no state of its own for event handlers (no progress or last-handled annotations),
so the objects users keep in Git are never written to by kopf.

Pods are not watched: a run in progress is polled for its progress anyway (it lives in
pod annotations, which no Job event reports; every 5 s, less often with more than 100
runs in progress, see `ferry.reconcile.progress.progress_poll_interval`), and its Job's
status moves when its pods start, succeed or fail. Watching them cost two or three
events per run that kopf parses and the operator reconciled on, which at the top of the
hour was a sixth of the operator's CPU (bench/operator_scale.py). What must not wait for
a poll comes as an event and wakes the ExportJob at once: the Job's changes (a batch or the
whole run ended) and the request annotations (stop, run now, retry).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from typing import Any

import kopf
from kubernetes_asyncio import config

from ferry.constants import EXPORTJOB_PLURAL, GROUP, JOBGROUP_PLURAL, LABEL_JOB, VERSION
from ferry.controller import admission, metrics
from ferry.controller.groupreconciler import GroupController
from ferry.controller.health import BoundedApiClient
from ferry.controller.reconciler import Controller
from ferry.controller.registry import Registry
from ferry.controller.workqueue import WorkQueue
from ferry.reconcile.jobspec import WorkerDefaults

WORKERS = int(os.environ.get("FERRY_RECONCILE_WORKERS", "64"))
"""Reconciles in flight at once. A reconcile is a few sequential API round trips, so
workers mostly wait: at the top of the hour on a busy API server (hundreds of ms a
request) 16 of them left runs waiting while the operator used a third of a core
(bench/operator_scale.py); each worker has at most one request in flight, which also caps
the operator's concurrent requests to the API server (plus the Event posters)."""
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
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config()
    controller = Controller(
        api=BoundedApiClient(),  # requests with a deadline (health.py)
        queue=WorkQueue(),
        registry=Registry(),
        worker=WorkerDefaults(
            image=os.environ.get("FERRY_WORKER_IMAGE", "ferry-worker:0.1.0"),
            service_account=os.environ.get("FERRY_WORKER_SERVICE_ACCOUNT", "ferry-worker"),
        ),
        stall_after=memo.get("stall_after", dt.timedelta(minutes=15)),
    )
    memo.controller = controller
    memo.groups = GroupController(jobs=controller, registry=controller.groups)
    if memo.get("metrics_port"):
        metrics.serve(memo.metrics_port, controller.queue, controller.registry.queued)
    memo.tasks = [asyncio.create_task(controller.run_worker()) for _ in range(WORKERS)]
    memo.tasks += [asyncio.create_task(memo.groups.run_worker()) for _ in range(GROUP_WORKERS)]


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks", []):
        task.cancel()
    await asyncio.gather(*memo.get("tasks", []), return_exceptions=True)
    await memo.controller.drain_events(EVENT_DRAIN_SECONDS)
    await memo.controller.api.close()


@kopf.on.event(GROUP, VERSION, EXPORTJOB_PLURAL)  # type: ignore[arg-type]
async def exportjob_changed(
    event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    controller: Controller = memo.controller
    deleted = event["type"] == "DELETED"
    if controller.groups.member_changed(namespace, name, None if deleted else dict(body)):
        for group in controller.groups.groups_of(namespace, name):
            memo.groups.queue.add(group)
    if deleted:
        controller.forget(namespace, name)
        return
    obj = dict(body)
    controller.bodies.keep(namespace, name, obj)
    controller.registry.observe(namespace, name, obj)
    if not controller.is_echo(namespace, name, obj):
        controller.queue.add((namespace, name))


@kopf.on.event(GROUP, VERSION, JOBGROUP_PLURAL)  # type: ignore[arg-type]
async def jobgroup_changed(
    event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """Reconcile the group, and wake the members it asks something of."""
    groups: GroupController = memo.groups
    if event["type"] == "DELETED":
        groups.registry.forget(namespace, name)
        groups.queue.forget((namespace, name))
        return
    for member in groups.registry.observe(namespace, name, dict(body)):
        groups.jobs.queue.add((namespace, member))
    groups.queue.add((namespace, name))


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_JOB: kopf.PRESENT})  # type: ignore[arg-type]
async def child_changed(event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels,
                        namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    controller: Controller = memo.controller
    owner = labels[LABEL_JOB]
    if event["type"] == "DELETED":
        controller.jobs.drop(namespace, owner, name)
    else:
        controller.jobs.observe(namespace, owner, dict(body))
    controller.queue.add((namespace, owner))


logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
admission.register()
