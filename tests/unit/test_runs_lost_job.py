"""A run whose Job is gone when the operator looks (ferry.reconcile.runs).

The Job may have been deleted by hand or by anything else while the operator was
down; the run must neither stay InProgress without a Job nor fail because nobody saw
the Job end. The operator creates the Job again; its pods report the batches the run
already committed to S3 from their manifests (the worker's side is at the end; the
e2e test is tests/e2e/test_restart_rebuild.py).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

from ferry.api.status import ExportJobStatus, RunPhase
from ferry.reconcile.progress import JobObservation, PodObservation
from ferry.reconcile.runs import Decision, reconcile
from ferry.worker.batch import committed_for_this_run
from ferry.worker.plan import parse_plan

from .builders import T0, finished_job, observation, spec

MINUTE = dt.timedelta(minutes=1)
JOB = spec().hourly().relative("1h").batches(3).build()
STARTED = T0 + dt.timedelta(hours=1)


def plan_of(manifest: dict[str, object]) -> dict[str, object]:
    env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]  # type: ignore[index]
    return json.loads(next(e["value"] for e in env if e["name"] == "FERRY_PLAN"))  # type: ignore[no-any-return]


def running_with_one_batch_done() -> ExportJobStatus:
    """Run contacts.1 in progress, its Job seen with batch 0 succeeded."""
    started = reconcile(observation(JOB, STARTED)).status
    job = JobObservation(
        name="contacts-1", run_number=1, completions=3, active=2,
        completed_indexes=frozenset({0}),
        pods=[PodObservation(completion_index=0, phase="Succeeded", created_at=STARTED,
                             summary={"records": 10, "bytes": 100, "fileCount": 1})])
    return reconcile(observation(JOB, STARTED + MINUTE, status=started, jobs=[job])).status


def test_a_lost_job_is_created_again_under_the_same_name_for_the_same_run() -> None:
    before = running_with_one_batch_done()
    assert before.current_run is not None and before.current_run.batches is not None

    decision = reconcile(observation(JOB, STARTED + 30 * MINUTE, status=before, jobs=[]))

    run = decision.status.current_run
    assert run is not None
    assert (run.id, run.phase) == ("contacts.1", RunPhase.IN_PROGRESS)
    assert decision.create_job is not None
    assert decision.create_job["metadata"]["name"] == "contacts-1"
    assert decision.create_job["spec"]["completions"] == 3
    plan = plan_of(decision.create_job)
    assert plan["reuseCommittedSince"] == "2026-11-22T01:00:00Z", "the run's start"
    assert run.message == ("Job contacts-1 was gone while the run was in progress; created it "
                           "again: batches already committed are kept, the others are "
                           "exported")
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "JobReplaced")]
    assert decision.events[0].message.endswith("(1 of 3 batches were seen to succeed before)")
    assert decision.status.history is None, "nothing is decided about the run yet"
    assert decision.status.phase == "InProgress"


def test_the_replacement_job_ends_the_run_with_every_batch_counted() -> None:
    """Its pods report the committed batches from their manifests: the run ends
    Succeeded with all records, one history entry, as if the Job had never gone."""
    replaced = reconcile(observation(JOB, STARTED + 30 * MINUTE,
                                     status=running_with_one_batch_done(), jobs=[])).status

    done = reconcile(observation(JOB, STARTED + 31 * MINUTE, status=replaced,
                                 jobs=[finished_job(1, 3)]))

    entry = done.status.last_run
    assert entry is not None
    assert (entry.id, entry.phase, entry.records, entry.files) == (
        "contacts.1", RunPhase.SUCCEEDED, 30, 3)
    assert entry.message == "3 of 3 batches succeeded"
    assert [h.id for h in done.status.history or []] == ["contacts.1"]
    assert done.create_job is None


def test_a_batch_failing_again_in_the_replacement_makes_a_partial_success() -> None:
    replaced = reconcile(observation(JOB, STARTED + 30 * MINUTE,
                                     status=running_with_one_batch_done(), jobs=[])).status

    done = reconcile(observation(JOB, STARTED + 31 * MINUTE, status=replaced,
                                 jobs=[finished_job(1, 3, failed={2})]))

    entry = done.status.last_run
    assert entry is not None
    assert (entry.phase, entry.failed_batches, entry.records) == (
        RunPhase.PARTIALLY_SUCCEEDED, [2], 20)


def test_a_job_never_seen_is_created_without_a_warning() -> None:
    """The operator stopped between recording the run and creating its Job."""
    recorded = reconcile(observation(JOB, STARTED)).status

    decision = reconcile(observation(JOB, STARTED + MINUTE, status=recorded, jobs=[]))

    assert decision.create_job is not None
    assert decision.create_job["metadata"]["name"] == "contacts-1"
    assert decision.events == []
    assert decision.status.current_run is not None
    assert decision.status.current_run.message is None


def test_a_job_still_being_deleted_is_waited_for() -> None:
    """Its name is taken until it is gone: the create is repeated (409 until then)."""
    before = running_with_one_batch_done()
    going = replace(finished_job(1, 3), finished=None, deleting=True)

    decision: Decision = reconcile(observation(JOB, STARTED + 30 * MINUTE, status=before,
                                               jobs=[going]))

    assert decision.create_job is not None
    assert decision.requeue_after is not None and decision.requeue_after <= 5
    assert decision.status.current_run is not None
    assert decision.status.current_run.phase == RunPhase.IN_PROGRESS
    assert decision.events == []


def test_the_worker_reuses_only_manifests_this_run_committed() -> None:
    """The plan the operator sends, read by the worker: a manifest of this run started
    after the run did is reported as is; an older one (an earlier ExportJob of the same
    name wrote the same run folder) or another run's is exported over as usual."""
    replaced = reconcile(observation(JOB, STARTED + 30 * MINUTE,
                                     status=running_with_one_batch_done(), jobs=[]))
    assert replaced.create_job is not None
    plan = parse_plan(plan_of(replaced.create_job), {"JOB_COMPLETION_INDEX": "0"})
    assert plan.reuse_committed_since == STARTED

    ours = {"run": "contacts.1", "startedAt": "2026-11-22T01:00:04.120Z", "attempt": "ab"}
    assert committed_for_this_run(plan, ours)
    assert not committed_for_this_run(plan, {**ours, "startedAt": "2026-11-21T09:00:00Z"})
    assert not committed_for_this_run(plan, {**ours, "run": "contacts.2"})
    assert not committed_for_this_run(plan, {**ours, "startedAt": "yesterday"})
    first = reconcile(observation(JOB, STARTED)).create_job
    assert first is not None
    assert parse_plan(plan_of(first), {}).reuse_committed_since == STARTED, \
        "every Job of a run carries it, so creating one twice is harmless"
