"""The JobGroup state machine (ferry.reconcile.groups), driven with explicit clocks.

Members are described as the group sees them: their current run and history, as the
ExportJob reconciler would have written them in answer to the group's requests.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ferry.api.common import ConditionStatus
from ferry.api.jobgroup import JobGroupSpec, JobGroupStatus, MemberPhase
from ferry.api.status import GroupRunRecord, HistoryEntry, JobPhase, RunPhase, RunStatus
from ferry.constants import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
)
from ferry.reconcile.groups import (
    GroupDecision,
    GroupObservation,
    MemberView,
    member_requests,
    reconcile_group,
)
from ferry.reconcile.requests import GroupRequest

from .builders import T0

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
MEMBERS = ["lists", "profiles", "events"]


def group_spec(**fields: Any) -> JobGroupSpec:
    return JobGroupSpec.model_validate({"title": "Nightly", "members": MEMBERS, **fields})


def idle(**fields: Any) -> MemberView:
    return MemberView(**fields)


def running(job: str, number: int, trigger: str, phase: RunPhase = RunPhase.IN_PROGRESS,
            **fields: Any) -> MemberView:
    run = RunStatus(id=f"{job}.{number}", number=number, trigger=trigger, phase=phase,
                    started_at=T0, queued_at=T0)
    return MemberView(current_run=run, **fields)


def ended(job: str, number: int, trigger: str, phase: RunPhase,
          message: str = "done") -> MemberView:
    entry = HistoryEntry(id=f"{job}.{number}", number=number, trigger=trigger, phase=phase,
                         started_at=T0, finished_at=T0 + MINUTE, message=message)
    record = GroupRunRecord(group_run=trigger.removeprefix("group:"), run_id=entry.id)
    return MemberView(history=(entry,), group_runs=(record,))


def step(now: dt.datetime, status: JobGroupStatus | None = None,
         members: dict[str, MemberView] | None = None, spec: JobGroupSpec | None = None,
         annotations: dict[str, str] | None = None,
         created_at: dt.datetime = T0 - MINUTE) -> GroupDecision:
    views = {m: idle() for m in MEMBERS} if members is None else members
    return reconcile_group(GroupObservation(
        name="nightly", generation=1, created_at=created_at, annotations=annotations or {},
        spec=spec or group_spec(), status=status or JobGroupStatus(), members=views, now=now))


def run_now(value: str = "1") -> dict[str, str]:
    return {ANNOTATION_RUN_REQUESTED_AT: value}


def phases(status: JobGroupStatus) -> list[str]:
    run = status.current_run
    members = run.members if run else status.last_run.members  # type: ignore[union-attr]
    return [m.phase.value for m in members or []]


def started() -> JobGroupStatus:
    return step(T0, annotations=run_now()).status


def test_run_now_asks_the_first_member_and_the_rest_await_it() -> None:
    decision = step(T0, annotations=run_now())
    status = decision.status
    run = status.current_run
    assert run is not None
    assert (run.id, run.trigger, run.member_index, status.current) == (
        "nightly.1", "manual", 0, "1/3")
    assert phases(status) == ["Queued", "AwaitingDependency", "AwaitingDependency"]
    assert status.phase == JobPhase.QUEUED
    assert (status.member_summary, status.schedule_type) == ("3 jobs", "on demand")
    assert [e.reason for e in decision.events] == ["Started"]
    assert member_requests(status) == [("lists", GroupRequest("nightly.1", T0))]


def test_the_same_run_request_twice_starts_one_group_run() -> None:
    first = started()
    again = step(T0 + MINUTE, status=first, annotations=run_now())
    assert again.status.run_counter == 1
    assert again.events == []


def test_the_group_follows_its_member_run_and_then_moves_on() -> None:
    status = started()
    following = step(T0 + MINUTE, status, {**{m: idle() for m in MEMBERS},
                                           "lists": running("lists", 4, "group:nightly.1")})
    run = following.status.current_run
    assert run is not None and run.members is not None
    assert (run.members[0].run_id, run.members[0].phase) == ("lists.4", MemberPhase.IN_PROGRESS)
    assert following.status.phase == JobPhase.IN_PROGRESS

    moved = step(T0 + 2 * MINUTE, following.status, {
        **{m: idle() for m in MEMBERS},
        "lists": ended("lists", 4, "group:nightly.1", RunPhase.SUCCEEDED)})
    assert phases(moved.status) == ["Succeeded", "Queued", "AwaitingDependency"]
    assert moved.status.current == "2/3"
    assert member_requests(moved.status) == [
        ("profiles", GroupRequest("nightly.1", T0 + 2 * MINUTE))]


def three_outcomes(spec: JobGroupSpec, second: RunPhase) -> GroupDecision:
    """Run the group to its end with ``second`` as the second member's result."""
    status = started()
    views = {"lists": ended("lists", 1, "group:nightly.1", RunPhase.SUCCEEDED),
             "profiles": idle(), "events": idle()}
    status = step(T0 + MINUTE, status, views, spec=spec).status
    views["profiles"] = ended("profiles", 1, "group:nightly.1", second, "batch 0: boom")
    decision = step(T0 + 2 * MINUTE, status, views, spec=spec)
    if decision.status.current_run is None:
        return decision
    views["events"] = ended("events", 1, "group:nightly.1", RunPhase.SUCCEEDED)
    return step(T0 + 3 * MINUTE, decision.status, views, spec=spec)


def test_stop_on_failure_skips_the_rest_and_fails_the_group_run() -> None:
    decision = three_outcomes(group_spec(), RunPhase.FAILED)
    last = decision.status.last_run
    assert last is not None
    assert phases(decision.status) == ["Succeeded", "Failed", "Skipped"]
    assert last.phase == RunPhase.FAILED
    assert last.message == ('stopped at member "profiles": 1 of 3 members succeeded; '
                            "failed: profiles; skipped: events")
    assert last.members is not None and last.members[1].message == "batch 0: boom"
    assert decision.status.phase == JobPhase.FAILED
    assert decision.status.current is None
    assert [h.id for h in decision.status.history or []] == ["nightly.1"]
    assert [e.reason for e in decision.events] == ["Failed"]


def test_a_partial_success_also_stops_the_group_under_stop_on_failure() -> None:
    decision = three_outcomes(group_spec(), RunPhase.PARTIALLY_SUCCEEDED)
    assert phases(decision.status) == ["Succeeded", "PartiallySucceeded", "Skipped"]
    assert decision.status.last_run is not None
    assert decision.status.last_run.phase == RunPhase.FAILED


def test_continue_runs_every_member_and_partially_succeeds() -> None:
    decision = three_outcomes(group_spec(failurePolicy="Continue"), RunPhase.FAILED)
    last = decision.status.last_run
    assert last is not None
    assert phases(decision.status) == ["Succeeded", "Failed", "Succeeded"]
    assert (last.phase, last.message) == (
        RunPhase.PARTIALLY_SUCCEEDED, "2 of 3 members succeeded; failed: profiles")


def test_every_member_succeeding_makes_the_group_run_succeed() -> None:
    decision = three_outcomes(group_spec(), RunPhase.SUCCEEDED)
    assert decision.status.last_run is not None
    assert decision.status.last_run.phase == RunPhase.SUCCEEDED
    assert decision.status.last_run.duration_seconds == 180


def test_a_suspended_member_is_skipped_with_a_message_and_the_group_goes_on() -> None:
    status = started()
    views = {"lists": idle(suspend=True), "profiles": idle(), "events": idle()}
    decision = step(T0 + MINUTE, status, views)
    run = decision.status.current_run
    assert run is not None and run.members is not None
    assert phases(decision.status) == ["Skipped", "Queued", "AwaitingDependency"]
    assert run.members[0].message == 'member "lists" is suspended (spec.suspend: true): skipped'


def test_a_member_busy_with_its_own_run_keeps_the_group_queued() -> None:
    status = started()
    views = {**{m: idle() for m in MEMBERS}, "lists": running("lists", 7, "schedule")}
    decision = step(T0 + MINUTE, status, views)
    run = decision.status.current_run
    assert run is not None and run.members is not None
    assert run.members[0].phase == MemberPhase.QUEUED
    assert run.members[0].message == "waiting for the member's run lists.7 (schedule) to end"
    assert decision.status.phase == JobPhase.QUEUED
    assert run.message == ('member 1/3 "lists" is Queued: waiting for the member\'s run '
                           "lists.7 (schedule) to end")


def test_a_missing_member_makes_the_group_not_ready_and_refuses_runs() -> None:
    views = {"lists": idle(), "events": idle()}
    decision = step(T0, members=views, annotations=run_now())
    ready = next(c for c in decision.status.conditions or [] if c.type == "Ready")
    assert (ready.status, ready.reason, ready.message) == (
        ConditionStatus.FALSE, "MemberNotFound", 'member "profiles" not found')
    stalled = next(c for c in decision.status.conditions or [] if c.type == "Stalled")
    assert (stalled.status, stalled.reason, stalled.message) == (
        ConditionStatus.TRUE, "MemberNotFound", 'member "profiles" not found')
    assert decision.status.current_run is None
    assert decision.status.member_summary == "3 jobs, 1 missing"
    assert [(e.reason, e.message) for e in decision.events] == [
        ("RunRequestRejected", 'member "profiles" not found: no group run started')]


def test_a_member_deleted_during_the_group_run_fails_it_cleanly() -> None:
    status = started()
    decision = step(T0 + MINUTE, status, {"profiles": idle(), "events": idle()})
    last = decision.status.last_run
    assert last is not None and last.members is not None
    assert phases(decision.status) == ["Failed", "Skipped", "Skipped"]
    assert last.members[0].message == 'member "lists" not found'
    assert last.phase == RunPhase.FAILED


def test_stop_cancels_the_active_member_and_skips_the_rest() -> None:
    status = step(T0 + MINUTE, started(), {
        **{m: idle() for m in MEMBERS}, "lists": running("lists", 2, "group:nightly.1")}).status
    decision = step(T0 + 2 * MINUTE, status,
                    {**{m: idle() for m in MEMBERS},
                     "lists": running("lists", 2, "group:nightly.1")},
                    annotations={ANNOTATION_STOP_REQUESTED_AT: "s1"})
    assert decision.status.last_run is not None
    assert decision.status.last_run.phase == RunPhase.CANCELED
    assert phases(decision.status) == ["Canceled", "Skipped", "Skipped"]
    assert member_requests(decision.status) == [
        ("lists", GroupRequest("nightly.1", T0, canceled=True))]


def test_retry_reruns_from_the_first_member_that_did_not_succeed() -> None:
    failed = three_outcomes(group_spec(), RunPhase.FAILED).status
    decision = step(T0 + 5 * MINUTE, failed, annotations={ANNOTATION_RETRY_REQUESTED_AT: "r1"})
    run = decision.status.current_run
    assert run is not None and run.members is not None
    assert (run.id, run.trigger, run.retry_of, run.member_index) == (
        "nightly.2", "retry", "nightly.1", 1)
    assert phases(decision.status) == ["Succeeded", "Queued", "AwaitingDependency"]
    assert (run.members[0].run_id, run.members[0].message) == (
        "lists.1", "succeeded in group run nightly.1")


def test_retry_of_a_successful_group_run_is_rejected() -> None:
    done = three_outcomes(group_spec(), RunPhase.SUCCEEDED).status
    decision = step(T0 + 5 * MINUTE, done, annotations={ANNOTATION_RETRY_REQUESTED_AT: "r1"})
    assert decision.status.current_run is None
    assert [(e.reason, e.message) for e in decision.events] == [
        ("RetryRejected", "nothing to retry: the last group run succeeded")]


def test_a_member_with_nothing_to_export_counts_as_succeeded() -> None:
    record = GroupRunRecord(group_run="nightly.1", message="nothing to export")
    decision = step(T0 + MINUTE, started(), {**{m: idle() for m in MEMBERS},
                                             "lists": MemberView(group_runs=(record,))})
    assert phases(decision.status)[:2] == ["Succeeded", "Queued"]


def test_a_result_trimmed_from_the_members_history_fails_the_member_with_advice() -> None:
    record = GroupRunRecord(group_run="nightly.1", run_id="lists.3")
    decision = step(T0 + MINUTE, started(), {**{m: idle() for m in MEMBERS},
                                             "lists": MemberView(group_runs=(record,))})
    assert decision.status.last_run is not None and decision.status.last_run.members
    assert decision.status.last_run.members[0].message == (
        "the result of run lists.3 is no longer in the member's history: raise its "
        "spec.historyLimit")


def test_a_scheduled_group_starts_at_its_slot_and_shows_the_next_one() -> None:
    spec = group_spec(schedule={"hourly": {"every": 2, "minute": 30}})
    before = step(T0, spec=spec)
    assert before.status.next_run_at == T0 + dt.timedelta(minutes=30)
    assert before.status.phase == JobPhase.SCHEDULED
    assert before.requeue_after == 1800

    slot = T0 + dt.timedelta(minutes=30)
    decision = step(slot, before.status, spec=spec)
    run = decision.status.current_run
    assert run is not None
    assert (run.trigger, run.scheduled_for) == ("schedule", slot)
    assert decision.status.next_run_at == slot + dt.timedelta(hours=2)
    assert decision.status.schedule_summary == "every 2h at :30 UTC"


def test_a_suspended_group_records_its_slots_as_missed() -> None:
    spec = group_spec(schedule={"hourly": {"every": 1}}, suspend=True)
    decision = step(T0 + dt.timedelta(hours=1), spec=spec)
    assert decision.status.current_run is None
    assert [(m.scheduled_for, m.reason) for m in decision.status.missed_runs or []] == [
        (T0 + dt.timedelta(hours=1), "Suspended"), (T0, "Suspended")]
    assert decision.status.phase == JobPhase.SUSPENDED


def test_history_is_bounded_by_history_limit() -> None:
    spec = group_spec(historyLimit=1, members=["lists"])
    status = JobGroupStatus()
    for n in (1, 2):
        status = step(T0 + n * MINUTE, status, {"lists": idle()}, spec=spec,
                      annotations=run_now(str(n))).status
        status = step(T0 + n * MINUTE, status,
                      {"lists": ended("lists", n, f"group:nightly.{n}", RunPhase.SUCCEEDED)},
                      spec=spec).status
    assert [h.id for h in status.history or []] == ["nightly.2"]
    assert status.last_run is not None and status.last_run.id == "nightly.2"


def test_the_creator_annotation_is_copied_into_created_by_once() -> None:
    decision = step(T0, annotations={ANNOTATION_CREATED_BY: "alice"})
    assert decision.status.created_by == "alice"
    later = step(T0 + MINUTE, decision.status, annotations={ANNOTATION_CREATED_BY: "mallory"})
    assert later.status.created_by == "alice"
    assert step(T0).status.created_by is None
    long = step(T0, annotations={ANNOTATION_CREATED_BY: "x" * 300}).status.created_by
    assert long == "x" * 256


def test_an_expired_group_deletes_itself_once_no_group_run_is_active() -> None:
    spec = group_spec(expiresAt=(T0 + 30 * MINUTE).isoformat())
    before = step(T0, spec=spec)
    assert not before.delete_self
    assert before.requeue_after == 1800
    after = step(T0 + 30 * MINUTE, before.status, spec=spec)
    assert after.delete_self
    assert [(e.reason, e.message) for e in after.events] == [
        ("Expired", f"spec.expiresAt {(T0 + 30 * MINUTE).isoformat()} has passed")]


def test_an_expired_group_waits_for_its_group_run_to_end() -> None:
    spec = group_spec(expiresAt=(T0 + 30 * MINUTE).isoformat())
    status = step(T0, annotations=run_now(), spec=spec).status
    views = {**{m: idle() for m in MEMBERS}, "lists": running("lists", 1, "group:nightly.1")}
    waiting = step(T0 + HOUR, status, views, spec=spec)
    assert not waiting.delete_self
    assert waiting.status.current_run is not None


def test_an_expired_group_starts_no_run_even_when_due() -> None:
    """Past expiresAt no group run starts (as for ExportJobs): a slot that came while the
    last group run was active must not keep a frequently scheduled group alive."""
    spec = group_spec(schedule={"hourly": {"every": 1}}, expiresAt=T0.isoformat())
    decision = step(T0 + HOUR, spec=spec, annotations=run_now())
    assert decision.status.current_run is None
    assert decision.delete_self
