"""Sealing finished runs: the seal Job, and what its summary does to history."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import Any

from ferry.api.status import ExportJobStatus, RunPhase
from ferry.constants import ANNOTATION_RETRY_REQUESTED_AT, ANNOTATION_STOP_REQUESTED_AT
from ferry.reconcile.jobspec import seal_job_name
from ferry.reconcile.progress import JobObservation, PodObservation, SealObservation
from ferry.reconcile.runs import Decision, QueueView, reconcile

from .builders import T0, finished_job, observation, spec

HOUR = dt.timedelta(hours=1)
JOB = spec().hourly().batches(4).relative("1h").build()


def step(now: dt.datetime, status: ExportJobStatus | None = None,
         jobs: list[JobObservation] | None = None, seals: tuple[SealObservation, ...] = (),
         annotations: dict[str, str] | None = None) -> Decision:
    """One pass, with the status read back from its JSON as the operator reads it (so
    history and lastRun are separate objects, as in the API server's answer)."""
    stored = ExportJobStatus.model_validate(status.to_k8s()) if status else None
    obs = observation(JOB, now, status=stored, jobs=jobs, annotations=annotations)
    return reconcile(replace(obs, seals=seals))


def env_of(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def canceled_with_three_of_four_seen() -> ExportJobStatus:
    running = step(T0 + HOUR).status
    pods = [PodObservation(completion_index=i, phase="Succeeded" if i < 3 else "Running",
                           created_at=T0, summary={"records": 300_000, "bytes": 10,
                                                   "fileCount": 1} if i < 3 else None)
            for i in range(4)]
    job = JobObservation(name="contacts-1", run_number=1, completions=4, active=1,
                         completed_indexes=frozenset({0, 1, 2}), pods=pods)
    return step(T0 + HOUR + dt.timedelta(minutes=3), running, [job],
                annotations={ANNOTATION_STOP_REQUESTED_AT: "s1"}).status


def test_a_run_that_ended_is_sealed_by_a_one_pod_job_without_database_access() -> None:
    running = step(T0 + HOUR).status
    ended = step(T0 + HOUR + dt.timedelta(minutes=5), running, [finished_job(1, 4)])

    assert ended.status.last_run is not None
    assert ended.status.last_run.sealed is False
    [seal] = ended.create_seals
    assert seal["metadata"]["name"] == "contacts-1-seal"
    assert seal["metadata"]["labels"] == {"ferry.dev/job": "contacts", "ferry.dev/seal": "1"}
    assert seal["spec"]["completions"] == 1
    container = seal["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["seal"]
    env = env_of(seal)
    assert "FERRY_SOURCE_DSN" not in env, "the seal reads only the bucket"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "bucket"
    plan = json.loads(env["FERRY_PLAN"]["value"])
    assert (plan["run"], plan["batchCount"], plan["seal"]) == (
        "contacts.1", 4, {"runId": "contacts.1", "outcome": "Succeeded"})


def test_the_seal_counts_what_the_manifests_commit_for_a_canceled_run() -> None:
    canceled = canceled_with_three_of_four_seen()
    assert canceled.last_run is not None
    assert (canceled.last_run.phase, canceled.last_run.records) == (RunPhase.CANCELED, 900_000)
    summary = {"status": "Sealed", "complete": False, "records": 1_199_749, "files": 4,
               "bytes": 40, "marker": "ferry/contacts/contacts.1/_run.json", "missing": [3]}
    # the stop's cancel already happened: the 4th batch committed before its pod stopped
    sealed = step(T0 + HOUR + dt.timedelta(minutes=4), canceled, seals=(
        SealObservation("contacts-1-seal", 1, "Complete", summary),))

    entry = sealed.status.last_run
    assert entry is not None
    assert (entry.records, entry.files, entry.bytes) == (1_199_749, 4, 40)
    assert (entry.sealed, entry.complete, entry.missing_batches, entry.run_marker) == (
        True, False, [3], "s3://exports/ferry/contacts/contacts.1/_run.json")
    assert sealed.status.history is not None and sealed.status.history[0] == entry
    assert sealed.delete_jobs == ["contacts-1-seal"]
    assert [(e.reason, e.message) for e in sealed.events] == [
        ("RunSealed", "run contacts.1: wrote s3://exports/ferry/contacts/contacts.1/_run.json "
                      "(incomplete, batches [3] missing)")]
    again = step(T0 + HOUR + dt.timedelta(minutes=5), sealed.status)
    assert again.create_seals == [] and again.events == []


def test_a_seal_that_gave_up_says_so_in_the_run_message() -> None:
    canceled = canceled_with_three_of_four_seen()
    failure = {"status": "Failed", "kind": "transient", "reason": "S3 unreachable"}
    sealed = step(T0 + HOUR + dt.timedelta(minutes=9), canceled, seals=(
        SealObservation("contacts-1-seal", 1, "Failed", failure),))
    entry = sealed.status.last_run
    assert entry is not None
    assert entry.sealed is True and entry.run_marker is None
    assert (entry.message or "").endswith(
        "; the run marker s3://exports/ferry/contacts/contacts.1/_run.json could not be "
        "written: S3 unreachable")
    assert [e.type for e in sealed.events] == ["Warning"]


def test_a_retry_seals_the_folder_it_repaired_and_keeps_its_own_counts() -> None:
    canceled = canceled_with_three_of_four_seen()
    done = {"status": "Sealed", "complete": False, "records": 900_000, "files": 3,
            "bytes": 30, "missing": [3]}
    sealed = step(T0 + HOUR + dt.timedelta(minutes=4), canceled, seals=(
        SealObservation("contacts-1-seal", 1, "Complete", done),)).status
    retry = step(T0 + HOUR + dt.timedelta(minutes=5), sealed,
                 annotations={ANNOTATION_STOP_REQUESTED_AT: "s1",
                              ANNOTATION_RETRY_REQUESTED_AT: "r1"}).status
    ended = step(T0 + HOUR + dt.timedelta(minutes=6), retry, [finished_job(2, 1)])
    [seal] = ended.create_seals
    plan = json.loads(env_of(seal)["FERRY_PLAN"]["value"])
    assert (plan["run"], plan["batchCount"], plan["seal"]) == (
        "contacts.1", 4, {"runId": "contacts.2", "outcome": "Succeeded"})
    whole = {"status": "Sealed", "complete": True, "records": 1_199_749, "files": 4,
             "bytes": 40, "missing": []}
    after = step(T0 + HOUR + dt.timedelta(minutes=7), ended.status, seals=(
        SealObservation("contacts-2-seal", 2, "Complete", whole),)).status
    assert after.last_run is not None
    assert (after.last_run.id, after.last_run.records, after.last_run.complete) == (
        "contacts.2", 10, True)


def test_a_run_canceled_before_it_started_needs_no_seal() -> None:
    queued = reconcile(observation(JOB, T0 + HOUR, queue=QueueView(holder="other.1"))).status
    stopped = step(T0 + HOUR, queued, annotations={ANNOTATION_STOP_REQUESTED_AT: "s1"})
    assert stopped.status.last_run is not None
    assert stopped.status.last_run.sealed is None
    assert stopped.create_seals == []


def test_seal_job_names_fit_63_characters_and_stay_distinct() -> None:
    long = "a" * 52
    names = {seal_job_name(long, n) for n in (1, 999_999_999)} | {
        seal_job_name("a" * 51 + "b", 1)}
    assert len(names) == 3
    assert all(len(n) <= 63 and n.endswith("-seal") for n in names)


def test_a_stopped_run_is_sealed_only_once_its_pods_are_gone() -> None:
    """A batch may commit while its pod stops: the seal would undercount it."""
    canceled = canceled_with_three_of_four_seen()
    stopping = JobObservation(name="contacts-1", run_number=1, completions=4, active=1,
                              deleting=True)
    assert step(T0 + HOUR + dt.timedelta(minutes=4), canceled, [stopping]).create_seals == []
    [seal] = step(T0 + HOUR + dt.timedelta(minutes=5), canceled).create_seals
    assert seal["metadata"]["name"] == "contacts-1-seal"
