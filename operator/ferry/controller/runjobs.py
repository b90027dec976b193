"""ExportJob and ImportJob as kinds of the reconcile loop: their runs' Jobs, pods, queue.

Both are decided by `ferry.reconcile.runs.reconcile`, configured by their `RunRules`
(`ferry.reconcile.runrules.EXPORT_RULES`, `ferry.reconcile.importrules.IMPORT_RULES`):
one `RunJobs` each, with its own Job label, queue and registries, so an ExportJob and an
ImportJob of the same name never share anything. What such a kind adds to the loop:

- The child Jobs come from the Job watch (`registry.JobIndex`), listed once per
  job after a start and again where the watch may be behind (a run in progress:
  at least every `JOB_LIST_MAX_AGE` seconds; a create answered 409): at the top of the
  hour a LIST per run was one round trip more and, for the API server, a scan of every
  Job in the namespace. A Job the index does not show yet is created again under its
  deterministic name, which the API server refuses (409): never a second Job for a run.
- The current run's pods are listed fresh (their progress is in pod annotations).
- Runs reading one data source take turns (`registry.Registry`, per concurrency key):
  one pass per key at a time, and a run that releases its key wakes the next in line.
- A run in progress is polled for its pods' progress, less often the more runs are
  (`ferry.reconcile.progress.progress_poll_interval`). The count is kept from the
  decisions themselves (`polling`): status is the operator's alone to write, so its
  decisions see every run start and end; a set costs nothing per pass, where counting
  runs in the Job index or the body cache would be a scan over every job.
- What a kind's rules read besides the spec (an ImportJob's ExportJob) comes from
  ``inputs`` (`ferry.controller.importjobs.ExportJobInputs`).
- Progress-only status writes are spaced `STATUS_WRITE_INTERVAL` apart per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ferry.api.exportjob import ExportJobSpec
from ferry.api.status import ExportJobStatus, RunPhase
from ferry.constants import EXPORTJOB_PLURAL, FINALIZER, LABEL_JOB, LABEL_RUN, LABEL_SEAL
from ferry.controller import metrics
from ferry.controller.groupregistry import GroupRegistry
from ferry.controller.kube import Body, KubeApi
from ferry.controller.loop import Key, Loop, Resource
from ferry.controller.registry import JobIndex, Registry
from ferry.reconcile.jobspec import Owner, WorkerDefaults
from ferry.reconcile.observe import job_finished, job_observation, parse_time, seal_observation
from ferry.reconcile.progress import JobObservation, SealObservation
from ferry.reconcile.runrules import EXPORT_RULES, RunRules
from ferry.reconcile.runs import Decision, Observation, reconcile

STATUS_WRITE_INTERVAL = 3.0
"""Progress-only status writes are spaced at least this far apart per job."""
JOB_LIST_MAX_AGE = 60.0
"""A run in progress lists its Jobs at least this often: a Job deleted while the Job
watch was broken is noticed within a minute, not never."""
SLOT_MARGIN = 1.0
"""A wake-up within this many seconds of nextRunAt is the slot's: queued as urgent."""

RunJobLoop = Loop[Any, ExportJobStatus, Observation, Decision]
RunJobResource = Resource[Any, ExportJobStatus]


async def no_inputs(resource: RunJobResource) -> None:
    """A kind whose rules read nothing but the spec."""
    return None


@dataclass
class RunJobs:
    """A kind whose runs are batch/v1 Jobs, configured by its rules and models."""

    kube: KubeApi
    worker: WorkerDefaults
    rules: RunRules
    plural: str
    spec_model: type[BaseModel]
    status_model: type[ExportJobStatus]
    label: str
    """The Job label naming the owner (`ferry.constants.LABEL_JOB`, `LABEL_IMPORTJOB`)."""
    member_prefix: str = ""
    """How a JobGroup names a job of this kind: ``<prefix><name>`` (`api.jobgroup.MemberRef`)."""
    inputs: Callable[[RunJobResource], Awaitable[Any]] = no_inputs
    stall_after: dt.timedelta = dt.timedelta(minutes=15)
    registry: Registry = field(default_factory=Registry)
    groups: GroupRegistry = field(default_factory=GroupRegistry)
    """What JobGroup runs ask of each job (see ferry.reconcile.groups)."""
    jobs: JobIndex = field(default_factory=JobIndex)
    locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    last_write: dict[Key, float] = field(default_factory=dict)
    polling: set[Key] = field(default_factory=set)
    """Jobs whose last decision left a run in progress: the runs polled for
    progress. After a restart it fills as the cold start reconciles every job."""
    finalizer: str | None = FINALIZER

    def serialized(self, resource: RunJobResource
                   ) -> contextlib.AbstractAsyncContextManager[None]:
        key = (resource.key[0], self.rules.concurrency_key(resource.spec))
        return self.locks.setdefault(key, asyncio.Lock())

    async def observe(self, resource: RunJobResource) -> Observation:
        namespace, name = resource.key
        meta, spec, status, now = resource.meta, resource.spec, resource.status, resource.now
        key = self.rules.concurrency_key(spec)
        queued_at = status.current_run.queued_at if status.current_run and \
            status.current_run.queued_at else now
        jobs, seals = await self.observe_jobs(namespace, name, status)
        return Observation(
            owner=Owner(name=name, namespace=namespace, uid=meta["uid"],
                        kind=self.rules.kind, label=self.label),
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
            deleting=resource.deleting,
            group_requests=self.groups.requests_for(namespace, self.member_prefix + name),
            runs_in_progress=len(self.polling),
            rules=self.rules,
            inputs=await self.inputs(resource),
        )

    decide = staticmethod(reconcile)

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
            listed = await self.kube.list_jobs(namespace, f"{self.label}={name}")
            self.jobs.replace(namespace, name, listed["items"],
                              listed["metadata"].get("resourceVersion"), now)
            jobs = listed["items"]
        observations = []
        seals = []
        for job in jobs:
            pods: list[Body] = []
            labels = job["metadata"].get("labels", {})
            if LABEL_SEAL in labels:
                if job_finished(job) is not None and not job["metadata"].get("deletionTimestamp"):
                    pods = await self.kube.list_pods(
                        namespace, f"{self.label}={name},{LABEL_SEAL}={labels[LABEL_SEAL]}")
                sealed = seal_observation(job, pods)
                if sealed is not None:
                    seals.append(sealed)
                continue
            run = labels.get(LABEL_RUN)
            if current is not None and run == str(current):
                pods = await self.kube.list_pods(namespace,
                                                 f"{self.label}={name},{LABEL_RUN}={run}")
            observed = job_observation(job, pods)
            if observed is not None:
                observations.append(observed)
        return observations, tuple(seals)

    async def act(self, loop: RunJobLoop, resource: RunJobResource,
                  decision: Decision) -> None:
        obj, old, new = resource.obj, resource.status, decision.status
        namespace, name = resource.key
        written = obj
        if new != old and self.should_write(resource.key, old, new, decision):
            written = await loop.write_status(obj, new)
            self.registry.observe(namespace, name, written)
            if new.last_run is not None and (old.last_run is None or
                                             old.last_run.id != new.last_run.id):
                metrics.record_run(self.rules.kind, namespace, new.last_run)
            metrics.record_missed(self.rules.kind, namespace, old, new)
        elif new != old:
            decision.requeue_after = min(decision.requeue_after or STATUS_WRITE_INTERVAL,
                                         STATUS_WRITE_INTERVAL)
        for manifest in [*filter(None, [decision.create_job]), *decision.create_seals]:
            await self.create_job(manifest)
        for job in decision.delete_jobs:
            await self.kube.delete_job(namespace, job)
            self.jobs.drop(namespace, name, job)
        if decision.release_finalizer:
            loop.post_events(obj, decision.events)
            await loop.remove_finalizer(written)
            return
        await loop.finish(resource, written, decision, urgent=self.slot_due(loop, new, decision))

    @staticmethod
    def slot_due(loop: RunJobLoop, status: ExportJobStatus, decision: Decision) -> bool:
        """The requeue wakes the job for its next slot: it goes ahead of routine work."""
        if decision.requeue_after is None or status.next_run_at is None:
            return False
        wake = loop.clock() + dt.timedelta(seconds=decision.requeue_after)
        return status.next_run_at <= wake + dt.timedelta(seconds=SLOT_MARGIN)

    def should_write(self, key: Key, old: ExportJobStatus, new: ExportJobStatus,
                     decision: Decision) -> bool:
        """Write at once on any change but progress; progress at most every few seconds."""
        loop = asyncio.get_running_loop()
        unchanged: dict[str, Any] = {"current_run": None, "progress": None, "eta": None,
                                     "conditions": None}
        progress_only = (
            not decision.create_job and not decision.delete_jobs and not decision.events
            and old.current_run is not None and new.current_run is not None
            and old.current_run.phase == new.current_run.phase
            and old.model_copy(update=unchanged) == new.model_copy(update=unchanged)
        )
        last = self.last_write.get(key)
        if progress_only and last is not None and loop.time() - last < STATUS_WRITE_INTERVAL:
            return False
        self.last_write[key] = loop.time()
        return True

    async def create_job(self, manifest: Body) -> None:
        """Create a run's (or seal's) Job; None back means it exists (a restart, or the
        index is behind): the next pass lists."""
        meta = manifest["metadata"]
        owner = meta["labels"][self.label]
        created = await self.kube.create_job(manifest)
        if created is None:
            self.jobs.unlist(meta["namespace"], owner)
            return
        self.jobs.created(meta["namespace"], owner, created, asyncio.get_running_loop().time())

    def after(self, loop: RunJobLoop, resource: RunJobResource,
              decision: Decision) -> None:
        key = resource.key
        metrics.JOBS.observe(self.rules.kind, *key, decision.status)
        run = decision.status.current_run
        if run is not None and run.phase == RunPhase.IN_PROGRESS:
            self.polling.add(key)
        else:
            self.polling.discard(key)
        if decision.key_released:
            # Only the next run in line, ahead of routine work: waking every waiter made
            # each release cost a reconcile (and a status write) per queued job, O(n^2)
            # for a queue of n; the others see their new position at their next poll.
            waiting = self.registry.waiting_on(key[0], self.rules.concurrency_key(resource.spec))
            if waiting:
                loop.queue.add(waiting[0], urgent=True)

    def invalid(self, key: Key) -> None:
        self.polling.discard(key)  # no longer polled (no requeue)

    def forget(self, key: Key) -> None:
        metrics.JOBS.forget(self.rules.kind, *key)
        self.registry.forget(*key)
        self.jobs.forget(*key)
        self.last_write.pop(key, None)
        self.polling.discard(key)


def export_jobs(kube: KubeApi, worker: WorkerDefaults,
                stall_after: dt.timedelta = dt.timedelta(minutes=15)) -> RunJobs:
    """The ExportJob kind."""
    return RunJobs(kube=kube, worker=worker, rules=EXPORT_RULES, plural=EXPORTJOB_PLURAL,
                   spec_model=ExportJobSpec, status_model=ExportJobStatus, label=LABEL_JOB,
                   stall_after=stall_after)
