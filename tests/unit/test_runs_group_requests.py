"""How an ExportJob answers the JobGroup runs that ask it to run (ferry.reconcile.runs)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from ferry.api.exportjob import ExportJobSpec
from ferry.api.status import ExportJobStatus, RunPhase
from ferry.reconcile.progress import JobObservation
from ferry.reconcile.requests import GroupRequest
from ferry.reconcile.runs import Decision, reconcile

from .builders import T0, finished_job, observation, spec

MINUTE = dt.timedelta(minutes=1)


def step(job: ExportJobSpec, now: dt.datetime, *requests: GroupRequest,
         status: ExportJobStatus | None = None,
         jobs: list[JobObservation] | None = None,
         created_at: dt.datetime = T0 - MINUTE) -> Decision:
    obs = observation(job, now, status=status, jobs=jobs, created_at=created_at)
    return reconcile(dataclasses.replace(obs, group_requests=requests))


def test_a_group_request_starts_one_run_with_the_group_trigger() -> None:
    job = spec().build()
    decision = step(job, T0, GroupRequest("nightly.3", T0))
    run = decision.status.current_run
    assert run is not None
    assert (run.id, run.trigger, run.phase) == ("contacts.1", "group:nightly.3",
                                                RunPhase.IN_PROGRESS)
    assert decision.create_job is not None
    assert [(r.group_run, r.run_id) for r in decision.status.group_runs or []] == [
        ("nightly.3", "contacts.1")]


def test_an_answered_group_run_is_never_started_again() -> None:
    """After the run ended (or after a restart), the same request is recognised."""
    job = spec().build()
    started = step(job, T0, GroupRequest("nightly.3", T0)).status
    ended = step(job, T0 + MINUTE, GroupRequest("nightly.3", T0), status=started,
                 jobs=[finished_job(1, 1)])
    assert ended.status.current_run is None
    assert ended.status.last_run is not None
    assert ended.status.last_run.trigger == "group:nightly.3"
    again = step(job, T0 + 2 * MINUTE, GroupRequest("nightly.3", T0), status=ended.status,
                 jobs=[finished_job(1, 1)])
    assert again.status.current_run is None
    assert again.create_job is None


def test_a_busy_job_answers_the_group_when_its_own_run_ends() -> None:
    job = spec().build()
    own = reconcile(observation(job, T0, annotations={"ferry.dev/run-requested-at": "1"})).status
    assert own.current_run is not None and own.current_run.trigger == "manual"

    waiting = step(job, T0 + MINUTE, GroupRequest("nightly.3", T0), status=own)
    assert waiting.status.current_run is not None
    assert waiting.status.current_run.trigger == "manual"
    assert waiting.status.group_runs is None

    done = step(job, T0 + 2 * MINUTE, GroupRequest("nightly.3", T0), status=waiting.status,
                jobs=[finished_job(1, 1)])
    assert done.status.last_run is not None and done.status.last_run.trigger == "manual"
    assert done.status.current_run is not None
    assert (done.status.current_run.id, done.status.current_run.trigger) == (
        "contacts.2", "group:nightly.3")


def test_a_suspended_job_does_not_answer_group_requests() -> None:
    job = spec().set("suspend", True).build()
    decision = step(job, T0, GroupRequest("nightly.3", T0))
    assert decision.status.current_run is None
    assert decision.status.group_runs is None


def test_of_two_groups_the_earlier_request_is_served_first() -> None:
    job = spec().build()
    decision = step(job, T0, GroupRequest("weekly.1", T0 + MINUTE), GroupRequest("nightly.3", T0))
    assert decision.status.current_run is not None
    assert decision.status.current_run.trigger == "group:nightly.3"


def test_a_canceled_group_run_cancels_only_its_own_member_run() -> None:
    job = spec().build()
    running = step(job, T0, GroupRequest("nightly.3", T0)).status
    active = dataclasses.replace(finished_job(1, 1), finished=None)

    other = step(job, T0 + MINUTE, GroupRequest("weekly.1", canceled=True), status=running,
                 jobs=[active])
    assert other.status.current_run is not None
    assert other.delete_jobs == []

    canceled = step(job, T0 + MINUTE, GroupRequest("nightly.3", canceled=True), status=running,
                    jobs=[active])
    assert canceled.status.current_run is None
    assert canceled.delete_jobs == ["contacts-1"]
    assert canceled.status.last_run is not None
    assert (canceled.status.last_run.phase, canceled.status.last_run.message) == (
        RunPhase.CANCELED, "group run nightly.3 was stopped")


def test_the_jobs_own_schedule_waits_behind_a_group_run() -> None:
    """A slot that fires during the group's run starts after it, never alongside."""
    job = spec().hourly().build()
    early = T0 + dt.timedelta(minutes=50)
    created = T0 + dt.timedelta(minutes=10)
    group_run = step(job, early, GroupRequest("nightly.3", early), created_at=created).status
    active = dataclasses.replace(finished_job(1, 1), finished=None)
    slot = T0 + dt.timedelta(hours=1)

    during = step(job, slot, GroupRequest("nightly.3", early), status=group_run, jobs=[active],
                  created_at=created)
    assert during.status.current_run is not None
    assert during.status.current_run.trigger == "group:nightly.3"
    assert during.create_job is None

    after = step(job, slot + MINUTE, status=during.status, jobs=[finished_job(1, 1)],
                 created_at=created)
    assert after.status.last_run is not None
    assert after.status.last_run.trigger == "group:nightly.3"
    assert after.status.current_run is not None
    assert (after.status.current_run.trigger, after.status.current_run.scheduled_for) == (
        "schedule", slot)


def test_a_member_whose_turn_has_not_come_shows_awaiting_dependency() -> None:
    job = spec().build()
    waiting = step(job, T0, GroupRequest("nightly.3", waiting=True))
    assert waiting.create_job is None
    assert waiting.status.current_run is None
    assert (waiting.status.phase, waiting.status.awaiting_group_run) == (
        "AwaitingDependency", "nightly.3")

    reached = step(job, T0 + MINUTE, GroupRequest("nightly.3", T0 + MINUTE),
                   status=waiting.status)
    assert reached.create_job is not None
    assert (reached.status.phase, reached.status.awaiting_group_run) == ("InProgress", None)


def test_a_member_left_behind_by_its_group_run_stops_awaiting() -> None:
    job = spec().build()
    waiting = step(job, T0, GroupRequest("nightly.3", waiting=True)).status
    skipped = step(job, T0 + MINUTE, status=waiting).status
    assert (skipped.phase, skipped.awaiting_group_run) == ("Drafted", None)
