"""How often runs in progress are polled: every 5 s while few are, within a fixed budget
of polls a second however many are, and never as the way a run's end or a request is
noticed (those come as watch events, and one pass acts on them whatever the load)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from ferry.api.status import ExportJobStatus, RunPhase
from ferry.constants import ANNOTATION_STOP_REQUESTED_AT
from ferry.reconcile.progress import (
    PROGRESS_POLL_SECONDS,
    PROGRESS_POLLS_PER_SECOND,
    JobObservation,
    PodObservation,
    progress_poll_interval,
)
from ferry.reconcile.runs import Decision, reconcile

from .builders import T0, finished_job, observation, spec

HOUR = dt.timedelta(hours=1)
MANY = 10_000
JOB = spec().hourly().batches(2).relative("1h").build()


@pytest.mark.parametrize(("runs", "seconds"), [
    (0, 5.0), (1, 5.0), (100, 5.0), (101, 5.05), (1_000, 50.0), (10_000, 500.0),
])
def test_polls_are_5s_apart_up_to_100_runs_then_spread_by_the_budget(
        runs: int, seconds: float) -> None:
    assert progress_poll_interval(runs) == pytest.approx(seconds)


def test_all_runs_together_stay_within_the_budget() -> None:
    for runs in range(1, 50_001, 7):
        interval = progress_poll_interval(runs)
        assert interval >= PROGRESS_POLL_SECONDS
        assert runs / interval <= PROGRESS_POLLS_PER_SECOND + 1e-9


def running_status() -> ExportJobStatus:
    """contacts.1 started at the 01:00 slot."""
    return reconcile(observation(JOB, T0 + HOUR)).status


def active_job() -> JobObservation:
    pods = [PodObservation(completion_index=i, phase="Running", created_at=T0,
                           progress={"records": 250, "total": 1000})
            for i in range(2)]
    return JobObservation(name="contacts-1", run_number=1, completions=2, active=2, pods=pods)


def pass_at(now: dt.datetime, runs_in_progress: int, jobs: list[JobObservation],
            annotations: dict[str, str] | None = None) -> Decision:
    return reconcile(replace(observation(JOB, now, status=running_status(), jobs=jobs,
                                         annotations=annotations),
                             runs_in_progress=runs_in_progress))


def test_a_run_among_many_is_polled_less_often_and_still_shows_its_progress() -> None:
    now = T0 + HOUR + dt.timedelta(minutes=1)

    alone = pass_at(now, 1, [active_job()])
    crowded = pass_at(now, MANY, [active_job()])

    assert alone.requeue_after == 5.0
    assert crowded.requeue_after == 500.0
    assert crowded.status.progress == alone.status.progress == "25% 500/2k"
    assert crowded.status.eta == alone.status.eta == "3m"


def test_a_new_run_is_first_polled_at_the_base_rate_whatever_the_load() -> None:
    decision = reconcile(replace(observation(JOB, T0 + HOUR), runs_in_progress=MANY))

    assert decision.status.current_run is not None
    assert decision.status.current_run.phase == RunPhase.IN_PROGRESS
    assert decision.create_job is not None
    assert decision.requeue_after == PROGRESS_POLL_SECONDS


def test_the_end_of_a_run_and_a_stop_are_acted_on_in_the_pass_their_event_causes() -> None:
    """The Job's watch event (run ended) and the annotation event (stop) each cause a
    pass; that pass decides, so neither waits for the next poll."""
    now = T0 + HOUR + dt.timedelta(minutes=1)

    ended = pass_at(now, MANY, [finished_job(1, 2)])
    stopped = pass_at(now, MANY, [active_job()],
                      {ANNOTATION_STOP_REQUESTED_AT: "2026-11-22T01:01:00Z"})

    assert ended.status.last_run is not None
    assert ended.status.last_run.phase == RunPhase.SUCCEEDED
    assert stopped.status.last_run is not None
    assert stopped.status.last_run.phase == RunPhase.CANCELED
    assert stopped.delete_jobs == ["contacts-1"]
    assert ended.requeue_after == stopped.requeue_after == (T0 + 2 * HOUR - now).total_seconds()


def test_a_run_overrunning_its_next_slot_is_polled_within_the_budget() -> None:
    """The next slot waits for the run's end, which its Job's event reports: it adds no
    poll of its own beyond the progress budget, and starts in the pass of that event."""
    late = T0 + 2 * HOUR + dt.timedelta(minutes=1)

    crowded = pass_at(late, MANY, [active_job()])
    alone = pass_at(late, 1, [active_job()])
    ended = pass_at(late, MANY, [finished_job(1, 2)])

    assert crowded.requeue_after == 500.0
    assert alone.requeue_after == 5.0
    assert ended.status.last_run is not None and ended.status.last_run.id == "contacts.1"
    run = ended.status.current_run
    assert run is not None
    assert (run.id, run.phase, run.scheduled_for) == (
        "contacts.2", RunPhase.IN_PROGRESS, T0 + 2 * HOUR)
    assert ended.create_job is not None
