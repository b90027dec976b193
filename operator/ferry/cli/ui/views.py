"""What each page of `kubectl ferry ui` shows, as plain JSON-ready data (pure functions).

The browser renders these dicts with ``textContent`` only, so nothing here escapes:
every string from a spec or status reaches the page as text, never as markup. Kinds are
listed generically: an ExportJob and an ImportJob share one status shape (ImportJob adds
``recordsRejected``), a JobGroup has group runs; a kind whose CRD is not installed simply
has no rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ferry.api.common import Condition
from ferry.api.exportjob import ExportJob
from ferry.api.importjob import ImportJob
from ferry.api.jobgroup import GroupHistoryEntry, GroupRunStatus, JobGroup, JobGroupStatus
from ferry.api.status import (
    BatchPhase,
    BatchStatus,
    ExportJobStatus,
    HistoryEntry,
    ImportJobStatus,
    RunPhase,
    RunStatus,
)
from ferry.cli import render
from ferry.cli.groupviews import group_runs, members_done
from ferry.cli.jobviews import batch_state, output_summary, source_summary, timeframe_summary
from ferry.cli.model import finished_runs
from ferry.constants import EXPORTJOB_PLURAL, IMPORTJOB_PLURAL, JOBGROUP_PLURAL
from ferry.reconcile.schedule.describe import describe as describe_schedule


@dataclass(frozen=True)
class Kind:
    """One listed kind: its API name, the plural the URLs use and the page's word."""

    name: str
    plural: str
    word: str
    actions: tuple[str, ...]
    """The plugin verbs the UI offers for it (cli/ui/actions.py maps each to a verb)."""


KINDS = (
    Kind("ExportJob", EXPORTJOB_PLURAL, "Export",
         ("run", "stop", "retry", "suspend", "resume", "clone", "delete")),
    Kind("ImportJob", IMPORTJOB_PLURAL, "Import",
         ("run", "stop", "retry", "suspend", "resume", "clone", "delete")),
    Kind("JobGroup", JOBGROUP_PLURAL, "Group", ("run", "stop", "retry")),
)
KIND_BY_PLURAL = {k.plural: k for k in KINDS}

BATCH_FILTERS = {
    "all": "All batches", "queued": "Queued", "in-progress": "In progress",
    "completed": "Completed", "ran-with-errors": "Ran with errors", "failed": "Failed",
    "canceled": "Canceled",
}
"""The run page's batch filter (seed 003's Batch Status menu, plus Canceled)."""

Job = ExportJob | ImportJob
Parsed = ExportJob | ImportJob | JobGroup
MODELS: dict[str, type[BaseModel]] = {
    EXPORTJOB_PLURAL: ExportJob, IMPORTJOB_PLURAL: ImportJob, JOBGROUP_PLURAL: JobGroup,
}


def stamp(value: dt.datetime | None) -> str | None:
    """RFC 3339 UTC, or None (the page shows '-')."""
    return None if value is None else render.timestamp(value)


def parse(plural: str, raw: dict[str, Any]) -> Parsed | str:
    """The object as its model, or the reason it cannot be read (shown in its row)."""
    try:
        parsed = MODELS[plural].model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f'{".".join(str(p) for p in first["loc"])}: {first["msg"]}'
    assert isinstance(parsed, ExportJob | ImportJob | JobGroup)
    return parsed


def source_and_type(obj: Parsed) -> tuple[str, str]:
    """The seeds' Source and Type columns: where rows come from, which records."""
    if isinstance(obj, ExportJob):
        src = obj.spec.source
        return src.type.value, src.table or "query"
    if isinstance(obj, ImportJob):
        source = obj.spec.source
        if source.s3 is not None:
            where = f"s3://{source.s3.bucket}/{source.s3.prefix or ''}"
        else:
            where = f"export {source.from_export.name if source.from_export else '?'}"
        return where, obj.spec.destination.table
    return "group", f"{len(obj.spec.members)} members"


def schedule_words(obj: Parsed) -> str:
    """The schedule in words, as status says it (else computed, else on demand)."""
    summary = obj.status.schedule_summary if obj.status else None
    if summary:
        return summary
    return describe_schedule(obj.spec.schedule) if obj.spec.schedule else "on demand"


def ready(conditions: list[Condition] | None) -> tuple[str, str]:
    """Ready's status and message ('-' when the operator has not set it yet)."""
    for condition in conditions or []:
        if condition.type == "Ready":
            return condition.status.value, condition.message
    return render.NONE, ""


def progress(run: RunStatus | None, now: dt.datetime) -> dict[str, Any] | None:
    """The Latest Status bar: percent, counts and the ETA shown on hover."""
    if run is None or run.phase != RunPhase.IN_PROGRESS:
        return None
    ends = run.eta or (now + dt.timedelta(seconds=run.eta_seconds)
                       if run.eta_seconds is not None else None)
    if run.eta_seconds is not None:
        hover = f"{render.duration(run.eta_seconds)} left, ends about {render.timestamp(ends)}"
    else:
        hover = "time left not known yet"
    return {
        "percent": run.percent,
        "processed": run.records_processed,
        "total": run.records_total,
        "etaSeconds": run.eta_seconds,
        "endsAt": stamp(ends),
        "hover": hover,
        "text": (f"{run.percent}%" if run.percent is not None
                 else f"{render.count(run.records_processed or 0)} records"),
    }


def last_run_text(entry: HistoryEntry | GroupHistoryEntry | None, now: dt.datetime) -> str:
    """``Succeeded 2h ago``."""
    if entry is None:
        return render.NONE
    return f"{entry.phase.value} {render.relative(entry.finished_at, now)}"


def job_row(plural: str, raw: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """One row of the Jobs page."""
    kind = KIND_BY_PLURAL[plural]
    meta = raw.get("metadata") or {}
    row: dict[str, Any] = {
        "kind": kind.name, "plural": plural, "type": kind.word,
        "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
        "actions": list(kind.actions),
    }
    obj = parse(plural, raw)
    if isinstance(obj, str):
        return {**row, "title": str((raw.get("spec") or {}).get("title") or ""),
                "source": render.NONE, "records": render.NONE, "schedule": render.NONE,
                "phase": "Unreadable", "progress": None, "lastRun": render.NONE,
                "nextRun": render.NONE, "ready": render.NONE, "readyMessage": obj,
                "current": None}
    source, records = source_and_type(obj)
    status = obj.status
    current = status.current_run if status else None
    state, message = ready(status.conditions if status else None)
    row.update({
        "title": obj.spec.title, "source": source, "records": records,
        "schedule": schedule_words(obj),
        "phase": status.phase.value if status and status.phase else "Drafted",
        "progress": progress(current, now) if isinstance(current, RunStatus) else None,
        "current": current.id if current else None,
        "lastRun": last_run_text(status.last_run if status else None, now),
        "nextRun": render.relative(status.next_run_at if status else None, now),
        "ready": state, "readyMessage": message,
    })
    if isinstance(obj, JobGroup) and isinstance(current, GroupRunStatus):
        row["progress"] = {"percent": None, "processed": None, "total": None,
                           "etaSeconds": None, "endsAt": None, "hover": current.phase.value,
                           "text": members_done(current.members)}
    return row


def jobs_page(objects: dict[str, list[dict[str, Any]]], errors: dict[str, str],
              now: dt.datetime) -> dict[str, Any]:
    """Every listed object of every kind, and why a kind could not be listed."""
    rows = [job_row(k.plural, raw, now) for k in KINDS for raw in objects.get(k.plural, [])]
    rows.sort(key=lambda r: (r["namespace"], r["name"], r["kind"]))
    return {"rows": rows, "errors": [errors[k] for k in sorted(errors)]}


# --- History ----------------------------------------------------------------------------


def run_row(kind: Kind, obj: Parsed, run: Any) -> dict[str, Any]:
    """One run on the History page: a job's run or a group run, current or finished."""
    finished = not isinstance(run, RunStatus | GroupRunStatus)
    records = getattr(run, "records", None) if finished else getattr(run, "records_processed",
                                                                        None)
    return {
        "kind": kind.name, "plural": kind.plural, "namespace": obj.metadata.namespace or "",
        "job": obj.metadata.name or "", "title": obj.spec.title, "id": run.id,
        "number": run.number, "trigger": run.trigger,
        "startedBy": run.started_by or render.NONE, "phase": run.phase.value,
        "startedAt": stamp(run.started_at),
        "finishedAt": stamp(run.finished_at) if finished else None,
        "duration": render.duration(run.duration_seconds) if finished else render.NONE,
        "records": records, "rejected": getattr(run, "records_rejected", None),
        "files": getattr(run, "files", None),
        "members": members_done(run.members) if isinstance(obj, JobGroup) else None,
        "hasPage": not isinstance(obj, JobGroup),
    }


def runs_of(obj: Parsed) -> list[Any]:
    """The current run first, then the finished ones newest first."""
    if isinstance(obj, JobGroup):
        gstatus = obj.status or JobGroupStatus()
        return [*([gstatus.current_run] if gstatus.current_run else []), *group_runs(gstatus)]
    status = obj.status or ExportJobStatus()
    return [*([status.current_run] if status.current_run else []), *finished_runs(status)]


def history_page(objects: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every run across jobs and groups, newest start first."""
    rows = []
    for kind in KINDS:
        for raw in objects.get(kind.plural, []):
            obj = parse(kind.plural, raw)
            if not isinstance(obj, str):
                rows += [run_row(kind, obj, run) for run in runs_of(obj)]
    rows.sort(key=lambda r: (r["startedAt"] or "", r["id"]), reverse=True)
    return {"rows": rows}


# --- a run --------------------------------------------------------------------------------


def batch_filter(phase: str, rejected: int | None) -> str:
    """Which entry of the batch filter a batch falls under."""
    return {
        BatchPhase.PENDING.value: "queued", BatchPhase.IN_PROGRESS.value: "in-progress",
        BatchPhase.FAILED.value: "failed", BatchPhase.CANCELED.value: "canceled",
    }.get(phase, "ran-with-errors" if rejected else "completed")


def live_batches(batches: Iterable[BatchStatus]) -> list[dict[str, Any]]:
    """The batches of the run in progress, from status."""
    return [{"index": b.index, "phase": b.phase.value, "startedAt": stamp(b.started_at),
             "finishedAt": stamp(b.finished_at), "processed": b.records_processed,
             "total": b.records_total, "rejected": b.records_rejected,
             "message": b.message or "", "filter": batch_filter(b.phase.value,
                                                               b.records_rejected)}
            for b in batches]


def marker_batches(entry: HistoryEntry, marker: dict[str, Any]) -> list[dict[str, Any]]:
    """A finished run's batches from its run marker (``_run.json``)."""
    rows = {}
    for b in marker.get("batches") or []:
        rejected = b.get("recordsRejected")
        rows[int(b["batch"])] = {
            "index": int(b["batch"]), "phase": BatchPhase.SUCCEEDED.value,
            "startedAt": b.get("startedAt"), "finishedAt": b.get("finishedAt"),
            "processed": b.get("records"), "total": b.get("records"), "rejected": rejected,
            "message": "", "filter": batch_filter(BatchPhase.SUCCEEDED.value, rejected)}
    for missing in marker.get("missingBatches") or []:
        state = batch_state(entry, int(missing))
        rows[int(missing)] = {"index": int(missing), "phase": state, "startedAt": None,
                              "finishedAt": None, "processed": None, "total": None,
                              "rejected": None, "message": "",
                              "filter": batch_filter(state, None)}
    return [rows[i] for i in sorted(rows)]


def run_page(plural: str, raw: dict[str, Any], run: RunStatus | HistoryEntry,
             marker: dict[str, Any] | None, note: str, now: dt.datetime) -> dict[str, Any]:
    """A run and its batches (seed 003's Job Tracker); ``note`` says why no batches."""
    job = parse(plural, raw)
    assert not isinstance(job, str | JobGroup)
    finished = isinstance(run, HistoryEntry)
    page: dict[str, Any] = {
        "kind": KIND_BY_PLURAL[plural].name, "plural": plural,
        "namespace": job.metadata.namespace or "", "job": job.metadata.name or "",
        "title": job.spec.title, "id": run.id, "number": run.number,
        "trigger": run.trigger + (f" (retry of {run.retry_of})" if run.retry_of else ""),
        "startedBy": run.started_by or render.NONE, "phase": run.phase.value,
        "message": run.message or "", "startedAt": stamp(run.started_at),
        "finished": finished, "note": note,
        "filters": BATCH_FILTERS,
    }
    if isinstance(run, HistoryEntry):
        page.update({
            "finishedAt": stamp(run.finished_at), "duration": render.duration(
                run.duration_seconds), "records": run.records, "rejected": run.records_rejected,
            "files": run.files, "progress": None,
            "errorReport": run.error_report, "auditLog": run.audit_log,
            "batches": marker_batches(run, marker) if marker is not None else [],
        })
    else:
        page.update({
            "finishedAt": None, "duration": render.NONE, "records": run.records_processed,
            "rejected": run.records_rejected, "files": run.files,
            "progress": progress(run, now), "errorReport": None, "auditLog": None,
            "batches": live_batches(run.batch_statuses or []),
        })
    return page


def find_run(job: Job, number: int) -> RunStatus | HistoryEntry | None:
    """The run with this number, current or still in history."""
    status = job.status or ImportJobStatus()
    candidates: list[RunStatus | HistoryEntry] = [
        *([status.current_run] if status.current_run else []), *finished_runs(status)]
    return next((r for r in candidates if r.number == number), None)


# --- a job --------------------------------------------------------------------------------


def spec_summary(obj: Parsed) -> list[tuple[str, str]]:
    """Label/value pairs of the spec, the way `kubectl ferry describe` words them."""
    name = obj.metadata.name or ""
    pairs = [("Title", obj.spec.title)]
    if obj.spec.description:
        pairs.append(("Description", obj.spec.description))
    if isinstance(obj, ExportJob):
        pairs += [("Source", source_summary(obj.spec)),
                  ("Timeframe", timeframe_summary(obj.spec)),
                  ("Output", output_summary(obj.spec, name))]
    elif isinstance(obj, ImportJob):
        source, table = source_and_type(obj)
        pairs += [("Source", source), ("Table", table), ("Mode", obj.spec.mode.value),
                  ("Format", obj.spec.format.value)]
    else:
        pairs += [("Members", ", ".join(obj.spec.members)),
                  ("Failure Policy", obj.spec.failure_policy.value)]
    pairs += [("Schedule", schedule_words(obj)), ("Suspend", str(obj.spec.suspend).lower())]
    created = obj.status.created_by if obj.status else None
    if created:
        pairs.append(("Created By", created))
    return pairs


def event_row(event: Any) -> dict[str, Any]:
    """One Kubernetes Event (a client model object) as the page shows it."""
    when = event.last_timestamp or event.event_time or event.first_timestamp
    return {"type": event.type or "", "reason": event.reason or "",
            "message": event.message or "", "count": event.count or 1,
            "lastSeen": stamp(when) if isinstance(when, dt.datetime) else None}


def job_page(plural: str, raw: dict[str, Any], events: list[dict[str, Any]],
             events_error: str, now: dt.datetime) -> dict[str, Any]:
    """A job's page: spec summary, conditions, upcoming and missed runs, Events, runs."""
    kind = KIND_BY_PLURAL[plural]
    row = job_row(plural, raw, now)
    obj = parse(plural, raw)
    page: dict[str, Any] = {**row, "spec": [], "conditions": [], "upcoming": [], "missed": [],
                            "events": events, "eventsError": events_error, "runs": []}
    if isinstance(obj, str):
        return page
    status = obj.status
    page["spec"] = [{"label": k, "value": v} for k, v in spec_summary(obj)]
    page["conditions"] = [{"type": c.type, "status": c.status.value, "reason": c.reason,
                           "message": c.message, "since": stamp(c.last_transition_time)}
                          for c in (status.conditions if status else None) or []]
    page["upcoming"] = [stamp(u) for u in (status.upcoming_runs if status else None) or []]
    if isinstance(status, ExportJobStatus):
        page["missed"] = [{"scheduledFor": stamp(m.scheduled_for), "reason": m.reason.value,
                           "message": m.message or ""} for m in status.missed_runs or []]
    page["runs"] = [run_row(kind, obj, r) for r in runs_of(obj)]
    return page
