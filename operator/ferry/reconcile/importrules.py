"""ImportJob's answers to the run state machine (`ferry.reconcile.runrules.RunRules`).

An import run has no time window (its files are what the source lists when a batch
starts; ``newFilesOnly`` and the ledger in the destination make each file load once),
no seal (nothing reads an import's folder), and is split into ``batching.batches``
shares of the listed files, which the worker picks (`ferry.contract.importplan`).

What it reads may be another resource: ``fromExport`` names an ExportJob, whose run is
chosen when the import run starts (`prepare`: the named run, else the export's latest
Succeeded one) and kept in ``currentRun.sourceRun``, so a retry, or a Job created again
after the operator stopped, loads exactly the same files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ferry.api.common import Window
from ferry.api.importjob import ImportJobSpec
from ferry.api.jobgroup import IMPORT_MEMBER_PREFIX
from ferry.api.output import S3Bucket
from ferry.api.status import HistoryEntry, RunPhase, RunStatus
from ferry.constants import EXPORTJOB_KIND, IMPORTJOB_KIND
from ferry.contract.importplan import REJECTS
from ferry.reconcile.batches import Slice
from ferry.reconcile.importjobspec import (
    ExportFiles,
    audit_location,
    build_import_job,
    import_job_name,
)
from ferry.reconcile.jobspec import Owner, WorkerDefaults


@dataclass(frozen=True)
class ExportView:
    """The ExportJob a ``fromExport`` names, as observed when the import is reconciled."""

    name: str
    namespace: str
    bucket: S3Bucket | None = None
    """Its spec.output.s3; None when it is not found or its spec does not read."""
    runs: tuple[HistoryEntry, ...] = ()
    """Its finished runs (status.lastRun and status.history), newest first."""
    found: bool = False


def _newest_succeeded(runs: tuple[HistoryEntry, ...]) -> HistoryEntry | None:
    done = [r for r in runs if r.phase == RunPhase.SUCCEEDED]
    return max(done, key=lambda r: r.number) if done else None


class ImportRules:
    """ImportJob: files under an S3 prefix, or an ExportJob run's, into one table."""

    kind = IMPORTJOB_KIND
    cli_prefix = IMPORT_MEMBER_PREFIX
    noun = "import"
    backfills = False
    seals = False

    def concurrency_key(self, spec: ImportJobSpec) -> str:
        """The destination's Secret and table: two imports into one table through the same
        credentials take turns (an Overwrite and an Append of the same table must not
        interleave), as two exports of one table do."""
        if spec.concurrency and spec.concurrency.key:
            return spec.concurrency.key
        ref = spec.destination.connection_secret_ref
        return f"{ref.name}/{ref.key}/{spec.destination.table}"

    def window(self, spec: ImportJobSpec, slot: dt.datetime,
               last_end: dt.datetime | None) -> tuple[bool, Window | None]:
        return True, None

    def batches(self, spec: ImportJobSpec, window: Window | None,
                previous_records: int | None) -> int:
        return (spec.batching.batches if spec.batching else None) or 1

    def slices(self, spec: ImportJobSpec, count: int, window: Window | None) -> list[Slice]:
        return [Slice(i, count, None, None) for i in range(count)]

    def start_note(self, spec: ImportJobSpec, run: RunStatus,
                   previous_records: int | None) -> str:
        return f"; files of {run.source_run}" if run.source_run else ""

    def key_range(self, spec: ImportJobSpec, piece: Slice) -> str | None:
        return None

    def job_name(self, owner: str, number: int) -> str:
        return import_job_name(owner, number)

    def prepare(self, spec: ImportJobSpec, inputs: ExportView | None, run: RunStatus,
                original: HistoryEntry | None) -> str | None:
        """Choose the ExportJob run a ``fromExport`` import loads; why it cannot start."""
        source = spec.source.from_export
        if source is None:
            return None
        if original is not None and original.source_run:
            run.source_run = original.source_run
            return None
        if inputs is None or not inputs.found:
            namespace = inputs.namespace if inputs else "this namespace"
            return (f"spec.source.fromExport.name: {EXPORTJOB_KIND} {source.name} not found "
                    f"in namespace {namespace}: create it, or fix the name")
        if inputs.bucket is None:
            return (f"spec.source.fromExport.name: {EXPORTJOB_KIND} {source.name} does not "
                    "write to S3 (its spec.output.s3, or its spec, does not read): "
                    "fromExport reads S3 run folders only")
        if source.run is not None:
            run.source_run = source.run
            return None
        newest = _newest_succeeded(inputs.runs)
        if newest is None:
            return (f"spec.source.fromExport: {EXPORTJOB_KIND} {source.name} has no "
                    f"Succeeded run yet: run it first (kubectl ferry run {source.name} "
                    "--wait), or name a run in spec.source.fromExport.run")
        run.source_run = newest.id
        return None

    def export_files(self, spec: ImportJobSpec, inputs: ExportView | None,
                     run: RunStatus) -> ExportFiles | None:
        """The pinned ExportJob run's folder and bucket (None for an s3 source)."""
        source = spec.source.from_export
        if source is None:
            return None
        if inputs is None or inputs.bucket is None or run.source_run is None:
            raise LookupError(f"{EXPORTJOB_KIND} {source.name}, whose run {run.source_run} "
                              f"run {run.id} loads, cannot be read")
        entry = next((r for r in inputs.runs if r.id == run.source_run), None)
        folder = entry.folder if entry is not None else run.source_run
        return ExportFiles(inputs.bucket, f"{source.name}/{folder}")

    def location(self, spec: ImportJobSpec, inputs: ExportView | None, job: str,
                 folder: str) -> str | None:
        """The run's folder of audit logs (spec.errors, else the source's bucket)."""
        export = inputs.bucket if spec.source.from_export and inputs is not None else None
        if spec.source.from_export is not None and spec.errors is None and export is None:
            return None
        bucket, prefix = audit_location(spec, export)
        parts = [p.strip("/") for p in (prefix, job, folder) if p and p.strip("/")]
        return f"s3://{bucket}/{'/'.join(parts)}"

    def links(self, location: str, phase: RunPhase, failed: bool, rejected: bool
              ) -> dict[str, str]:
        """The audit log, once a row was rejected (a failed batch's reason is its
        message: imports write no error report files)."""
        return {"audit_log": f"{location}/{REJECTS}"} if rejected else {}

    def job(self, owner: Owner, spec: ImportJobSpec, inputs: ExportView | None,
            run: RunStatus, slices: list[Slice], defaults: WorkerDefaults,
            reuse_since: dt.datetime | None) -> dict[str, Any]:
        """Nothing to reuse by time: the ledger tells a retry which files landed."""
        return build_import_job(owner, spec, run.number, run.folder, slices, defaults,
                                self.export_files(spec, inputs, run))

    def seal_job(self, owner: Owner, spec: ImportJobSpec, entry: HistoryEntry,
                 defaults: WorkerDefaults) -> dict[str, Any]:
        raise NotImplementedError("ImportJob runs are not sealed (seals is False)")


IMPORT_RULES = ImportRules()
