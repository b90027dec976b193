"""Reading batch/v1 Jobs and their pods (as plain API dicts) into observations.

A Job's outcome comes from its Complete / Failed conditions and its index sets,
never from pod phases: pods come and go (retries, deletion), the Job's accounting
is what the Job controller guarantees.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ferry.constants import ANNOTATION_PROGRESS, LABEL_RUN, LABEL_SEAL
from ferry.contract.summary import json_object
from ferry.reconcile.progress import JobObservation, PodObservation, SealObservation, parse_indexes

COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def pod_observation(pod: dict[str, Any]) -> PodObservation | None:
    """None for a pod that is not an indexed worker pod."""
    meta = pod.get("metadata", {})
    index = (meta.get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION)
    if index is None or not index.isdigit():
        return None
    status = pod.get("status") or {}
    terminated: dict[str, Any] = {}
    waiting: dict[str, Any] = {}
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or terminated
        waiting = (container.get("state") or {}).get("waiting") or waiting
    message = terminated.get("message")
    return PodObservation(
        completion_index=int(index),
        phase=status.get("phase") or "Pending",
        created_at=parse_time(meta.get("creationTimestamp")) or dt.datetime.min.replace(
            tzinfo=dt.UTC),
        progress=json_object((meta.get("annotations") or {}).get(ANNOTATION_PROGRESS)),
        summary=json_object(message),
        message=message,
        started_at=parse_time(status.get("startTime")),
        finished_at=parse_time(terminated.get("finishedAt")),
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
    )


def job_observation(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobObservation | None:
    """None for a Job without a run number label (not one of ours)."""
    meta = job.get("metadata", {})
    run = (meta.get("labels") or {}).get(LABEL_RUN, "")
    if not run.isdigit():
        return None
    status = job.get("status") or {}
    finished = job_finished(job)
    observed = [p for p in (pod_observation(pod) for pod in pods) if p is not None]
    return JobObservation(
        name=meta["name"],
        run_number=int(run),
        completions=(job.get("spec") or {}).get("completions") or 1,
        finished=finished,
        active=status.get("active") or 0,
        completed_indexes=parse_indexes(status.get("completedIndexes")),
        failed_indexes=parse_indexes(status.get("failedIndexes")),
        deleting=meta.get("deletionTimestamp") is not None,
        pods=observed,
    )


def job_finished(job: dict[str, Any]) -> str | None:
    """"Complete" or "Failed" once the Job's condition says so."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def seal_observation(job: dict[str, Any], pods: list[dict[str, Any]]) -> SealObservation | None:
    """None for a Job that is not a seal Job."""
    meta = job.get("metadata", {})
    run = (meta.get("labels") or {}).get(LABEL_SEAL, "")
    if not run.isdigit():
        return None
    observed = sorted((p for p in (pod_observation(pod) for pod in pods) if p is not None),
                      key=lambda p: p.created_at)
    last = observed[-1] if observed else None
    return SealObservation(
        name=meta["name"], run_number=int(run), finished=job_finished(job),
        summary=last.summary if last else None, message=last.message if last else None,
        deleting=meta.get("deletionTimestamp") is not None)
