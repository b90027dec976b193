"""What differs between kinds whose runs `ferry.reconcile.runs` drives.

The run state machine (start, queue on a concurrency key, follow the Job and its pods,
finish, retry only the failed batches, stop, history, progress, conditions) is the same
for every kind of job that moves data in batches; what each run reads, how it is split
and which Job does it are not. `RunRules` is that difference, one small class per kind:
`ExportRules` here, `ferry.reconcile.importrules.ImportRules` for ImportJobs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Protocol

from ferry.api.common import Window
from ferry.api.exportjob import Concurrency, ExportJobSpec
from ferry.api.pod import WorkerPod
from ferry.api.schedule import Schedule
from ferry.api.status import HistoryEntry, RunPhase, RunStatus
from ferry.constants import EXPORTJOB_KIND
from ferry.contract.layout import ERRORS, MANIFESTS
from ferry.reconcile.batches import Slice, batch_count, plan_slices
from ferry.reconcile.jobspec import Owner, WorkerDefaults, build_job, build_seal_job, job_name
from ferry.reconcile.windows import resolve_window


class RunSpec(Protocol):
    """The fields every batch-running kind's spec has, with one meaning."""

    schedule: Schedule | None
    suspend: bool
    expires_at: dt.datetime | None
    history_limit: int
    concurrency: Concurrency | None
    worker: WorkerPod | None


class RunRules(Protocol):
    """A kind's answers to the run state machine's kind-specific questions."""

    kind: str
    """The resource kind, for messages ("ExportJob")."""
    cli_prefix: str
    """How `kubectl ferry` names a job of this kind: ``<prefix><name>``."""
    noun: str
    """What a run moves, for messages ("export", "import")."""
    backfills: bool
    """Whether the kind has time windows that a backfill request can replay."""
    seals: bool
    """Whether a finished run gets a seal Job writing its run marker."""

    def concurrency_key(self, spec: Any) -> str:
        """Runs with equal keys in a namespace run one at a time."""

    def window(self, spec: Any, slot: dt.datetime,
               last_end: dt.datetime | None) -> tuple[bool, Window | None]:
        """(something to do, the run's time window if it has one), for a run at ``slot``
        after the newest window a run succeeded with ended at ``last_end``."""

    def batches(self, spec: Any, window: Window | None, previous_records: int | None) -> int:
        """How many batches a new run is split into."""

    def slices(self, spec: Any, count: int, window: Window | None) -> list[Slice]:
        """The ``count`` batches of a run, the same for the same inputs."""

    def start_note(self, spec: Any, run: RunStatus, previous_records: int | None) -> str:
        """Appended to the Started event: where an estimated split came from."""

    def key_range(self, spec: Any, piece: Slice) -> str | None:
        """How a batch's share of the rows is chosen, when not by its window."""

    def job_name(self, owner: str, number: int) -> str:
        """The deterministic name of run ``number``'s Job."""

    def prepare(self, spec: Any, inputs: Any, run: RunStatus,
                original: HistoryEntry | None) -> str | None:
        """Pin what a starting run reads (``original``: the run a retry repairs); a
        message when it cannot start, which fails the run as a configuration error."""

    def location(self, spec: Any, inputs: Any, job: str, folder: str) -> str | None:
        """The URL of a run's folder, recorded in history (None: unknown)."""

    def links(self, location: str, phase: RunPhase, failed: bool, rejected: bool
              ) -> dict[str, str]:
        """The history entry's URLs under the run folder's ``location``."""

    def job(self, owner: Owner, spec: Any, inputs: Any, run: RunStatus, slices: list[Slice],
            defaults: WorkerDefaults, reuse_since: dt.datetime | None) -> dict[str, Any]:
        """The run's Job manifest (or its retry's, with the failed batches' slices)."""

    def seal_job(self, owner: Owner, spec: Any, entry: HistoryEntry,
                 defaults: WorkerDefaults) -> dict[str, Any]:
        """The seal Job of a finished run (only called when ``seals``)."""


def run_location(spec: ExportJobSpec, job: str, run_dir: str) -> str:
    """s3:// or sftp:// URL of an export run's folder (files, _manifests/, _errors/)."""
    return spec.output.location(job, run_dir)


def _bounds(window: Window | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    return (window.from_, window.to) if window else (None, None)


class ExportRules:
    """ExportJob: rows of a table or query in a time window, split by time or by key."""

    kind = EXPORTJOB_KIND
    cli_prefix = ""
    noun = "export"
    backfills = True
    seals = True

    def concurrency_key(self, spec: ExportJobSpec) -> str:
        """Derived from the connection Secret and the table (or a hash of the query): two
        jobs reading the same table through the same credentials are the same load on the
        same database. Namespaced, because Secrets are: a key can only name what its
        namespace can reach, and one tenant's exports never wait behind another's."""
        if spec.concurrency and spec.concurrency.key:
            return spec.concurrency.key
        ref = spec.source.connection_secret_ref
        what = spec.source.table or "query-" + hashlib.sha256(
            (spec.source.query or "").encode()).hexdigest()[:16]
        return f"{ref.name}/{ref.key}/{what}"

    def window(self, spec: ExportJobSpec, slot: dt.datetime,
               last_end: dt.datetime | None) -> tuple[bool, Window | None]:
        resolved = resolve_window(spec.timeframe, slot, last_end)
        return resolved is not None, resolved.to_api() if resolved else None

    def batches(self, spec: ExportJobSpec, window: Window | None,
                previous_records: int | None) -> int:
        return batch_count(spec, *_bounds(window), previous_records)

    def slices(self, spec: ExportJobSpec, count: int, window: Window | None) -> list[Slice]:
        return plan_slices(spec, count, *_bounds(window))

    def start_note(self, spec: ExportJobSpec, run: RunStatus,
                   previous_records: int | None) -> str:
        """Where a ``rowsPerBatch`` split came from, since it is an estimate, and how a
        split by key divides the rows."""
        return self._count_note(spec, run, previous_records) + self._key_note(spec, run)

    @staticmethod
    def _count_note(spec: ExportJobSpec, run: RunStatus, previous_records: int | None) -> str:
        batching = spec.batching
        if not batching or not batching.rows_per_batch or run.retry_of:
            return ""
        if previous_records is None:
            return ("; 1 batch: rowsPerBatch splits by the previous successful run's "
                    "records, and there is none yet")
        return (f"; {run.batches_planned} batch(es) of rowsPerBatch {batching.rows_per_batch}"
                f" for the previous successful run's {previous_records} records")

    @staticmethod
    def _key_note(spec: ExportJobSpec, run: RunStatus) -> str:
        key = spec.source.key_column
        if not key or (run.batches_planned or 1) < 2:
            return ""
        if spec.source.query is not None:
            return f"; batches are hash partitions of {key} (a query source has no ranges)"
        return (f"; batches are key ranges of {key}, planned by the first batch to start "
                "(hash partitions where the table cannot be sampled or the key has no order)")

    def key_range(self, spec: ExportJobSpec, piece: Slice) -> str | None:
        """Until the batch's worker reports its committed range (which then wins)."""
        key = spec.source.key_column
        if not (piece.by_key and key):
            return None
        if spec.source.query is not None:
            return f"hash({key}) mod {piece.total} = {piece.index}"
        return f"range {piece.index + 1} of {piece.total} of {key}, planned by the first batch"
        return None

    def job_name(self, owner: str, number: int) -> str:
        return job_name(owner, number)

    def prepare(self, spec: ExportJobSpec, inputs: None, run: RunStatus,
                original: HistoryEntry | None) -> str | None:
        return None

    def location(self, spec: ExportJobSpec, inputs: None, job: str, folder: str) -> str:
        return run_location(spec, job, folder)

    def links(self, location: str, phase: RunPhase, failed: bool, rejected: bool
              ) -> dict[str, str]:
        """The manifests (but of a canceled run) and, if a batch failed, the error reports."""
        links = {} if phase == RunPhase.CANCELED else {"manifest": f"{location}/{MANIFESTS}"}
        if failed:
            links["error_report"] = f"{location}/{ERRORS}"
        return links

    def job(self, owner: Owner, spec: ExportJobSpec, inputs: None, run: RunStatus,
            slices: list[Slice], defaults: WorkerDefaults,
            reuse_since: dt.datetime | None) -> dict[str, Any]:
        return build_job(owner, spec, run.number, run.folder, slices, defaults,
                         reuse_committed_since=reuse_since)

    def seal_job(self, owner: Owner, spec: ExportJobSpec, entry: HistoryEntry,
                 defaults: WorkerDefaults) -> dict[str, Any]:
        return build_seal_job(owner, spec, entry, entry.folder, entry.batches_planned or 1,
                              defaults)


EXPORT_RULES = ExportRules()
