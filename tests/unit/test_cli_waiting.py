"""`run --wait`'s reading of status (ferry.cli.waiting) and describe's next step."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

from ferry.api.status import ExportJobStatus, RunStatus
from ferry.cli.jobviews import events_section, next_step
from ferry.cli.waiting import Ended, Waiting, progress_line, wait_state

STAMP = "2026-11-22T12:00:00.000000Z"
T = "2026-11-22T12:00:00Z"


def status(**fields: Any) -> ExportJobStatus:
    return ExportJobStatus.model_validate({"runCounter": 3, **fields})


def run(number: int, trigger: str = "manual", **fields: Any) -> dict[str, Any]:
    return {"id": f"orders.{number}", "number": number, "trigger": trigger, **fields}


HANDLED = {"lastHandled": {"runRequestedAt": STAMP}}


def test_waits_until_the_operator_takes_the_request() -> None:
    old = status(lastHandled={"runRequestedAt": "2026-11-21T00:00:00.000000Z"},
                 lastRun=run(3, phase="Succeeded", finishedAt=T))
    assert wait_state(old, STAMP, 3, None) == Waiting(
        "waiting for the operator to take the run request")
    assert wait_state(None, STAMP, 0, None) == Waiting(
        "waiting for the operator to take the run request")


def test_follows_the_manual_run_not_a_scheduled_one() -> None:
    running = status(**HANDLED, currentRun=run(
        4, phase="InProgress", percent=45, recordsProcessed=4_500_000,
        recordsTotal=10_000_000, etaSeconds=720, queuedAt=T))
    assert wait_state(running, STAMP, 3, None) == Waiting(
        "run orders.4 InProgress 45% 4.5M/10M rows, ETA 12m")
    # A scheduled run that took number 4 is not the request's run; the manual 5 is.
    both = status(**HANDLED, currentRun=run(5, phase="Queued", queuedAt=T,
                                             message="waiting for orders.4"),
                  lastRun=run(4, "schedule", phase="Succeeded", finishedAt=T))
    assert wait_state(both, STAMP, 3, None) == Waiting(
        "run orders.5 Queued: waiting for orders.4")


def test_the_end_of_the_run_is_the_result() -> None:
    ok = wait_state(status(**HANDLED, lastRun=run(4, phase="Succeeded", finishedAt=T,
                                                  message="60 rows in 1 file")), STAMP, 3, None)
    assert isinstance(ok, Ended) and ok.succeeded
    assert ok.line == "run orders.4 Succeeded: 60 rows in 1 file"
    failed = wait_state(status(**HANDLED, lastRun=run(4, phase="Failed", finishedAt=T,
                                                      message="batch 0: boom")), STAMP, 3, None)
    assert isinstance(failed, Ended) and not failed.succeeded
    assert failed.line == "run orders.4 Failed: batch 0: boom"


def test_a_refused_request_ends_with_the_operators_reason() -> None:
    refused = wait_state(status(**HANDLED, lastRun=run(3, phase="Succeeded", finishedAt=T)),
                         STAMP, 3, "run orders.3 is InProgress: request a run again after it ends")
    assert refused == Ended(None, "the operator refused the run request: run orders.3 is "
                                  "InProgress: request a run again after it ends")
    assert not refused.succeeded


def test_progress_line_of_a_queued_run() -> None:
    assert progress_line(RunStatus.model_validate(run(2, phase="Queued", queuedAt=T))) == (
        "run orders.2 Queued")


def test_next_step_says_what_the_argo_cd_health_script_says() -> None:
    failed = status(lastRun=run(4, phase="Failed", finishedAt=T, message="batch 0: boom"))
    assert next_step("orders", failed) == (
        "Last run orders.4 Failed: batch 0: boom (error report: kubectl ferry errors "
        "orders; re-run the failed batches: kubectl ferry retry orders)")
    stalled = status(conditions=[{"type": "Stalled", "status": "True", "reason": "InvalidSpec",
                                  "message": "fix spec.x", "lastTransitionTime": T}],
                     lastRun=run(4, phase="Failed", finishedAt=T))
    assert next_step("orders", stalled) == "InvalidSpec: fix spec.x"
    assert next_step("orders", status(lastRun=run(4, phase="Succeeded", finishedAt=T))) is None
    assert next_step("orders", None) is None


def test_events_section_oldest_first() -> None:
    now = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    events = [SimpleNamespace(type="Warning", reason="Failed", count=1, message="run x.2 Failed",
                              last_timestamp=now - dt.timedelta(minutes=1), event_time=None),
              SimpleNamespace(type="Normal", reason="Started", count=2, message="run x.2",
                              last_timestamp=None, event_time=now - dt.timedelta(minutes=5))]
    assert events_section(events, now) == (
        "Events:\n"
        "  TYPE      REASON    AGE      COUNT   MESSAGE\n"
        "  Normal    Started   5m ago   2       run x.2\n"
        "  Warning   Failed    1m ago   1       run x.2 Failed\n")
    assert events_section([], now) == "Events:\n  <none>\n"
