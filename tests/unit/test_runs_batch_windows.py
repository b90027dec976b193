"""Each batch of a run in progress shows its time slice (`batchStatuses[].window`,
docs/api.md); a retry's batches keep the slices of the run they repair."""

from __future__ import annotations

import datetime as dt

from ferry.api.common import Window
from ferry.constants import ANNOTATION_RETRY_REQUESTED_AT
from ferry.reconcile.progress import JobObservation, PodObservation
from ferry.reconcile.runs import reconcile

from .builders import T0, finished_job, observation, spec

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)


def running_job(run_number: int, indexes: int) -> JobObservation:
    return JobObservation(
        name=f"contacts-{run_number}", run_number=run_number, completions=indexes,
        active=indexes,
        pods=[PodObservation(completion_index=i, phase="Running", created_at=T0,
                             progress={"records": 1, "bytes": 10, "files": 0})
              for i in range(indexes)])


def test_the_batches_of_a_time_sliced_run_show_their_slices() -> None:
    job = spec().hourly().batches(3).relative("3h").build()
    started = reconcile(observation(job, T0 + 3 * HOUR)).status

    polled = reconcile(observation(job, T0 + 3 * HOUR + MINUTE, status=started,
                                   jobs=[running_job(1, 3)])).status

    assert polled.current_run is not None and polled.current_run.batch_statuses is not None
    assert [(b.index, b.window) for b in polled.current_run.batch_statuses] == [
        (i, Window(from_=T0 + i * HOUR, to=T0 + (i + 1) * HOUR)) for i in range(3)]


def test_a_retry_shows_the_slices_of_the_batches_it_reruns() -> None:
    job = spec().hourly().batches(3, retries=0).relative("3h").build()
    started = reconcile(observation(job, T0 + 3 * HOUR)).status
    partial = reconcile(observation(job, T0 + 3 * HOUR + MINUTE, status=started,
                                    jobs=[finished_job(1, 3, failed={1})])).status
    retry = reconcile(observation(job, T0 + 3 * HOUR + 2 * MINUTE, status=partial,
                                  jobs=[finished_job(1, 3, failed={1})],
                                  annotations={ANNOTATION_RETRY_REQUESTED_AT: "r1"})).status

    polled = reconcile(observation(job, T0 + 3 * HOUR + 3 * MINUTE, status=retry,
                                   annotations={ANNOTATION_RETRY_REQUESTED_AT: "r1"},
                                   jobs=[finished_job(1, 3, failed={1}),
                                         running_job(2, 1)])).status

    run = polled.current_run
    assert run is not None and run.retry_of == "contacts.1" and run.batch_statuses is not None
    assert [(b.index, b.window) for b in run.batch_statuses] == [
        (1, Window(from_=T0 + HOUR, to=T0 + 2 * HOUR))]


def test_the_batches_of_a_run_split_by_key_show_the_range_their_worker_reads() -> None:
    job = spec().hourly().set("source.keyColumn", "id").batches(2).relative("1h").build()
    started = reconcile(observation(job, T0 + HOUR)).status
    polled = reconcile(observation(job, T0 + HOUR + MINUTE, status=started,
                                   jobs=[running_job(1, 2)])).status
    assert polled.current_run is not None and polled.current_run.batch_statuses is not None
    assert [b.key_range for b in polled.current_run.batch_statuses] == [
        "range 1 of 2 of id, planned by the first batch",
        "range 2 of 2 of id, planned by the first batch"]
    reported = running_job(1, 2)
    reported.pods[1] = PodObservation(
        completion_index=1, phase="Running", created_at=T0,
        progress={"records": 1, "bytes": 10, "files": 0, "keyRange": "id >= 5000"})
    polled = reconcile(observation(job, T0 + HOUR + 2 * MINUTE, status=polled,
                                   jobs=[reported])).status
    assert polled.current_run is not None and polled.current_run.batch_statuses is not None
    assert [b.key_range for b in polled.current_run.batch_statuses] == [
        "range 1 of 2 of id, planned by the first batch", "id >= 5000"]


def test_a_query_split_by_key_shows_its_hash_partition() -> None:
    job = (spec().hourly().set("source.keyColumn", "id").set("source.table", None)
           .set("source.query", "SELECT * FROM contacts").batches(2).relative("1h").build())
    decision = reconcile(observation(job, T0 + HOUR))
    assert [e.message for e in decision.events] == [
        "run contacts.1 started (schedule); batches are hash partitions of id (a query "
        "source has no ranges)"]
    started = decision.status
    polled = reconcile(observation(job, T0 + HOUR + MINUTE, status=started,
                                   jobs=[running_job(1, 2)])).status
    assert polled.current_run is not None and polled.current_run.batch_statuses is not None
    assert [b.key_range for b in polled.current_run.batch_statuses] == [
        "hash(id) mod 2 = 0", "hash(id) mod 2 = 1"]
