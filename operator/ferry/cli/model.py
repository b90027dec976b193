"""Reading Ferry objects into the API models, and finding runs in their status.

The CLI reads what the operator wrote through the same pydantic models the operator
writes with, so a field rename cannot make the two disagree silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ferry.api.exportjob import ExportJob
from ferry.api.importjob import ImportJob
from ferry.api.jobgroup import JobGroup
from ferry.api.status import ExportJobStatus, HistoryEntry, RunStatus, run_id
from ferry.cli.errors import CliError
from ferry.constants import EXPORTJOB_PLURAL, IMPORTJOB_PLURAL

M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], raw: dict[str, Any], kind: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        name = raw.get("metadata", {}).get("name", "?")
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CliError(f'{kind} "{name}" cannot be read: {where}: {first["msg"]}') from exc


def parse_job(raw: dict[str, Any]) -> ExportJob:
    """An ExportJob as returned by the API server."""
    return _parse(ExportJob, raw, "exportjob")


def parse_import(raw: dict[str, Any]) -> ImportJob:
    """An ImportJob as returned by the API server."""
    return _parse(ImportJob, raw, "importjob")


AnyJob = ExportJob | ImportJob
"""A job whose runs move data: both kinds' status is an ExportJobStatus."""

KINDS = {"exportjob": EXPORTJOB_PLURAL, "exportjobs": EXPORTJOB_PLURAL, "ej": EXPORTJOB_PLURAL,
         "importjob": IMPORTJOB_PLURAL, "importjobs": IMPORTJOB_PLURAL, "ij": IMPORTJOB_PLURAL}
"""What may come before the slash of a job reference (kubectl's kind/name)."""


def job_ref(ref: str) -> tuple[str, str]:
    """(plural, name) of ``NAME`` (an ExportJob), ``importjob/NAME`` or ``ij/NAME``."""
    kind, slash, name = ref.partition("/")
    if not slash:
        return EXPORTJOB_PLURAL, ref
    plural = KINDS.get(kind.removesuffix(".ferry.dev"))
    if plural is None or not name:
        raise CliError(f'"{ref}" is not a job: use NAME (an ExportJob) or importjob/NAME')
    return plural, name


def parse_any(plural: str, raw: dict[str, Any]) -> AnyJob:
    """An ExportJob or ImportJob, by its plural."""
    return parse_import(raw) if plural == IMPORTJOB_PLURAL else parse_job(raw)


def kind_word(job: AnyJob) -> str:
    """The seeds' Job Type."""
    return "Import" if isinstance(job, ImportJob) else "Export"


def parse_group(raw: dict[str, Any]) -> JobGroup:
    """A JobGroup as returned by the API server."""
    return _parse(JobGroup, raw, "jobgroup")


def name_of(obj: ExportJob | ImportJob | JobGroup) -> str:
    """metadata.name (always set on objects read from the API server)."""
    return obj.metadata.name or ""


def finished_runs(status: ExportJobStatus | None) -> list[HistoryEntry]:
    """history (newest first), plus lastRun when history was trimmed past it."""
    if status is None:
        return []
    runs = list(status.history or [])
    if status.last_run is not None and all(h.id != status.last_run.id for h in runs):
        runs.insert(0, status.last_run)
    return runs


@dataclass(frozen=True)
class RunRef:
    """A run picked with --run (or the default one): its id and where its files are."""

    id: str
    folder: str
    """Run id whose S3 folder holds the files: a retry writes into the run it repairs."""
    entry: HistoryEntry | RunStatus | None


def pick_run(job: AnyJob, number: int | None) -> RunRef:
    """The run ``--run N`` names, or the latest finished (else the current) run.

    History is bounded; a run number up to status.runCounter that history no longer
    lists still has its folder in the bucket, so it is returned without an entry.
    """
    name = name_of(job)
    status = job.status or ExportJobStatus()
    current = status.current_run
    finished = finished_runs(status)
    if number is None:
        if finished:
            entry: HistoryEntry | RunStatus = finished[0]
        elif current is not None:
            entry = current
        else:
            raise CliError(f'exportjob "{name}" has not run yet')
        return RunRef(entry.id, entry.folder, entry)
    wanted = run_id(name, number)
    candidates: list[HistoryEntry | RunStatus] = [*([current] if current else []), *finished]
    for candidate in candidates:
        if candidate.id == wanted:
            return RunRef(wanted, candidate.folder, candidate)
    if 1 <= number <= (status.run_counter or 0):
        return RunRef(wanted, wanted, None)
    raise CliError(f'run {wanted} not found: exportjob "{name}" has no run number {number}')
