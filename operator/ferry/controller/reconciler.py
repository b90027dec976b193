"""The I/O around `ferry.reconcile.runs.reconcile`: observe, decide, act.

The ExportJob is read from `registry.BodyCache` (the watch plus the operator's own
writes; a GET only when it holds nothing) and the current run's pods are listed
fresh. Status is replaced with the resourceVersion read, so a version the API server
has moved past makes the write fail (409): the cache entry is dropped and the key is
retried on a fresh GET, rather than silently overwriting anything.

The child Jobs come from the Job watch (`registry.JobIndex`), listed once per ExportJob
after a start and again where the watch may be behind (a run in progress: at least
every `JOB_LIST_MAX_AGE` seconds; a create answered 409): at the top of the hour a LIST
per run was one round trip more and, for the API server, a scan of every Job in the
namespace. A Job the index does not show yet is created again under its deterministic
name, which the API server refuses (409): never a second Job for a run.

The operator's own writes come back as watch events; `is_echo` recognises them (by
the resourceVersion the write returned), so they cost no reconcile: the pass that
wrote has already acted on what it wrote.

A run in progress is polled for its pods' progress, less often the more runs are
(`ferry.reconcile.progress.progress_poll_interval`). The count is kept from the
decisions themselves (`polling`): status is the operator's alone to write, so its
decisions see every run start and end; a set costs nothing per pass, where counting
runs in the Job index or the body cache would be a scan over every ExportJob.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from pydantic import ValidationError

from ferry.api.exportjob import ExportJobSpec
from ferry.api.status import ExportJobStatus, RunPhase
from ferry.constants import (
    EXPORTJOB_PLURAL,
    FINALIZER,
    GROUP,
    LABEL_JOB,
    LABEL_RUN,
    LABEL_SEAL,
    VERSION,
)
from ferry.controller import metrics
from ferry.controller.groupregistry import GroupRegistry
from ferry.controller.registry import BodyCache, JobIndex, Registry
from ferry.controller.workqueue import WorkQueue
from ferry.reconcile.conditions import mark_invalid_spec
from ferry.reconcile.jobspec import Owner, WorkerDefaults
from ferry.reconcile.observe import job_finished, job_observation, parse_time, seal_observation
from ferry.reconcile.progress import JobObservation, SealObservation
from ferry.reconcile.runs import Decision, Event, Observation, concurrency_key, reconcile

log = logging.getLogger("ferry.controller")
MERGE_PATCH = "application/merge-patch+json"
STATUS_WRITE_INTERVAL = 3.0
"""Progress-only status writes are spaced at least this far apart per job."""
JOB_LIST_MAX_AGE = 60.0
"""A run in progress lists its Jobs at least this often: a Job deleted while the Job
watch was broken is noticed within a minute, not never."""
EVENT_POSTERS = 16
"""Events posted at once: a thousand runs starting together must not put a thousand
Event POSTs between the API server and the runs' own writes; Events may lag."""
SLOT_MARGIN = 1.0
"""A wake-up within this many seconds of nextRunAt is the slot's: queued as urgent."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def invalid_spec_message(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"spec.{where}: {first['msg']}"


@dataclass
class Controller:
    api: client.ApiClient
    queue: WorkQueue
    registry: Registry
    worker: WorkerDefaults
    stall_after: dt.timedelta = dt.timedelta(minutes=15)
    groups: GroupRegistry = field(default_factory=GroupRegistry)
    """What JobGroup runs ask of each job (see ferry.reconcile.groups)."""
    clock: Callable[[], dt.datetime] = utc_now
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    last_write: dict[tuple[str, str], float] = field(default_factory=dict)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    """Events being posted: best effort, off the reconcile path (bench/operator_scale.py)."""
    jobs: JobIndex = field(default_factory=JobIndex)
    bodies: BodyCache = field(default_factory=BodyCache)
    events: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(EVENT_POSTERS))
    written: dict[tuple[str, str], str] = field(default_factory=dict)
    """(namespace, name) -> resourceVersion of the operator's last write of the object."""
    polling: set[tuple[str, str]] = field(default_factory=set)
    """ExportJobs whose last decision left a run in progress: the runs polled for
    progress. After a restart it fills as the cold start reconciles every ExportJob."""

    def is_echo(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        """The watch event shows the object exactly as the operator's last write left it."""
        version = (body.get("metadata") or {}).get("resourceVersion")
        if version is not None and self.written.get((namespace, name)) == version:
            del self.written[(namespace, name)]
            return True
        return False

    def _wrote(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        self.written[(meta["namespace"], meta["name"])] = meta["resourceVersion"]
        self.bodies.keep(meta["namespace"], meta["name"], obj)
        return obj

    def forget(self, namespace: str, name: str) -> None:
        """The ExportJob is gone: drop what is known of it."""
        self.registry.forget(namespace, name)
        self.queue.forget((namespace, name))
        self.jobs.forget(namespace, name)
        self.bodies.drop(namespace, name)
        self.written.pop((namespace, name), None)
        self.last_write.pop((namespace, name), None)
        self.polling.discard((namespace, name))

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    async def _json(self, coroutine: Any) -> dict[str, Any]:
        """The body of a raw (`_preload_content=False`) call; errors raise as usual."""
        response = await coroutine
        body = await response.read()
        if response.status >= 400:
            raise ApiException(status=response.status, reason=body.decode(errors="replace"))
        return json.loads(body)  # type: ignore[no-any-return]

    async def run_worker(self) -> None:
        while True:
            key = await self.queue.get()
            namespace, name = cast(tuple[str, str], key)
            try:
                await self.reconcile(namespace, name)
            except ApiException as e:
                if e.status == 409:  # read a version the API server has moved past
                    self.bodies.drop(namespace, name)
                metrics.RECONCILE_ERRORS.labels(f"api-{e.status}").inc()
                level = logging.INFO if e.status == 409 else logging.WARNING
                log.log(level, "reconcile %s/%s: API %s %s; retrying", namespace, name,
                        e.status, e.reason)
                self.queue.add_after(key, 1.0 if e.status == 409 else 5.0)
            except Exception:
                metrics.RECONCILE_ERRORS.labels("exception").inc()
                log.exception("reconcile %s/%s failed; retrying in 10s", namespace, name)
                self.queue.add_after(key, 10.0)
            finally:
                self.queue.done(key)

    async def reconcile(self, namespace: str, name: str) -> None:
        obj = self.bodies.get(namespace, name)
        if obj is None:
            try:
                obj = await self._json(self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, EXPORTJOB_PLURAL, name, _preload_content=False))
            except ApiException as e:
                if e.status == 404:
                    self.forget(namespace, name)
                    return
                raise
            self.bodies.keep(namespace, name, obj)
        meta = obj["metadata"]
        deleting = bool(meta.get("deletionTimestamp"))
        has_finalizer = FINALIZER in (meta.get("finalizers") or [])
        if deleting and not has_finalizer:
            return
        if not deleting and not has_finalizer:
            obj = await self.add_finalizer(obj)
            meta = obj["metadata"]
        now = self.clock()
        try:
            spec = ExportJobSpec.model_validate(obj.get("spec") or {})
        except ValidationError as e:
            self.polling.discard((namespace, name))  # no longer polled (no requeue)
            await self.report_invalid_spec(obj, invalid_spec_message(e), now)
            return
        status = ExportJobStatus.model_validate(obj.get("status") or {})
        owner = Owner(name=name, namespace=namespace, uid=meta["uid"])
        key = concurrency_key(spec)
        queued_at = status.current_run.queued_at if status.current_run and \
            status.current_run.queued_at else now
        async with self.locks.setdefault((namespace, key), asyncio.Lock()):
            jobs, seals = await self.observe_jobs(namespace, name, status)
            observation = Observation(
                owner=owner,
                generation=meta.get("generation") or 0,
                created_at=parse_time(meta.get("creationTimestamp")) or now,
                annotations=meta.get("annotations") or {},
                spec=spec,
                status=status,
                jobs=jobs,
                seals=seals,
                queue=self.registry.queue_view(namespace, name, key, queued_at),
                now=now,
                worker=self.worker,
                stall_after=self.stall_after,
                deleting=deleting,
                group_requests=self.groups.requests_for(namespace, name),
                runs_in_progress=len(self.polling),
            )
            decision = reconcile(observation)
            await self.act(obj, status, decision)
        run = decision.status.current_run
        if run is not None and run.phase == RunPhase.IN_PROGRESS:
            self.polling.add((namespace, name))
        else:
            self.polling.discard((namespace, name))
        if decision.key_released:
            # Only the next run in line, ahead of routine work: waking every waiter made
            # each release cost a reconcile (and a status write) per queued job, O(n^2)
            # for a queue of n; the others see their new position at their next poll.
            waiting = self.registry.waiting_on(namespace, key)
            if waiting:
                self.queue.add(waiting[0], urgent=True)

    async def observe_jobs(self, namespace: str, name: str, status: ExportJobStatus
                           ) -> tuple[list[JobObservation], tuple[SealObservation, ...]]:
        """The run Jobs (with the current run's pods) and the seal Jobs (with their pods
        once finished: the seal's summary is its termination message)."""
        current = status.current_run.number if status.current_run else None
        in_progress = status.current_run is not None and \
            status.current_run.phase == RunPhase.IN_PROGRESS
        now = asyncio.get_running_loop().time()
        jobs = self.jobs.jobs(namespace, name, now, JOB_LIST_MAX_AGE if in_progress else None)
        if jobs is None:
            batch = client.BatchV1Api(self.api)
            listed = await self._json(batch.list_namespaced_job(
                namespace, label_selector=f"{LABEL_JOB}={name}", _preload_content=False))
            self.jobs.replace(namespace, name, listed["items"],
                              listed["metadata"].get("resourceVersion"), now)
            jobs = listed["items"]
        observations = []
        seals = []
        core = client.CoreV1Api(self.api)
        for job in jobs:
            pods: list[dict[str, Any]] = []
            labels = job["metadata"].get("labels", {})
            if LABEL_SEAL in labels:
                if job_finished(job) is not None and not job["metadata"].get("deletionTimestamp"):
                    pods = (await self._json(core.list_namespaced_pod(
                        namespace, label_selector=f"{LABEL_JOB}={name},"
                        f"{LABEL_SEAL}={labels[LABEL_SEAL]}", _preload_content=False)))["items"]
                sealed = seal_observation(job, pods)
                if sealed is not None:
                    seals.append(sealed)
                continue
            run = labels.get(LABEL_RUN)
            if current is not None and run == str(current):
                pods = (await self._json(core.list_namespaced_pod(
                    namespace, label_selector=f"{LABEL_JOB}={name},{LABEL_RUN}={run}",
                    _preload_content=False)))["items"]
            observed = job_observation(job, pods)
            if observed is not None:
                observations.append(observed)
        return observations, tuple(seals)

    async def act(self, obj: dict[str, Any], old: ExportJobStatus, decision: Decision) -> None:
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        new = decision.status
        written = obj
        if new != old and self.should_write(namespace, name, old, new, decision):
            written = self._wrote(await self.write_status(obj, new))
            self.registry.observe(namespace, name, written)
            if new.last_run is not None and (old.last_run is None or
                                             old.last_run.id != new.last_run.id):
                metrics.record_run(namespace, new.last_run)
        elif new != old:
            decision.requeue_after = min(decision.requeue_after or STATUS_WRITE_INTERVAL,
                                         STATUS_WRITE_INTERVAL)
        for manifest in [*filter(None, [decision.create_job]), *decision.create_seals]:
            await self.create_job(manifest)
        for job in decision.delete_jobs:
            await self.delete_job(namespace, name, job)
        for event in decision.events:
            self.post_event_later(obj, event)
        if decision.release_finalizer:
            await self.remove_finalizer(written if new != old else obj)
            return
        if decision.delete_self:
            version = written["metadata"]["resourceVersion"]
            await self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, EXPORTJOB_PLURAL, name,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(resource_version=version)))
            return
        if decision.requeue_after is not None:
            wake = self.clock() + dt.timedelta(seconds=decision.requeue_after)
            slot = new.next_run_at is not None and \
                new.next_run_at <= wake + dt.timedelta(seconds=SLOT_MARGIN)
            self.queue.add_after((namespace, name), decision.requeue_after, urgent=slot)

    def should_write(self, namespace: str, name: str, old: ExportJobStatus,
                     new: ExportJobStatus, decision: Decision) -> bool:
        """Write at once on any change but progress; progress at most every few seconds."""
        loop = asyncio.get_running_loop()
        progress_only = (
            not decision.create_job and not decision.delete_jobs and not decision.events
            and old.current_run is not None and new.current_run is not None
            and old.current_run.phase == new.current_run.phase
            and old.model_copy(update={"current_run": None, "progress": None, "eta": None,
                                       "conditions": None})
            == new.model_copy(update={"current_run": None, "progress": None, "eta": None,
                                      "conditions": None})
        )
        last = self.last_write.get((namespace, name))
        if progress_only and last is not None and loop.time() - last < STATUS_WRITE_INTERVAL:
            return False
        self.last_write[(namespace, name)] = loop.time()
        return True

    async def write_status(self, obj: dict[str, Any], status: ExportJobStatus) -> dict[str, Any]:
        meta = obj["metadata"]
        body = {**obj, "status": status.to_k8s()}
        return await self._json(self.custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], EXPORTJOB_PLURAL, meta["name"], body,
            _preload_content=False))

    async def report_invalid_spec(self, obj: dict[str, Any], message: str,
                                  now: dt.datetime) -> None:
        """A spec the schema let through but the models reject: Ready=False, no runs."""
        try:
            status = ExportJobStatus.model_validate(obj.get("status") or {})
        except ValidationError:
            status = ExportJobStatus()
        if mark_invalid_spec(status, message, now, obj["metadata"].get("generation")):
            self._wrote(await self.write_status(obj, status))
            await self.post_event(obj, Event("Warning", "InvalidSpec", message))

    async def add_finalizer(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        finalizers = [*(meta.get("finalizers") or []), FINALIZER]
        patch = self.custom.patch_namespaced_custom_object
        return self._wrote(await self._json(patch(  # type: ignore[call-arg]
            GROUP, VERSION, meta["namespace"], EXPORTJOB_PLURAL, meta["name"],
            {"metadata": {"finalizers": finalizers,
                          "resourceVersion": meta["resourceVersion"]}},
            _content_type=MERGE_PATCH, _preload_content=False)))

    async def remove_finalizer(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        await self.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
            GROUP, VERSION, meta["namespace"], EXPORTJOB_PLURAL, meta["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}},
            _content_type=MERGE_PATCH)

    async def create_job(self, manifest: dict[str, Any]) -> None:
        """Create the run's Job; 409 means it exists (a restart, or the index is behind)."""
        batch = client.BatchV1Api(self.api)
        meta = manifest["metadata"]
        owner = meta["labels"][LABEL_JOB]
        try:  # raw: turning the answer into V1Job models was a tenth of the CPU at a slot
            created = await self._json(batch.create_namespaced_job(
                meta["namespace"], manifest,  # type: ignore[arg-type]
                _preload_content=False))
        except ApiException as e:
            if e.status != 409:
                raise
            self.jobs.unlist(meta["namespace"], owner)
            return
        self.jobs.created(meta["namespace"], owner, created, asyncio.get_running_loop().time())

    async def delete_job(self, namespace: str, owner: str, name: str) -> None:
        batch = client.BatchV1Api(self.api)
        try:
            await batch.delete_namespaced_job(
                name, namespace, body=client.V1DeleteOptions(propagation_policy="Foreground"))
        except ApiException as e:
            if e.status != 404:
                raise
        self.jobs.drop(namespace, owner, name)

    def post_event_later(self, obj: dict[str, Any], event: Event) -> None:
        """Post the Event in the background: a worker never waits for one.

        Events are best effort (a failure is only logged), and at the top of the hour
        one more round trip per run, awaited, was a fifth of the time to create every
        run's Job (bench/operator_scale.py). The Event's body is made now, so a held Event
        keeps a few hundred bytes, not the whole ExportJob: with 10,000 Events held at
        a slot, the operator's RSS grew by ~300 MB while they held ExportJobs.
        """
        task = asyncio.create_task(self.post_event_when_calm(self.event_body(obj, event)))
        self.background.add(task)
        task.add_done_callback(self._event_posted)

    async def drain_events(self, timeout: float) -> None:
        """Give Events still waiting (held back by a slot) up to ``timeout`` seconds."""
        if self.background:
            await asyncio.wait(set(self.background), timeout=timeout)

    async def post_event_when_calm(self, body: dict[str, Any]) -> None:
        """Post once no due run waits: at a slot, its Events go after the runs' Jobs (an
        Event a few seconds late costs nobody; a run's Job a few seconds late is the
        latency that matters)."""
        await self.queue.calm()
        await self.send_event(body)

    def _event_posted(self, task: asyncio.Task[None]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("event not posted: %r", task.exception())

    def event_body(self, obj: dict[str, Any], event: Event) -> dict[str, Any]:
        """The core/v1 Event, as plain JSON (no model (de)serialization per Event)."""
        meta = obj["metadata"]
        stamp = self.clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion")},
            "type": event.type, "reason": event.reason, "message": event.message[:1024],
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "source": {"component": "ferry-operator"},
            "reportingComponent": "ferry.dev/operator", "reportingInstance": "ferry-operator",
        }

    async def post_event(self, obj: dict[str, Any], event: Event) -> None:
        await self.send_event(self.event_body(obj, event))

    async def send_event(self, body: dict[str, Any]) -> None:
        target = body["involvedObject"]
        core = client.CoreV1Api(self.api)
        try:
            async with self.events:
                await self._json(core.create_namespaced_event(
                    target["namespace"], body, _preload_content=False))  # type: ignore[arg-type]
        except ApiException as e:
            log.warning("event %s on %s/%s not posted: %s", body["reason"], target["namespace"],
                        target["name"], e.reason)
