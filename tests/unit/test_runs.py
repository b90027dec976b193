"""The ExportJob state machine, driven with explicit clocks and observations."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

from ferry.api.status import RunPhase
from ferry.constants import (
    ANNOTATION_BACKFILL,
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
    LABEL_JOB,
    LABEL_RUN,
)
from ferry.reconcile.progress import JobObservation, PodObservation
from ferry.reconcile.runs import QueueView, reconcile

from .builders import T0, finished_job, observation, spec

HOUR = dt.timedelta(hours=1)


def plan_of(manifest: dict[str, object]) -> dict[str, object]:
    env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]  # type: ignore[index]
    return json.loads(next(e["value"] for e in env if e["name"] == "FERRY_PLAN"))  # type: ignore[no-any-return]


def test_a_due_slot_starts_a_run_with_one_indexed_job() -> None:
    job = spec().hourly(every=4, minute=15).relative("4h").batches(4).build()
    slot = T0 + dt.timedelta(hours=4, minutes=15)

    decision = reconcile(observation(job, slot + dt.timedelta(seconds=3)))

    run = decision.status.current_run
    assert run is not None
    assert (run.id, run.phase, run.trigger, run.scheduled_for) == (
        "contacts.1", RunPhase.IN_PROGRESS, "schedule", slot)
    assert (run.window.from_, run.window.to) == (slot - 4 * HOUR, slot)  # type: ignore[union-attr]
    manifest = decision.create_job
    assert manifest is not None
    assert manifest["metadata"]["name"] == "contacts-1"
    assert manifest["metadata"]["labels"] == {LABEL_JOB: "contacts", LABEL_RUN: "1"}
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert manifest["spec"]["completionMode"] == "Indexed"
    assert manifest["spec"]["completions"] == 4
    assert manifest["spec"]["backoffLimitPerIndex"] == 1
    slices = plan_of(manifest)["slices"]
    assert [s["window"]["from"] for s in slices] == [  # type: ignore[index]
        "2026-11-22T00:15:00Z", "2026-11-22T01:15:00Z", "2026-11-22T02:15:00Z",
        "2026-11-22T03:15:00Z"]
    assert decision.status.last_scheduled_slot == slot
    assert decision.status.next_run_at == slot + 4 * HOUR
    assert [e.reason for e in decision.events] == ["Started"]


def test_a_late_start_never_shifts_the_data_window() -> None:
    job = spec().hourly().relative("1h").build()
    decision = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=20)))
    run = decision.status.current_run
    assert run is not None
    assert (run.window.from_, run.window.to) == (T0, T0 + HOUR)  # type: ignore[union-attr]


def test_secrets_reach_the_worker_only_as_secret_references() -> None:
    job = spec().hourly().build()
    manifest = reconcile(observation(job, T0 + HOUR)).create_job
    assert manifest is not None
    env = {e["name"]: e for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FERRY_SOURCE_DSN"]["valueFrom"] == {
        "secretKeyRef": {"name": "warehouse-db", "key": "dsn"}}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "bucket", "key": "secret"}}
    assert "value" not in env["FERRY_SOURCE_DSN"]


def in_progress(job_spec: object, now: dt.datetime, batches: int = 1) -> object:
    return reconcile(observation(job_spec, now)).status  # type: ignore[arg-type]


def test_a_finished_job_becomes_a_history_entry() -> None:
    job = spec().hourly().batches(2).relative("1h").build()
    running = reconcile(observation(job, T0 + HOUR)).status

    decision = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=5), status=running,
                                     jobs=[finished_job(1, 2)]))

    status = decision.status
    assert status.current_run is None
    assert status.last_run is not None
    assert (status.last_run.id, status.last_run.phase, status.last_run.records) == (
        "contacts.1", RunPhase.SUCCEEDED, 20)
    assert status.last_run.duration_seconds == 300
    assert status.last_run.manifest == "s3://exports/ferry/contacts/contacts.1/_manifests/"
    assert status.history == [status.last_run]
    assert status.phase == "Succeeded"
    assert decision.key_released
    assert [e.reason for e in decision.events] == ["Succeeded"]


def test_some_failed_batches_make_a_partial_success_that_retry_repairs() -> None:
    job = spec().hourly().batches(3).relative("1h").build()
    running = reconcile(observation(job, T0 + HOUR)).status
    later = T0 + HOUR + dt.timedelta(minutes=5)
    finished = reconcile(observation(job, later, status=running,
                                     jobs=[finished_job(1, 3, failed={1})])).status
    assert finished.last_run is not None
    assert finished.last_run.phase == RunPhase.PARTIALLY_SUCCEEDED
    assert finished.last_run.failed_batches == [1]
    assert "batch 1: relation \"x\" does not exist" in (finished.last_run.message or "")

    retry = reconcile(observation(job, later, status=finished,
                                  jobs=[finished_job(1, 3, failed={1})],
                                  annotations={ANNOTATION_RETRY_REQUESTED_AT: "t1"}))

    run = retry.status.current_run
    assert run is not None
    assert (run.id, run.trigger, run.retry_of) == ("contacts.2", "retry", "contacts.1")
    assert retry.create_job is not None
    plan = plan_of(retry.create_job)
    assert plan["run"] == "contacts.1"
    assert [s["batchIndex"] for s in plan["slices"]] == [1]  # type: ignore[index]
    assert plan["batchCount"] == 3, "a retry's batches keep the run's batch count"
    assert retry.create_job["spec"]["completions"] == 1


def test_stop_cancels_the_run_and_deletes_its_job_once() -> None:
    job = spec().hourly().build()
    running = reconcile(observation(job, T0 + HOUR)).status
    active = JobObservation(name="contacts-1", run_number=1, completions=1, active=1)
    stop = {ANNOTATION_STOP_REQUESTED_AT: "2026-11-22T01:01:00Z"}

    decision = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=1), status=running,
                                     jobs=[active], annotations=stop))

    assert decision.delete_jobs == ["contacts-1"]
    assert decision.status.last_run is not None
    assert decision.status.last_run.phase == RunPhase.CANCELED
    assert decision.status.current_run is None
    again = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=2),
                                  status=decision.status, annotations=stop))
    assert again.delete_jobs == []
    assert again.events == []


def test_retry_of_a_canceled_run_reruns_the_batches_that_did_not_commit() -> None:
    job = spec().hourly().batches(4).relative("1h").build()
    running = reconcile(observation(job, T0 + HOUR)).status
    half_done = JobObservation(
        name="contacts-1", run_number=1, completions=4, active=2,
        completed_indexes=frozenset({0, 2}),
        pods=[PodObservation(completion_index=i, phase="Succeeded" if i in (0, 2) else "Running",
                             created_at=T0) for i in range(4)])
    stopped = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=1), status=running,
                                    jobs=[half_done],
                                    annotations={ANNOTATION_STOP_REQUESTED_AT: "s1"})).status
    assert stopped.last_run is not None
    assert stopped.last_run.phase == RunPhase.CANCELED
    assert stopped.last_run.canceled_batches == [1, 3]
    assert stopped.last_run.failed_batches is None

    retry = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=2), status=stopped,
                                  annotations={ANNOTATION_STOP_REQUESTED_AT: "s1",
                                               ANNOTATION_RETRY_REQUESTED_AT: "r1"}))

    run = retry.status.current_run
    assert run is not None
    assert (run.id, run.trigger, run.retry_of, run.window) == (
        "contacts.2", "retry", "contacts.1", stopped.last_run.window)
    assert retry.create_job is not None
    plan = plan_of(retry.create_job)
    assert plan["run"] == "contacts.1", "a retry writes into the canceled run's folder"
    assert [s["batchIndex"] for s in plan["slices"]] == [1, 3]  # type: ignore[index]
    assert plan["batchCount"] == 4
    assert plan["reuseCommittedSince"] == "2026-11-22T01:00:00Z", (
        "a batch that committed after the stop is kept, not exported twice")


def test_retry_of_a_run_canceled_while_queued_runs_every_batch() -> None:
    job = spec().hourly().batches(3).relative("1h").build()
    queued = reconcile(observation(job, T0 + HOUR, queue=QueueView(holder="other.1"))).status
    assert queued.current_run is not None
    assert queued.current_run.phase == RunPhase.QUEUED
    stopped = reconcile(observation(job, T0 + HOUR, status=queued,
                                    queue=QueueView(holder="other.1"),
                                    annotations={ANNOTATION_STOP_REQUESTED_AT: "s1"})).status
    assert stopped.last_run is not None
    assert stopped.last_run.phase == RunPhase.CANCELED

    retry = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=1), status=stopped,
                                  annotations={ANNOTATION_STOP_REQUESTED_AT: "s1",
                                               ANNOTATION_RETRY_REQUESTED_AT: "r1"}))

    assert retry.create_job is not None
    assert [s["batchIndex"] for s in plan_of(retry.create_job)["slices"]] == [0, 1, 2]  # type: ignore[index]


def test_retry_of_a_succeeded_run_is_rejected_naming_it() -> None:
    job = spec().hourly().relative("1h").build()
    running = reconcile(observation(job, T0 + HOUR)).status
    done = reconcile(observation(job, T0 + HOUR, status=running,
                                 jobs=[finished_job(1, 1)])).status
    retry = reconcile(observation(job, T0 + HOUR, status=done,
                                  annotations={ANNOTATION_RETRY_REQUESTED_AT: "r1"}))
    assert retry.status.current_run is None
    assert [(e.reason, e.message) for e in retry.events] == [
        ("RetryRejected", "nothing to retry: run contacts.1 Succeeded")]


def test_a_job_whose_schedule_cannot_work_shows_phase_invalid_not_drafted() -> None:
    job = spec().set("schedule", {"daily": {"at": "02:00"}, "timeZone": "Mars/Olympus"}).build()
    status = reconcile(observation(job, T0)).status
    assert status.phase == "Invalid"
    ready = next(c for c in status.conditions or [] if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "InvalidTimeZone")
    fixed = spec().set("schedule", {"daily": {"at": "02:00"}, "timeZone": "Europe/Berlin"})
    assert reconcile(observation(fixed.build(), T0, status=status)).status.phase == "Scheduled"


def test_a_spec_error_is_stalled_for_kstatus_until_the_spec_is_fixed() -> None:
    job = spec().set("schedule", {"daily": {"at": "02:00"}, "timeZone": "Mars/Olympus"}).build()
    status = reconcile(observation(job, T0)).status
    stalled = next(c for c in status.conditions or [] if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "InvalidTimeZone")
    assert "Mars/Olympus" in stalled.message
    fixed = spec().set("schedule", {"daily": {"at": "02:00"}, "timeZone": "Europe/Berlin"})
    again = reconcile(observation(fixed.build(), T0, status=status)).status
    stalled = next(c for c in again.conditions or [] if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("False", "Progressing")


def test_run_now_while_a_run_is_active_is_rejected_with_an_event() -> None:
    job = spec().hourly().build()
    running = reconcile(observation(job, T0 + HOUR)).status
    active = JobObservation(name="contacts-1", run_number=1, completions=1, active=1)
    decision = reconcile(observation(job, T0 + HOUR, status=running, jobs=[active],
                                     annotations={ANNOTATION_RUN_REQUESTED_AT: "now"}))
    assert [e.reason for e in decision.events] == ["RunRequestRejected"]
    assert decision.status.current_run is not None
    assert decision.status.current_run.id == "contacts.1"
    assert decision.status.last_handled is not None
    assert decision.status.last_handled.run_requested_at == "now"


def test_run_now_does_not_move_the_schedule() -> None:
    job = spec().hourly(every=6).build()
    now = T0 + dt.timedelta(hours=2)
    created = T0 + dt.timedelta(minutes=30)
    first = reconcile(observation(job, now - HOUR, created_at=created)).status
    assert first.current_run is None
    decision = reconcile(observation(job, now, status=first, created_at=created,
                                     annotations={ANNOTATION_RUN_REQUESTED_AT: "x"}))
    run = decision.status.current_run
    assert run is not None
    assert (run.trigger, run.scheduled_for) == ("manual", now)
    assert decision.status.next_run_at == T0 + dt.timedelta(hours=6)


def test_a_run_waits_in_the_queue_while_another_job_holds_the_source() -> None:
    job = spec().hourly().build()
    decision = reconcile(observation(job, T0 + HOUR, queue=QueueView(holder="orders.7")))
    run = decision.status.current_run
    assert run is not None
    assert (run.phase, run.blocked_by, run.queue_position) == (RunPhase.QUEUED, "orders.7", 1)
    assert run.message == "waiting for run orders.7 on the same data source"
    assert decision.create_job is None
    assert decision.status.phase == "Queued"

    freed = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=3),
                                  status=decision.status))
    assert freed.status.current_run is not None
    assert freed.status.current_run.phase == RunPhase.IN_PROGRESS
    assert freed.create_job is not None


def test_a_queued_run_is_announced_once_however_often_the_queue_moves() -> None:
    """Each run ahead that ends changes the position and the holder: an event each time
    made a 200-job queue on one source post ~20,000 Queued events (issue 8, item 9)."""
    job = spec().hourly().build()
    decision = reconcile(observation(job, T0 + HOUR, queue=QueueView(holder="a.1", ahead=5)))
    assert [e.reason for e in decision.events] == ["Queued"]
    moved = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=1),
                                  status=decision.status,
                                  queue=QueueView(holder="b.1", ahead=4)))
    run = moved.status.current_run
    assert run is not None
    assert (run.blocked_by, run.queue_position) == ("b.1", 5)
    assert moved.events == []


def test_forbid_policy_drops_the_run_instead_of_queueing() -> None:
    job = spec().hourly().set("concurrency", {"policy": "Forbid"}).build()
    decision = reconcile(observation(job, T0 + HOUR, queue=QueueView(holder="orders.7")))
    assert decision.status.current_run is None
    assert [e.reason for e in decision.events] == ["ConcurrencyForbidden"]


def test_a_lost_job_is_recreated_under_the_same_name_after_a_restart() -> None:
    job = spec().hourly().build()
    running = reconcile(observation(job, T0 + HOUR)).status
    decision = reconcile(observation(job, T0 + HOUR + dt.timedelta(seconds=30), status=running))
    assert decision.create_job is not None
    assert decision.create_job["metadata"]["name"] == "contacts-1"
    assert decision.status.current_run is not None
    assert decision.status.current_run.id == "contacts.1"
    assert decision.status.run_counter == 1


def test_progress_percent_and_eta_come_from_the_pods() -> None:
    job = spec().hourly().batches(2).relative("1h").build()
    running = reconcile(observation(job, T0 + HOUR)).status
    pods = [PodObservation(completion_index=i, phase="Running", created_at=T0,
                           progress={"records": 250, "total": 1000, "bytes": 10, "files": 1})
            for i in range(2)]
    active = JobObservation(name="contacts-1", run_number=1, completions=2, active=2, pods=pods)

    decision = reconcile(observation(job, T0 + HOUR + dt.timedelta(seconds=60), status=running,
                                     jobs=[active]))

    run = decision.status.current_run
    assert run is not None
    assert (run.records_processed, run.records_total, run.percent, run.eta_seconds) == (
        500, 2000, 25, 180)
    assert decision.status.progress == "25% 500/2k"
    assert decision.status.eta == "3m"
    assert run.records_per_second == 8, "500 rows in 60 s, the rate the ETA extrapolates"
    assert run.batches is not None
    assert (run.batches.running, run.batches.pending) == (2, 0)


def test_a_one_time_job_runs_once_and_stays_suspended() -> None:
    job = spec().once().build()
    decision = reconcile(observation(job, T0))
    assert decision.status.current_run is not None
    assert decision.status.one_time_started_at == T0
    finished = reconcile(observation(job, T0 + HOUR, status=decision.status,
                                     jobs=[finished_job(1, 1)])).status
    assert finished.current_run is None
    again = reconcile(observation(job, T0 + 2 * HOUR, status=finished))
    assert again.status.current_run is None
    suspended = next(c for c in again.status.conditions or [] if c.type == "Suspended")
    assert (suspended.status, suspended.reason) == ("True", "OneTimeStarted")


def test_slots_passing_while_suspended_are_recorded_not_run() -> None:
    job = spec().hourly().set("suspend", True).build()
    decision = reconcile(observation(job, T0 + HOUR))
    assert decision.status.current_run is None
    assert decision.create_job is None
    assert [(m.scheduled_for, m.reason) for m in decision.status.missed_runs or []] == [
        (T0 + HOUR, "Suspended"), (T0, "Suspended")]
    assert decision.status.phase == "Suspended"
    resumed = spec().hourly().build()
    after = reconcile(observation(resumed, T0 + HOUR + dt.timedelta(minutes=1),
                                  status=decision.status))
    assert after.status.current_run is None


def test_history_is_bounded_by_history_limit() -> None:
    job = spec().set("historyLimit", 2).build()
    status = None
    for n in range(1, 5):
        now = T0 + n * HOUR
        started = reconcile(observation(job, now, status=status,
                                        annotations={ANNOTATION_RUN_REQUESTED_AT: str(n)})).status
        status = reconcile(observation(job, now, status=started,
                                       annotations={ANNOTATION_RUN_REQUESTED_AT: str(n)},
                                       jobs=[finished_job(n, 1)])).status
    assert status is not None
    assert [h.id for h in status.history or []] == ["contacts.4", "contacts.3"]


def test_incremental_runs_tile_the_timeline() -> None:
    job = spec().hourly().incremental("2026-11-21T00:00:00Z").build()
    first = reconcile(observation(job, T0 + HOUR)).status
    done = reconcile(observation(job, T0 + HOUR, status=first, jobs=[finished_job(1, 1)])).status
    second = reconcile(observation(job, T0 + 2 * HOUR, status=done)).status
    assert first.current_run is not None
    assert second.current_run is not None
    assert first.current_run.window is not None
    assert second.current_run.window is not None
    assert first.current_run.window.to == second.current_run.window.from_ == T0 + HOUR
    assert done.last_successful_window_end == T0 + HOUR


def test_an_expired_job_deletes_itself_once_no_run_is_active() -> None:
    job = spec().set("expiresAt", "2026-11-22T00:30:00Z").build()
    assert reconcile(observation(job, T0)).delete_self is False
    assert reconcile(observation(job, T0 + HOUR)).delete_self is True


def test_an_orphaned_active_job_is_deleted() -> None:
    job = spec().build()
    orphan = JobObservation(name="contacts-3", run_number=3, completions=1, active=1)
    decision = reconcile(observation(job, T0, jobs=[orphan]))
    assert decision.delete_jobs == ["contacts-3"]


def test_deletion_waits_for_the_run_in_progress() -> None:
    job = spec().hourly().build()
    running = reconcile(observation(job, T0 + HOUR)).status
    active = JobObservation(name="contacts-1", run_number=1, completions=1, active=1)
    blocked = reconcile(replace(observation(job, T0 + HOUR, status=running, jobs=[active]),
                                deleting=True))
    assert not blocked.release_finalizer
    assert [e.reason for e in blocked.events] == ["DeletionBlocked"]
    assert blocked.status.current_run is not None
    assert blocked.status.current_run.message == (
        "deletion waits for run contacts.1 to end; to delete now, stop it: "
        "kubectl ferry stop contacts")
    done = reconcile(replace(observation(job, T0 + HOUR, status=blocked.status,
                                         jobs=[finished_job(1, 1)]), deleting=True))
    assert done.release_finalizer
    assert done.status.last_run is not None
    assert done.status.last_run.phase == RunPhase.SUCCEEDED


def test_deletion_does_not_wait_for_a_job_that_is_gone() -> None:
    job = spec().hourly().build()
    running = reconcile(observation(job, T0 + HOUR)).status
    decision = reconcile(replace(observation(job, T0 + HOUR, status=running), deleting=True))
    assert decision.create_job is None
    assert decision.release_finalizer
    assert decision.status.last_run is not None
    assert decision.status.last_run.phase == RunPhase.FAILED


def test_an_expired_job_starts_no_run_even_when_due() -> None:
    job = spec().once().set("expiresAt", "2026-11-21T00:00:00Z").build()
    decision = reconcile(observation(job, T0))
    assert decision.status.current_run is None
    assert decision.create_job is None
    assert decision.delete_self


def test_a_forbidden_scheduled_run_is_recorded_as_missed() -> None:
    job = spec().hourly().set("concurrency", {"policy": "Forbid"}).build()
    decision = reconcile(observation(job, T0 + HOUR, queue=QueueView(holder="orders.7"),
                                     created_at=T0 + dt.timedelta(minutes=30)))
    assert [(m.scheduled_for, m.reason, m.message)
            for m in decision.status.missed_runs or []] == [
        (T0 + HOUR, "ConcurrencyForbidden", "orders.7 held the data source")]


def test_a_backfill_runs_each_past_slot_one_after_another() -> None:
    job = spec().hourly(every=6).relative("6h").build()
    request = {ANNOTATION_BACKFILL: "2026-11-20T00:00:00Z/2026-11-21T00:00:00Z"}
    now = T0 + dt.timedelta(minutes=30)
    created = T0 + dt.timedelta(minutes=10)
    first = reconcile(observation(job, now, annotations=request, created_at=created))
    assert [e.reason for e in first.events] == ["BackfillAccepted", "Started"]
    assert first.status.backfill is not None
    assert (first.status.backfill.total, first.status.backfill.started) == (4, 1)
    slots = []
    status = first.status
    for n in range(1, 5):
        run = status.current_run
        assert run is not None
        assert run.trigger == "backfill"
        slots.append(run.scheduled_for)
        assert run.window is not None
        assert run.window.to == run.scheduled_for
        status = reconcile(observation(job, now, status=status, annotations=request,
                                       created_at=created, jobs=[finished_job(n, 1)])).status
    assert slots == [dt.datetime(2026, 11, 20, h, tzinfo=dt.UTC) for h in (0, 6, 12, 18)]
    assert status.current_run is None
    assert status.last_successful_window_end is None, "backfill never moves incremental state"


def test_a_malformed_backfill_is_rejected_with_the_expected_form() -> None:
    job = spec().hourly().build()
    decision = reconcile(observation(job, T0 + dt.timedelta(minutes=5),
                                     annotations={ANNOTATION_BACKFILL: "yesterday"},
                                     created_at=T0 + dt.timedelta(minutes=1)))
    assert [e.reason for e in decision.events] == ["BackfillRejected"]
    assert decision.events[0].message.startswith('ferry.dev/backfill "yesterday": ')
    assert decision.status.backfill is None


def test_batches_on_a_key_column_are_key_ranges_the_worker_plans_over_the_window() -> None:
    job = spec().relative("1h").batches(3).set("source.keyColumn", "id").build()
    decision = reconcile(observation(job, T0, annotations={ANNOTATION_RUN_REQUESTED_AT: "1"}))
    assert decision.create_job is not None
    slices = plan_of(decision.create_job)["slices"]
    assert [s["keySplit"] for s in slices] == [  # type: ignore[index]
        {"column": "id", "index": i, "count": 3} for i in range(3)]
    assert {s["window"]["from"] for s in slices} == {"2026-11-21T23:00:00Z"}  # type: ignore[index]


def test_a_run_without_progress_for_stall_after_is_stalled() -> None:
    job = spec().hourly().build()
    running = reconcile(observation(job, T0 + HOUR)).status
    pods = [PodObservation(completion_index=0, phase="Running", created_at=T0,
                           progress={"records": 10, "total": 1000})]
    active = JobObservation(name="contacts-1", run_number=1, completions=1, active=1, pods=pods)
    moving = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=1), status=running,
                                   jobs=[active])).status
    assert moving.current_run is not None
    assert moving.current_run.progressed_at == T0 + HOUR + dt.timedelta(minutes=1)
    still = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=10), status=moving,
                                  jobs=[active])).status
    assert next(c for c in still.conditions or [] if c.type == "Stalled").status == "False"
    stuck = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=17), status=still,
                                  jobs=[active])).status
    stalled = next(c for c in stuck.conditions or [] if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "NoProgress")
    assert stalled.message == (
        "run contacts.1 has made no progress for 16m (10 records): check the worker logs "
        "(kubectl ferry logs contacts) and the source")


def waiting_job(message: str) -> JobObservation:
    pod = PodObservation(completion_index=0, phase="Pending", created_at=T0,
                         waiting_reason="CreateContainerConfigError", waiting_message=message)
    return JobObservation(name="contacts-1", run_number=1, completions=1, pods=[pod])


def test_a_missing_secret_or_key_is_ready_false_secret_not_found() -> None:
    job = spec().hourly().build()
    running = reconcile(observation(job, T0 + HOUR)).status
    for kubelet_says in ('secret "warehouse-db" not found',
                         "couldn't find key dsn in Secret team-a/warehouse-db"):
        status = reconcile(observation(job, T0 + HOUR + dt.timedelta(seconds=30),
                                       status=running, jobs=[waiting_job(kubelet_says)])).status
        ready = next(c for c in status.conditions or [] if c.type == "Ready")
        stalled = next(c for c in status.conditions or [] if c.type == "Stalled")
        assert (ready.status, ready.reason, stalled.status, stalled.reason) == (
            "False", "SecretNotFound", "True", "SecretNotFound")
        assert ready.message == (
            f"batch 0 cannot start: CreateContainerConfigError: {kubelet_says}; create it in "
            "namespace team-a (or fix the reference in the spec): the pods start once it exists")


def test_a_pod_stuck_for_another_reason_is_worker_cannot_start() -> None:
    job = spec().hourly().build()
    running = reconcile(observation(job, T0 + HOUR)).status
    status = reconcile(observation(job, T0 + HOUR + dt.timedelta(seconds=30), status=running,
                                   jobs=[waiting_job('configmap "x" not found')])).status
    ready = next(c for c in status.conditions or [] if c.type == "Ready")
    assert (ready.reason, ready.message) == (
        "WorkerCannotStart", 'batch 0 cannot start: CreateContainerConfigError: configmap "x" '
        "not found")
