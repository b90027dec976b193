"""`run --wait` / `--follow`: which run a request started, where it stands, how it ended.

Pure functions over a job's status, so the polling loop in `jobs.py` only reads and
prints. A run request is answered in one status write: ``lastHandled.runRequestedAt``
becomes the request's value and, unless the operator refused it (a Warning event
RunRequestRejected), the new run appears with trigger ``manual`` and the next number.
That is how the request's run is told from a scheduled one started meanwhile (the
numbers alone cannot tell: docs/gitops.md, "Waiting for a run").
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.api.status import ExportJobStatus, HistoryEntry, RunPhase, RunStatus
from ferry.cli import render
from ferry.cli.model import finished_runs

MANUAL = "manual"


@dataclass(frozen=True)
class Waiting:
    """Not over yet: ``line`` is the progress line --follow prints when it changes."""

    line: str


@dataclass(frozen=True)
class Ended:
    """The request's run finished (or the operator refused the request: ``run`` None)."""

    run: HistoryEntry | None
    line: str

    @property
    def succeeded(self) -> bool:
        return self.run is not None and self.run.phase == RunPhase.SUCCEEDED


def requested_run(status: ExportJobStatus | None, stamp: str, after: int
                  ) -> RunStatus | HistoryEntry | None:
    """The manual run numbered above ``after`` once the request ``stamp`` is handled."""
    status = status or ExportJobStatus()
    handled = status.last_handled.run_requested_at if status.last_handled else None
    if handled != stamp:
        return None
    runs: list[RunStatus | HistoryEntry] = [
        *([status.current_run] if status.current_run else []), *finished_runs(status)]
    mine = [r for r in runs if r.trigger == MANUAL and r.number > after]
    return min(mine, key=lambda r: r.number) if mine else None


def progress_line(run: RunStatus) -> str:
    """``run orders.4 InProgress 45% 4.5M/10M rows, ETA 12m``: one line, as the
    Argo CD health script words a running run."""
    text = f"run {run.id} {run.phase.value}"
    if run.phase == RunPhase.IN_PROGRESS:
        if run.percent is not None:
            text += f" {run.percent}%"
        if run.records_processed is not None:
            total = f"/{render.count(run.records_total)}" if run.records_total else ""
            text += f" {render.count(run.records_processed)}{total} rows"
        if run.eta_seconds is not None:
            text += f", ETA {render.duration(run.eta_seconds)}"
    if run.message:
        text += f": {render.text(run.message)}"
    return text


def ended_line(entry: HistoryEntry) -> str:
    """``run orders.4 Succeeded: 10M rows in 3 files``."""
    text = f"run {entry.id} {entry.phase.value}"
    return text + f": {render.text(entry.message)}" if entry.message else text


def wait_state(status: ExportJobStatus | None, stamp: str, after: int,
               rejection: str | None) -> Waiting | Ended:
    """Where the request ``stamp`` stands. ``rejection`` is the message of a
    RunRequestRejected event newer than the request, if the caller found one."""
    status = status or ExportJobStatus()
    handled = status.last_handled.run_requested_at if status.last_handled else None
    if handled != stamp:
        return Waiting("waiting for the operator to take the run request")
    run = requested_run(status, stamp, after)
    if run is None:
        why = rejection or "no run was started"
        return Ended(None, f"the operator refused the run request: {why}")
    if isinstance(run, RunStatus):
        return Waiting(progress_line(run))
    return Ended(run, ended_line(run))
