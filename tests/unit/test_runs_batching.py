"""How many batches a run gets, and why a retry keeps the split of the run it repairs."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ferry.api.exportjob import ExportJobSpec
from ferry.api.status import ExportJobStatus, RunPhase
from ferry.constants import ANNOTATION_RETRY_REQUESTED_AT
from ferry.reconcile.runs import Decision, reconcile

from .builders import T0, finished_job, observation, spec

HOUR = dt.timedelta(hours=1)


def plan_of(decision: Decision) -> dict[str, Any]:
    assert decision.create_job is not None
    env = decision.create_job["spec"]["template"]["spec"]["containers"][0]["env"]
    return json.loads(next(e["value"] for e in env if e["name"] == "FERRY_PLAN"))  # type: ignore[no-any-return]


def rows_per_batch(rows: int) -> ExportJobSpec:
    return (spec().hourly().relative("1h").set("source.keyColumn", "id")
            .set("batching", {"rowsPerBatch": rows}).build())


def finish(job: ExportJobSpec, status: ExportJobStatus, number: int, completions: int,
           records: int, at: dt.datetime, failed: set[int] | None = None) -> ExportJobStatus:
    return reconcile(observation(job, at, status=status, jobs=[
        finished_job(number, completions, failed=failed, records=records)])).status


def test_rows_per_batch_runs_one_batch_until_a_run_has_counted_the_rows() -> None:
    job = rows_per_batch(10)

    first = reconcile(observation(job, T0 + HOUR))

    assert first.status.current_run is not None
    assert first.status.current_run.batches_planned == 1
    assert first.create_job is not None and first.create_job["spec"]["completions"] == 1
    assert [e.message for e in first.events] == [
        "run contacts.1 started (schedule); 1 batch: rowsPerBatch splits by the previous "
        "successful run's records, and there is none yet"]


def test_rows_per_batch_splits_by_the_previous_successful_runs_records() -> None:
    job = rows_per_batch(10)
    running = reconcile(observation(job, T0 + HOUR)).status
    done = finish(job, running, 1, 1, records=25, at=T0 + HOUR + dt.timedelta(minutes=5))
    assert done.last_run is not None
    assert (done.last_run.records, done.last_run.batches_planned) == (25, 1)

    second = reconcile(observation(job, T0 + 2 * HOUR, status=done))

    assert second.create_job is not None and second.create_job["spec"]["completions"] == 3
    plan = plan_of(second)
    assert plan["batchCount"] == 3
    assert [s["keySplit"] for s in plan["slices"]] == [
        {"column": "id", "index": i, "count": 3} for i in range(3)]
    assert [e.message for e in second.events] == [
        "run contacts.2 started (schedule); 3 batch(es) of rowsPerBatch 10 for the previous "
        "successful run's 25 records; batches are key ranges of id, planned by the first "
        "batch to start (hash partitions where the table cannot be sampled or the key has "
        "no order)"]


def test_rows_per_batch_ignores_failed_runs_and_retries_when_estimating() -> None:
    job = rows_per_batch(10)
    running = reconcile(observation(job, T0 + HOUR)).status
    done = finish(job, running, 1, 1, records=95, at=T0 + HOUR + dt.timedelta(minutes=5))
    running = reconcile(observation(job, T0 + 2 * HOUR, status=done)).status
    assert running.current_run is not None and running.current_run.batches_planned == 10
    partial = finish(job, running, 2, 10, records=3, failed={4},
                     at=T0 + 2 * HOUR + dt.timedelta(minutes=5))
    assert partial.last_run is not None
    assert partial.last_run.phase == RunPhase.PARTIALLY_SUCCEEDED

    third = reconcile(observation(job, T0 + 3 * HOUR, status=partial))

    assert plan_of(third)["batchCount"] == 10, "95 records of the last Succeeded run"


def test_a_retry_re_runs_the_failed_index_of_the_original_split_after_batches_changed() -> None:
    job = spec().hourly().relative("1h").set("source.keyColumn", "id").batches(3).build()
    running = reconcile(observation(job, T0 + HOUR)).status
    later = T0 + HOUR + dt.timedelta(minutes=5)
    finished = finish(job, running, 1, 3, records=10, failed={1}, at=later)
    assert finished.last_run is not None and finished.last_run.batches_planned == 3
    changed = spec().hourly().relative("1h").set("source.keyColumn", "id").batches(5).build()

    retry = reconcile(observation(changed, later, status=finished,
                                  jobs=[finished_job(1, 3, failed={1})],
                                  annotations={ANNOTATION_RETRY_REQUESTED_AT: "t1"}))

    run = retry.status.current_run
    assert run is not None and (run.retry_of, run.batches_planned) == ("contacts.1", 3)
    plan = plan_of(retry)
    assert plan["batchCount"] == 3, "key range 1 of 3, not of 5: each row exactly once"
    assert [s["keySplit"] for s in plan["slices"]] == [
        {"column": "id", "index": 1, "count": 3}]
    assert retry.create_job is not None and retry.create_job["spec"]["completions"] == 1
