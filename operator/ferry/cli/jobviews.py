"""What `list`, `describe` and `history` print for ExportJobs and ImportJobs (pure
functions)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ferry.api.exportjob import ExportJobSpec
from ferry.api.importjob import ImportJobSpec
from ferry.api.status import BatchStatus, ExportJobStatus, HistoryEntry, RunPhase, RunStatus
from ferry.cli import render
from ferry.cli.model import AnyJob, finished_runs, kind_word, name_of
from ferry.reconcile.runrules import run_location
from ferry.reconcile.schedule.describe import describe as describe_schedule

RECENT_RUNS = 5


def progress(run: RunStatus | None) -> str:
    """The progress cell: a bar when the total is known, else the count so far."""
    if run is None:
        return render.NONE
    if run.phase in (RunPhase.QUEUED, RunPhase.AWAITING_DEPENDENCY):
        return run.phase.value
    if run.percent is not None:
        return render.bar(run.percent)
    if run.records_processed is not None:
        return f"{render.count(run.records_processed)} records"
    return render.NONE


def eta(run: RunStatus | None) -> str:
    """Time left of the current run, from status.currentRun.etaSeconds."""
    return render.NONE if run is None else render.duration(run.eta_seconds)


def last_run_cell(status: ExportJobStatus, now: dt.datetime) -> str:
    """``Succeeded 2h ago``: the result and when it ended."""
    last = status.last_run
    if last is None:
        return render.NONE
    return f"{last.phase.value} {render.relative(last.finished_at, now)}"


def list_table(jobs: Sequence[AnyJob], now: dt.datetime, all_namespaces: bool) -> str:
    """The jobs at a glance, like the seeds' jobs list (Type: the seeds' Job Type)."""
    headers = ["NAME", "TYPE", "TITLE", "PHASE", "PROGRESS", "ETA", "LAST RUN", "NEXT RUN"]
    rows = []
    for job in jobs:
        status = job.status or ExportJobStatus()
        row = [
            name_of(job),
            kind_word(job),
            job.spec.title,
            status.phase.value if status.phase else render.NONE,
            progress(status.current_run),
            eta(status.current_run),
            last_run_cell(status, now),
            render.relative(status.next_run_at, now),
        ]
        rows.append([job.metadata.namespace or "", *row] if all_namespaces else row)
    return render.table(["NAMESPACE", *headers] if all_namespaces else headers, rows)


# --- describe ---------------------------------------------------------------------------


def source_summary(spec: ExportJobSpec) -> str:
    """``postgres table interactions (Secret warehouse-db, key dsn)``."""
    src = spec.source
    what = f"table {src.table}" if src.table else "query"
    ref = src.connection_secret_ref
    return f"{src.type.value} {what} (Secret {ref.name}, key {ref.key})"


def timeframe_summary(spec: ExportJobSpec) -> str:
    """The export time frame in the seeds' words ("date range of data")."""
    tf = spec.timeframe
    if tf.fixed is not None:
        return f"from {render.timestamp(tf.fixed.start)} to {render.timestamp(tf.fixed.end)}"
    if tf.relative is not None:
        return f"the last {tf.relative.last} before each scheduled time"
    if tf.incremental is not None:
        return "incremental: since the last successful run"
    return "all data"


def output_summary(spec: ExportJobSpec, name: str) -> str:
    """``s3://exports/ferry/<job>/ csv gzip, files of 1Gi``."""
    out = spec.output
    parts = [run_location(spec, name, "") + "/", out.format.value]
    if out.compression.value != "none":
        parts.append(out.compression.value)
    if out.file_split_size is not None:
        parts.append(f"files of {out.file_split_size}")
    return " ".join(parts)


def batch_rows(batches: Iterable[BatchStatus]) -> list[list[str]]:
    """One row per batch: the seeds' per-batch status."""
    return [
        [
            str(b.index),
            b.phase.value,
            render.timestamp(b.started_at),
            render.timestamp(b.finished_at),
            processed_total(b.records_processed, b.records_total),
            str(len(b.files)) if b.files is not None else render.NONE,
            render.text(b.message),
        ]
        for b in batches
    ]


def processed_total(processed: int | None, total: int | None) -> str:
    """``4500/10000`` (exact: describe is for reading numbers)."""
    if processed is None:
        return render.NONE
    return f"{processed}/{total}" if total is not None else str(processed)


def run_identity(run: RunStatus | HistoryEntry) -> list[tuple[str, str]]:
    """What a run is, current or finished: id, trigger, phase, who, window."""
    pairs = [
        ("ID", run.id),
        ("Trigger", run.trigger + (f" (retry of {run.retry_of})" if run.retry_of else "")),
        ("Phase", run.phase.value + (f": {run.message}" if run.message else "")),
    ]
    if run.started_by:
        pairs.append(("Started By", run.started_by))
    if isinstance(run, RunStatus) and run.blocked_by:
        pairs.append(("Waiting For", run.blocked_by))
    if run.window is not None:
        pairs.append(("Window", window_text(run.window.from_, run.window.to)))
    return pairs


def current_run_section(run: RunStatus, now: dt.datetime) -> str:
    """The current run: what it is, how far it got, and each batch."""
    pairs = run_identity(run)
    pairs.append(("Started", f"{render.timestamp(run.started_at)} "
                  f"({render.relative(run.started_at, now)})" if run.started_at else render.NONE))
    if run.percent is not None:
        pairs.append(("Progress", render.bar(run.percent)))
    pairs.append(("Records", processed_total(run.records_processed, run.records_total)))
    pairs.append(("ETA", eta(run) + (f" at {run.records_per_second} rows/s"
                                     if run.records_per_second is not None else "")))
    if run.batches is not None:
        c = run.batches
        pairs.append(("Batches", f"{c.total} total, {c.running} running, {c.succeeded} "
                      f"succeeded, {c.failed} failed, {c.pending} pending"))
    out = render.fields(pairs, indent="  ")
    if run.batch_statuses:
        headers = ["BATCH", "PHASE", "STARTED", "FINISHED", "RECORDS", "FILES", "MESSAGE"]
        out += render.table(headers, batch_rows(run.batch_statuses), indent="  ")
    return out


def window_text(start: dt.datetime | None, end: dt.datetime | None) -> str:
    """``[from, to)`` with open ends shown as '...'."""
    left = render.timestamp(start) if start else "..."
    right = render.timestamp(end) if end else "..."
    return f"[{left}, {right})"


def batch_state(entry: HistoryEntry, batch: int) -> str:
    """What became of a batch the run marker lists as missing."""
    if batch in (entry.failed_batches or []):
        return "Failed"
    if batch in (entry.canceled_batches or []):
        return "Canceled"
    return "Missing"


def finished_run_section(entry: HistoryEntry, marker: dict[str, Any] | None,
                         note: str) -> str:
    """A finished run and its batches (the seeds' Job Tracker), from its history entry
    and its folder's run marker."""
    pairs = [
        *run_identity(entry),
        ("Started", render.timestamp(entry.started_at)),
        ("Finished", render.timestamp(entry.finished_at)),
        ("Duration", render.duration(entry.duration_seconds)),
        ("Records", render.text(None if entry.records is None else str(entry.records))),
        ("Files", render.text(None if entry.files is None else str(entry.files))),
        ("Run Marker", (f"{entry.run_marker} ({'complete' if entry.complete else 'incomplete'})"
                        if entry.run_marker else render.NONE)),
    ]
    out = render.fields(pairs) + "Batches:\n"
    if marker is None:
        return out + f"  <{note}>\n"
    rows = {int(b["batch"]): [
        str(b["batch"]), "Succeeded", render.text(b.get("startedAt")),
        render.text(b.get("finishedAt")), f"{b.get('records')}/{b.get('records')}",
        str(b.get("files"))] for b in marker.get("batches") or []}
    for missing in marker.get("missingBatches") or []:
        rows[int(missing)] = [str(missing), batch_state(entry, int(missing)), render.NONE,
                              render.NONE, render.NONE, render.NONE]
    return out + render.table(["BATCH", "STATUS", "STARTED", "FINISHED", "RECORDS", "FILES"],
                              [rows[i] for i in sorted(rows)], indent="  ")


def import_pairs(spec: ImportJobSpec) -> list[tuple[str, str]]:
    """What an ImportJob reads and where it loads it."""
    source = spec.source
    if source.from_export is not None:
        run = source.from_export.run or "its latest Succeeded run"
        what = f"the files of ExportJob {source.from_export.name}, {run}"
    else:
        assert source.s3 is not None
        s3 = source.s3
        what = f"s3://{s3.bucket}/{s3.prefix or ''}" + (f" matching {s3.glob}" if s3.glob
                                                        else "")
        if spec.new_files_only:
            what += ", each file once (newFilesOnly)"
    dest = spec.destination
    ref = dest.connection_secret_ref
    keys = f" on {', '.join(spec.key_columns)}" if spec.key_columns else ""
    return [("Type", "Import"), ("Source", f"{what}; {spec.format.value}"),
            ("Destination", f"{dest.type.value} table {dest.table} (Secret {ref.name}, key "
                            f"{ref.key}), {spec.mode.value}{keys}"),
            ("Max Errors", str(spec.max_errors))]


def describe_job(job: AnyJob, now: dt.datetime) -> str:
    """Everything about one job, in kubectl describe's shape."""
    spec, name = job.spec, name_of(job)
    status = job.status or ExportJobStatus()
    schedule = status.schedule_summary or (
        describe_schedule(spec.schedule) if spec.schedule else "on demand"
    )
    pairs = [
        ("Name", name),
        ("Namespace", job.metadata.namespace or ""),
        ("Title", spec.title),
    ]
    if spec.description:
        pairs.append(("Description", render.text(spec.description)))
    if isinstance(spec, ImportJobSpec):
        pairs += [*import_pairs(spec), ("Schedule", schedule)]
    else:
        pairs += [
            ("Type", "Export"),
            ("Source", source_summary(spec)),
            ("Timeframe", timeframe_summary(spec)),
            ("Schedule", schedule),
            ("Output", output_summary(spec, name)),
        ]
    pairs += [
        ("Suspend", str(spec.suspend).lower()),
        ("Phase", status.phase.value if status.phase else render.NONE),
        ("Next Run", f"{render.timestamp(status.next_run_at)} "
         f"({render.relative(status.next_run_at, now)})" if status.next_run_at else render.NONE),
    ]
    if spec.expires_at:
        pairs.append(("Expires", render.timestamp(spec.expires_at)))
    if status.created_by:
        pairs.append(("Created By", status.created_by))
    out = render.fields(pairs)
    out += "Current Run:\n"
    out += current_run_section(status.current_run, now) if status.current_run else "  <none>\n"
    out += "Recent Runs:\n"
    recent = finished_runs(status)[:RECENT_RUNS]
    out += history_table([HistoryRow.of(job, h) for h in recent], False, indent="  ") \
        if recent else "  <none>\n"
    if status.missed_runs:
        out += "Missed Runs:\n" + render.table(
            ["SCHEDULED FOR", "REASON", "MESSAGE"],
            [[render.timestamp(m.scheduled_for), m.reason.value, render.text(m.message)]
             for m in status.missed_runs],
            indent="  ",
        )
    out += "Conditions:\n"
    out += render.table(
        ["TYPE", "STATUS", "REASON", "MESSAGE"],
        [[c.type, c.status.value, c.reason, render.text(c.message)] for c in status.conditions],
        indent="  ",
    ) if status.conditions else "  <none>\n"
    return out


def next_step(name: str, status: ExportJobStatus | None) -> str | None:
    """What to do about a stalled job or a failed last run, worded as the Argo CD health
    script words it (docs/gitops/argocd-health-exportjob.lua), so the two never disagree."""
    status = status or ExportJobStatus()
    stalled = next((c for c in status.conditions or []
                    if c.type == "Stalled" and c.status.value == "True"), None)
    if stalled is not None:
        reason = stalled.reason or stalled.type
        return f"{reason}: {stalled.message}" if stalled.message else reason
    if status.current_run is not None:
        return None
    last = status.last_run
    if last is not None and last.phase in (RunPhase.FAILED, RunPhase.PARTIALLY_SUCCEEDED):
        text = f"Last run {last.id} {last.phase.value}"
        if last.message:
            text += f": {last.message}"
        return (f"{text} (error report: kubectl ferry errors {name}; re-run the failed "
                f"batches: kubectl ferry retry {name})")
    return None


def event_time(event: Any) -> dt.datetime | None:
    """When an Event last happened: core/v1 events carry lastTimestamp, events.k8s.io
    ones (and some clients') only eventTime."""
    moment = getattr(event, "last_timestamp", None) or getattr(event, "event_time", None)
    return moment if isinstance(moment, dt.datetime) else None


def events_section(events: Iterable[Any], now: dt.datetime) -> str:
    """``Events:`` as kubectl describe prints them (oldest first): type, reason, age,
    how many times, message."""
    rows = sorted(events, key=lambda e: event_time(e) or dt.datetime.min.replace(tzinfo=dt.UTC))
    if not rows:
        return "Events:\n  <none>\n"
    return "Events:\n" + render.table(
        ["TYPE", "REASON", "AGE", "COUNT", "MESSAGE"],
        [[e.type or "", e.reason or "", render.relative(event_time(e), now),
          str(e.count or 1), render.text(e.message)] for e in rows],
        indent="  ",
    )


# --- history ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    """One run on the History page: finished, or the one in progress."""

    namespace: str
    job: str
    id: str
    trigger: str
    phase: RunPhase
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_seconds: int | None
    records: int | None
    files: int | None
    error_report: str | None

    @classmethod
    def of(cls, job: AnyJob, run: HistoryEntry | RunStatus) -> HistoryRow:
        """A row from a history entry or from the current run."""
        finished = run if isinstance(run, HistoryEntry) else None
        return cls(
            namespace=job.metadata.namespace or "",
            job=name_of(job),
            id=run.id,
            trigger=run.trigger,
            phase=run.phase,
            started_at=run.started_at,
            finished_at=finished.finished_at if finished else None,
            duration_seconds=finished.duration_seconds if finished else None,
            records=finished.records if finished else getattr(run, "records_processed", None),
            files=run.files,
            error_report=(finished.error_report or finished.audit_log) if finished else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The -o json|yaml shape (camelCase like the API)."""
        return {
            "namespace": self.namespace,
            "job": self.job,
            "id": self.id,
            "trigger": self.trigger,
            "phase": self.phase.value,
            "startedAt": render.timestamp(self.started_at) if self.started_at else None,
            "finishedAt": render.timestamp(self.finished_at) if self.finished_at else None,
            "durationSeconds": self.duration_seconds,
            "records": self.records,
            "files": self.files,
            "errorReport": self.error_report,
        }


def history_rows(jobs: Sequence[AnyJob]) -> list[HistoryRow]:
    """Every job's current and finished runs, newest start first."""
    rows = []
    for job in jobs:
        status = job.status or ExportJobStatus()
        if status.current_run is not None:
            rows.append(HistoryRow.of(job, status.current_run))
        rows += [HistoryRow.of(job, h) for h in finished_runs(status)]
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(rows, key=lambda r: (r.started_at or epoch, r.id), reverse=True)


def filter_rows(
    rows: list[HistoryRow], phase: RunPhase | None, since: dt.datetime | None
) -> list[HistoryRow]:
    """--phase and --since (runs that started at or after the time)."""
    return [
        r for r in rows
        if (phase is None or r.phase == phase)
        and (since is None or (r.started_at is not None and r.started_at >= since))
    ]


def history_table(rows: list[HistoryRow], all_namespaces: bool, indent: str = "") -> str:
    """RUN, TRIGGER, STARTED, FINISHED, DURATION, RESULT, RECORDS, FILES."""
    headers = ["RUN", "TRIGGER", "STARTED", "FINISHED", "DURATION", "RESULT", "RECORDS", "FILES"]
    body = []
    for r in rows:
        cells = [
            r.id, r.trigger, render.timestamp(r.started_at), render.timestamp(r.finished_at),
            render.duration(r.duration_seconds), r.phase.value, render.count(r.records),
            render.count(r.files),
        ]
        body.append([r.namespace, *cells] if all_namespaces else cells)
    return render.table(["NAMESPACE", *headers] if all_namespaces else headers, body, indent)
