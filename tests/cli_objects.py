"""Realistic ExportJob/JobGroup objects for the CLI tests (unit and e2e).

Built through the API models and dumped with to_k8s(), so they are exactly what the
operator writes and pass the CRD schema when patched into a real cluster.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ferry.api.jobgroup import GroupHistoryEntry, GroupRunStatus, JobGroupStatus, MemberRun
from ferry.api.status import (
    BatchCounts,
    BatchPhase,
    BatchStatus,
    ExportJobStatus,
    HistoryEntry,
    JobPhase,
    RunPhase,
    RunStatus,
)

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def job_spec(bucket: str = "exports", endpoint: str | None = None) -> dict[str, Any]:
    """An hourly 3-batch export of a contact-history table to S3."""
    s3: dict[str, Any] = {"bucket": bucket, "prefix": "ferry", "forcePathStyle": True,
                          "credentialsSecretRef": {"name": "bucket-creds"}}
    if endpoint:
        s3["endpoint"] = endpoint
    return {
        "title": "Contact history",
        "source": {"type": "postgres", "connectionSecretRef": {"name": "db", "key": "dsn"},
                   "table": "interactions", "timestampColumn": "created_at"},
        "schedule": {"hourly": {"every": 4, "minute": 15}},
        "output": {"s3": s3, "format": "csv"},
        "batching": {"batches": 3},
    }


def exportjob(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob",
            "metadata": {"name": name}, "spec": spec or job_spec()}


def history_entry(job: str, number: int, phase: RunPhase, *, hours_ago: float,
                  minutes: int = 10, records: int | None = 1_000_000, files: int | None = 3,
                  failed: list[int] | None = None, trigger: str = "schedule",
                  retry_of: str | None = None, now: dt.datetime = NOW) -> HistoryEntry:
    started = now - dt.timedelta(hours=hours_ago)
    return HistoryEntry(
        id=f"{job}.{number}", number=number, trigger=trigger, retry_of=retry_of,
        started_at=started, finished_at=started + dt.timedelta(minutes=minutes),
        duration_seconds=minutes * 60, phase=phase, records=records, files=files,
        failed_batches=failed, message=f"run {phase.value}",
    )


def running_status(job: str, now: dt.datetime = NOW) -> ExportJobStatus:
    """Run 3 in progress (45%), run 2 PartiallySucceeded, run 1 Succeeded."""
    started = now - dt.timedelta(minutes=10)
    run = RunStatus(
        id=f"{job}.3", number=3, trigger="manual", phase=RunPhase.IN_PROGRESS,
        started_by="alice", started_at=started, job_name=f"{job}-3",
        batches=BatchCounts(total=3, running=1, succeeded=1, pending=1),
        batch_statuses=[
            BatchStatus(index=0, phase=BatchPhase.SUCCEEDED, started_at=started,
                        finished_at=started + dt.timedelta(minutes=4), records_processed=3000,
                        records_total=3000, files=["contacts-0-0-1a2b3c4d.csv"]),
            BatchStatus(index=1, phase=BatchPhase.IN_PROGRESS, started_at=started,
                        records_processed=1500, records_total=3000),
            BatchStatus(index=2, phase=BatchPhase.PENDING, records_total=4000),
        ],
        records_processed=4500, records_total=10000, percent=45, eta_seconds=720,
    )
    last = history_entry(job, 2, RunPhase.PARTIALLY_SUCCEEDED, hours_ago=2, failed=[1],
                         now=now)
    return ExportJobStatus(
        phase=JobPhase.IN_PROGRESS, schedule_summary="every 4h at :15 UTC",
        progress="45% 4.5k/10k", eta="12m", next_run_at=now + dt.timedelta(minutes=45),
        run_counter=3, current_run=run, last_run=last,
        history=[last, history_entry(job, 1, RunPhase.SUCCEEDED, hours_ago=6, now=now)],
    )


def failed_status(job: str, now: dt.datetime = NOW) -> ExportJobStatus:
    """Nothing running; run 2 Failed (batch 0 and 1), run 1 Succeeded."""
    last = history_entry(job, 2, RunPhase.FAILED, hours_ago=1, records=0, files=0,
                         failed=[0, 1], now=now)
    return ExportJobStatus(
        phase=JobPhase.FAILED, schedule_summary="every 4h at :15 UTC", run_counter=2,
        last_run=last,
        history=[last, history_entry(job, 1, RunPhase.SUCCEEDED, hours_ago=5, now=now)],
    )


def group_status(group: str, members: list[str], now: dt.datetime = NOW) -> JobGroupStatus:
    """Group run 2 at member 2 of 2; group run 1 Failed at its first member."""
    started = now - dt.timedelta(minutes=20)
    run = GroupRunStatus(
        id=f"{group}.2", number=2, trigger="manual", phase=RunPhase.IN_PROGRESS,
        started_at=started, member_index=1,
        members=[
            MemberRun(name=members[0], run_id=f"{members[0]}.4", phase=RunPhase.SUCCEEDED,
                      started_at=started, finished_at=started + dt.timedelta(minutes=5)),
            MemberRun(name=members[1], run_id=f"{members[1]}.7", phase=RunPhase.IN_PROGRESS,
                      started_at=started + dt.timedelta(minutes=5)),
        ],
    )
    last = GroupHistoryEntry(
        id=f"{group}.1", number=1, trigger="schedule", started_at=now - dt.timedelta(hours=3),
        finished_at=now - dt.timedelta(hours=3) + dt.timedelta(minutes=2), duration_seconds=120,
        phase=RunPhase.FAILED,
        members=[
            MemberRun(name=members[0], run_id=f"{members[0]}.3", phase=RunPhase.FAILED,
                      message="no batch succeeded"),
            MemberRun(name=members[1], phase=RunPhase.CANCELED,
                      message="StopOnFailure: an earlier member failed"),
        ],
    )
    return JobGroupStatus(phase=JobPhase.IN_PROGRESS, schedule_summary="on demand",
                          current="2/2", run_counter=2, current_run=run, last_run=last,
                          history=[last])
