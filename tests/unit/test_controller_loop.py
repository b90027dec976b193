"""The reconcile loop's I/O, ExportJob and JobGroup, against the in-memory API (fakekube).

What the e2e suite shows on a real cluster, here pass by pass: which requests one pass
makes, what it writes, and what it does when the API server says no.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from ferry.api.common import ConditionReason
from ferry.api.status import RunPhase
from ferry.constants import (
    ANNOTATION_RUN_REQUESTED_AT,
    EXPORTJOB_KIND,
    FINALIZER,
    IMPORTJOB_KIND,
    LABEL_JOB,
)
from ferry.controller.events import EventPoster
from ferry.controller.importjobs import import_jobs
from ferry.controller.jobgroups import JobGroupLoop, JobGroups
from ferry.controller.kube import ApiError
from ferry.controller.loop import Loop
from ferry.controller.runjobs import RunJobLoop, export_jobs
from ferry.controller.workqueue import WorkQueue
from ferry.reconcile.jobspec import WorkerDefaults
from tests.unit.builders import T0, exportjob, jobgroup
from tests.unit.fakekube import FakeKube

NOW = T0 + dt.timedelta(minutes=10)
NS = "team-a"


class Operator:
    """Both loops wired as `ferry.controller.handlers.start` wires them, on a FakeKube."""

    def __init__(self, kube: FakeKube, now: dt.datetime = NOW) -> None:
        self.kube = kube
        self.now = now
        queue = WorkQueue()
        self.events = EventPoster(kube=kube, calm=queue.calm, clock=lambda: self.now)
        worker = WorkerDefaults(image="ferry-worker:test", service_account="ferry-worker")
        self.exportjobs = export_jobs(kube, worker)
        self.jobs: RunJobLoop = Loop(kube=kube, kind=self.exportjobs, events=self.events,
                                     queue=queue, clock=lambda: self.now)
        self.importjobs = import_jobs(kube, worker, self.jobs, self.exportjobs.groups)
        self.imports: RunJobLoop = Loop(kube=kube, kind=self.importjobs, events=self.events,
                                        clock=lambda: self.now)
        self.groups: JobGroupLoop = Loop(
            kube=kube, events=self.events, clock=lambda: self.now,
            kind=JobGroups(loops={EXPORTJOB_KIND: self.jobs, IMPORTJOB_KIND: self.imports},
                           registry=self.exportjobs.groups))

    async def settle_events(self) -> list[str]:
        await self.events.drain(1.0)
        return [e["reason"] for e in self.kube.events]


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


async def test_first_pass_holds_the_finalizer_and_schedules_without_a_job(kube: FakeKube
                                                                         ) -> None:
    kube.add("exportjobs", exportjob().hourly(minute=30).build())
    operator = Operator(kube)

    await operator.jobs.reconcile(NS, "contacts")

    stored = kube.stored("exportjobs", NS, "contacts")
    assert stored is not None
    assert stored["metadata"]["finalizers"] == [FINALIZER]
    assert stored["status"]["nextRunAt"] == "2026-11-22T00:30:00Z"
    assert kube.count("create", "jobs") == 0
    assert operator.jobs.queue.timers == 1  # woken for the slot, not polled


async def test_a_run_now_creates_one_job_even_when_the_index_is_behind(kube: FakeKube
                                                                      ) -> None:
    kube.add("exportjobs", exportjob().finalized()
             .annotated(ANNOTATION_RUN_REQUESTED_AT, NOW.isoformat()).build())
    operator = Operator(kube)

    await operator.jobs.reconcile(NS, "contacts")
    stored = kube.stored("exportjobs", NS, "contacts")
    assert stored is not None
    assert stored["status"]["currentRun"]["id"] == "contacts.1"
    assert stored["status"]["currentRun"]["phase"] == RunPhase.IN_PROGRESS
    assert kube.stored("jobs", NS, "contacts-1") is not None

    # The Job watch has not shown the Job and the index is forgotten (a restart): the
    # next pass lists, sees the Job and creates nothing more.
    operator.exportjobs.jobs.forget(NS, "contacts")
    await operator.jobs.reconcile(NS, "contacts")
    assert kube.count("create", "jobs") == 1
    assert kube.count("list", "jobs") == 2  # the first pass's list, and the one after forget
    assert [name for (plural, _, name) in kube.objects if plural == "jobs"] == ["contacts-1"]


async def test_a_stale_cache_entry_is_refused_dropped_and_read_fresh(kube: FakeKube) -> None:
    kube.add("exportjobs", exportjob().finalized().hourly(minute=30).build())
    operator = Operator(kube)
    stale = kube.stored("exportjobs", NS, "contacts")
    assert stale is not None
    operator.jobs.bodies.keep(NS, "contacts", stale)
    kube.add("exportjobs", exportjob().finalized().hourly(minute=45).build())  # a user's edit

    with pytest.raises(ApiError) as refused:
        await operator.jobs.reconcile(NS, "contacts")
    assert refused.value.status == 409

    # run_worker's answer to the 409: drop the entry and retry, which reads fresh.
    operator.jobs.bodies.drop(NS, "contacts")
    await operator.jobs.reconcile(NS, "contacts")
    stored = kube.stored("exportjobs", NS, "contacts")
    assert stored is not None
    assert stored["status"]["nextRunAt"] == "2026-11-22T00:45:00Z"


async def test_own_writes_come_back_as_echoes_and_cost_no_reconcile(kube: FakeKube) -> None:
    kube.add("exportjobs", exportjob().hourly(minute=30).build())
    operator = Operator(kube)
    await operator.jobs.reconcile(NS, "contacts")

    written = kube.stored("exportjobs", NS, "contacts")
    assert written is not None
    assert operator.jobs.observed(NS, "contacts", written) is False  # the watch's echo
    written["metadata"]["resourceVersion"] = "999"  # someone else's change
    assert operator.jobs.observed(NS, "contacts", written) is True


async def test_an_invalid_spec_is_reported_once(kube: FakeKube) -> None:
    body = exportjob().finalized().hourly().build()
    body["spec"]["schedule"]["hourly"]["minute"] = 75  # past the models' 0-59
    kube.add("exportjobs", body)
    operator = Operator(kube)

    await operator.jobs.reconcile(NS, "contacts")
    await operator.jobs.reconcile(NS, "contacts")

    stored = kube.stored("exportjobs", NS, "contacts")
    assert stored is not None
    ready = next(c for c in stored["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", ConditionReason.INVALID_SPEC)
    assert ready["message"].startswith("spec.schedule.hourly.minute: ")
    stalled = next(c for c in stored["status"]["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", ConditionReason.INVALID_SPEC)
    assert kube.count("replace_status") == 1
    assert await operator.settle_events() == [ConditionReason.INVALID_SPEC]


async def test_an_object_gone_is_forgotten(kube: FakeKube) -> None:
    operator = Operator(kube)
    operator.jobs.queue.add_after((NS, "contacts"), 60)
    operator.exportjobs.polling.add((NS, "contacts"))

    await operator.jobs.reconcile(NS, "contacts")

    assert operator.jobs.queue.timers == 0
    assert (NS, "contacts") not in operator.exportjobs.polling


async def test_deleting_an_idle_job_releases_the_finalizer(kube: FakeKube) -> None:
    kube.add("exportjobs", exportjob().finalized().hourly(minute=30).build())
    operator = Operator(kube)
    await operator.jobs.reconcile(NS, "contacts")
    assert kube.count("create", "jobs") == 0
    await kube.delete("exportjobs", NS, "contacts")
    operator.jobs.bodies.drop(NS, "contacts")

    await operator.jobs.reconcile(NS, "contacts")

    assert kube.stored("exportjobs", NS, "contacts") is None


async def test_a_group_reads_its_members_from_the_cache_and_gets_only_unknown_ones(
        kube: FakeKube) -> None:
    kube.add("exportjobs", exportjob("a").finalized().build())
    kube.add("exportjobs", exportjob("b").finalized().build())
    kube.add("jobgroups", jobgroup("nightly", "a", "b").build())
    operator = Operator(kube)
    known = kube.stored("exportjobs", NS, "a")
    assert known is not None
    operator.jobs.observed(NS, "a", known)  # the ExportJob watch has shown a, not yet b

    await operator.groups.reconcile(NS, "nightly")

    assert [name for verb, plural, name in kube.calls
            if verb == "get" and plural == "exportjobs"] == ["b"]
    stored = kube.stored("jobgroups", NS, "nightly")
    assert stored is not None
    ready = next(c for c in stored["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"


async def test_a_group_run_wakes_its_members_the_first_runs_the_second_waits(
        kube: FakeKube) -> None:
    kube.add("exportjobs", exportjob("a").finalized().build())
    kube.add("exportjobs", exportjob("b").finalized().build())
    group = jobgroup("nightly", "a", "b").build()
    group["metadata"]["annotations"] = {ANNOTATION_RUN_REQUESTED_AT: NOW.isoformat()}
    kube.add("jobgroups", group)
    operator = Operator(kube)

    await operator.groups.reconcile(NS, "nightly")

    woken = [await operator.jobs.queue.get() for _ in range(len(operator.jobs.queue))]
    assert woken == [(NS, "a"), (NS, "b")]
    for key in woken:
        operator.jobs.queue.done(key)
        await operator.jobs.reconcile(*key)
    job = kube.stored("jobs", NS, "a-1")
    assert job is not None and job["metadata"]["labels"][LABEL_JOB] == "a"
    assert kube.stored("jobs", NS, "b-1") is None
    first, second = (kube.stored("exportjobs", NS, n) for n in ("a", "b"))
    assert first is not None and second is not None
    assert first["status"]["currentRun"]["trigger"] == "group:nightly.1"
    assert "currentRun" not in second["status"]
    assert second["status"]["awaitingGroupRun"] == "nightly.1"
    assert second["status"]["phase"] == "AwaitingDependency"


async def test_a_write_to_an_object_gone_drops_its_cache_entry_so_the_retry_forgets_it(
        kube: FakeKube) -> None:
    operator = Operator(kube)
    gone = exportjob().hourly().build()  # never stored: the watch showed it, then it went
    gone["metadata"].update(uid="uid-gone", resourceVersion="7")
    operator.jobs.bodies.keep(NS, "contacts", gone)
    operator.jobs.queue.add((NS, "contacts"))

    worker = asyncio.create_task(operator.jobs.run_worker())
    for _ in range(100):
        if operator.jobs.queue.timers:
            break
        await asyncio.sleep(0.01)
    worker.cancel()

    assert kube.calls == [("patch", "exportjobs", "contacts")]  # the finalizer: 404
    assert operator.jobs.bodies.get(NS, "contacts") is None
    await operator.jobs.reconcile(NS, "contacts")  # the retry
    assert kube.calls[-1] == ("get", "exportjobs", "contacts")
