"""Observed state of an ExportJob or ImportJob: the current run, its batches, and bounded
history (one status type, so the loop and the CLI treat both kinds alike).

The API server prunes status fields missing from the CRD schema, so every field the
controller writes must be declared here. Dump with ``to_k8s()`` (aliases, no nulls);
remove a field with a merge-patch null.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from ferry.api.base import FerryModel, Message, ShortText
from ferry.api.common import Condition, LastHandledRequests, MissedRun, Window
from ferry.constants import ANNOTATION_CREATED_BY, ANNOTATION_REQUESTED_BY
from ferry.contract.limits import MAX_BATCHES, MAX_SHORT_TEXT_CHARACTERS, fit

MAX_HISTORY = 100
MAX_MISSED_RUNS = 20
MAX_CONDITIONS = 16
MAX_GROUP_RUNS = 20

TRIGGER_PATTERN = (
    r"^(schedule|manual|retry|backfill|catchup|group:[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[0-9]+)$"
)
RUN_ID_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[0-9]+$"

def run_id(owner: str, number: int) -> str:
    """``<name>.<n>``: the id of run ``number`` of an ExportJob or JobGroup (RUN_ID_PATTERN),
    the name of its S3 folder and what users type after ``--run``."""
    return f"{owner}.{number}"


def user_name(value: str) -> str:
    """A user name as status holds it (createdBy, startedBy are ShortText): cut to fit,
    as the admission webhook cuts it and the operator again when it reads it back."""
    return fit(value, MAX_SHORT_TEXT_CHARACTERS)


def created_by(annotations: Mapping[str, str]) -> str | None:
    """status.createdBy: the user the mutating webhook recorded at CREATE, if any."""
    value = annotations.get(ANNOTATION_CREATED_BY)
    return user_name(value) if value else None


def requested_by(annotations: Mapping[str, str]) -> str | None:
    """A requested run's startedBy (ExportJob and JobGroup alike): the user the mutating
    webhook recorded with the latest run or retry request, if any."""
    value = annotations.get(ANNOTATION_REQUESTED_BY)
    return user_name(value) if value else None


Trigger = Annotated[str, Field(max_length=80, pattern=TRIGGER_PATTERN)]
RunId = Annotated[str, Field(max_length=80, pattern=RUN_ID_PATTERN)]
Location = Annotated[str, Field(max_length=2048)]
Conditions = Annotated[
    list[Condition],
    Field(
        max_length=MAX_CONDITIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]
UpcomingRuns = Annotated[list[AwareDatetime], Field(max_length=3)]
ScheduleType = Literal["one-time", "recurring", "on demand"]


class RunPhase(StrEnum):
    """Phase of one run (and, while a run exists, of its job).

    Queued: another run with the same concurrency key is in progress; starts when it ends.
    AwaitingDependency: a JobGroup run's member not reached yet (group status); an
    ExportJob shows it as its phase while a group run it belongs to runs an earlier member.
    InProgress: worker pods are exporting.
    Succeeded: every batch delivered its files and the manifest was written.
    SucceededWithErrors (ImportJob): every file loaded, some rows rejected under
    spec.maxErrors; the audit log lists them.
    PartiallySucceeded: some batches failed after their retries; the error report says
    which and why; retry re-runs only those.
    Failed: no data was delivered.
    Canceled: stopped by a user (ferry.dev/stop-requested-at) or by a group's failure policy.
    """

    QUEUED = "Queued"
    AWAITING_DEPENDENCY = "AwaitingDependency"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    SUCCEEDED_WITH_ERRORS = "SucceededWithErrors"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"
    CANCELED = "Canceled"


FINISHED_RUN_PHASES = frozenset(
    {RunPhase.SUCCEEDED, RunPhase.SUCCEEDED_WITH_ERRORS, RunPhase.PARTIALLY_SUCCEEDED,
     RunPhase.FAILED, RunPhase.CANCELED}
)

RETRYABLE_RUN_PHASES = frozenset(
    {RunPhase.FAILED, RunPhase.PARTIALLY_SUCCEEDED, RunPhase.CANCELED}
)
"""Finished runs a retry can complete, for ExportJobs and JobGroups alike (the operator
and the CLI both check this set): a retry re-runs what did not commit, into the same
run folder; a Succeeded run has nothing left to do, nor has a SucceededWithErrors one
(every file committed; its rejected rows would be rejected again)."""


class JobPhase(StrEnum):
    """Phase of an ExportJob or JobGroup as shown by kubectl get.

    The controller picks the first that applies: the current run's phase (Queued,
    AwaitingDependency, InProgress) while a run exists; Invalid when the spec cannot run
    as written (condition Ready=False, reason InvalidSchedule, InvalidTimeZone or
    InvalidSpec, says what to fix); Suspended when spec.suspend is true;
    AwaitingDependency (ExportJob) while a JobGroup run it belongs to runs an earlier
    member (status.awaitingGroupRun names it); the last run's result (Succeeded,
    SucceededWithErrors, PartiallySucceeded, Failed, Canceled); Scheduled when a next run
    is planned; otherwise Drafted (defined, never started).
    """

    DRAFTED = "Drafted"
    INVALID = "Invalid"
    SCHEDULED = "Scheduled"
    QUEUED = "Queued"
    AWAITING_DEPENDENCY = "AwaitingDependency"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    SUCCEEDED_WITH_ERRORS = "SucceededWithErrors"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"
    CANCELED = "Canceled"
    SUSPENDED = "Suspended"


class BatchPhase(StrEnum):
    """Phase of one batch of a run."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"


class BatchCounts(FerryModel):
    """Number of a run's batches in each state."""

    total: int = Field(default=0, ge=0, description="Batches in the run.")
    pending: int = Field(default=0, ge=0, description="Batches not started yet.")
    running: int = Field(default=0, ge=0, description="Batches in progress.")
    succeeded: int = Field(default=0, ge=0, description="Batches that delivered their files.")
    failed: int = Field(default=0, ge=0, description="Batches failed after all retries.")


class BatchStatus(FerryModel):
    """Progress and result of one batch (one completion index of the run's Job)."""

    index: int = Field(ge=0, description="Batch index <batch>: its files are <job>-<batch>-"
                       "<n>-<attempt>.<ext>, listed in _manifests/batch-<batch>.json.")
    phase: BatchPhase = Field(description="Pending, InProgress, Succeeded, Failed or Canceled.")
    window: Window | None = Field(default=None, description="Time slice of this batch, if any.")
    key_range: ShortText | None = Field(
        default=None, description="The batch's share of a run split by source.keyColumn: "
        'its key range as the worker planned it, e.g. "100 <= id < 200" (or its hash '
        'partition, e.g. "hash(id) mod 4 = 1", where no range can be planned).'
    )
    started_at: AwareDatetime | None = Field(default=None, description="When the batch started.")
    finished_at: AwareDatetime | None = Field(default=None, description="When the batch ended.")
    attempts: int | None = Field(default=None, ge=0, description="Pods started for this batch.")
    records_processed: int | None = Field(default=None, ge=0, description="Rows written.")
    records_total: int | None = Field(default=None, ge=0, description="Rows expected, if known.")
    records_rejected: int | None = Field(
        default=None, ge=0, description="ImportJob: rows of this batch's files rejected "
        "into the audit log.")
    bytes: int | None = Field(default=None, ge=0, description="Bytes written.")
    files: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=100)] | None = (
        Field(
            default=None,
            description="Object keys of the batch's files, relative to the run's "
            "folder (at most 100 listed; the batch manifest lists all).",
        )
    )
    message: Message | None = Field(default=None, description="Error or progress message.")


class RunStatus(FerryModel):
    """The run in progress (or queued / awaiting a dependency)."""

    id: RunId = Field(description="Run id <job>.<number>, e.g. nightly-orders.42.")
    number: int = Field(ge=1, description="Run number, counting from 1 per job.")
    trigger: Trigger = Field(
        description="What started the run: schedule, manual, retry, backfill, catchup, or "
        "group:<group>.<n> for a JobGroup run."
    )
    scheduled_for: AwareDatetime | None = Field(
        default=None, description="The schedule slot the run is for (manual runs: request time)."
    )
    window: Window | None = Field(default=None, description="The rows' time window of this run.")
    retry_of: RunId | None = Field(
        default=None, description="For trigger retry: the run whose failed batches this re-runs."
    )
    source_run: RunId | None = Field(
        default=None, description="ImportJob with spec.source.fromExport: the ExportJob run "
        "whose files this run loads, chosen when it starts (a retry loads the same run's).")
    phase: RunPhase = Field(description="Queued, AwaitingDependency, InProgress, or a final phase.")
    message: Message | None = Field(
        default=None, description="What the run is doing or waiting for."
    )
    started_by: ShortText | None = Field(
        default=None, description="User who requested the run (manual/retry), if known."
    )
    queued_at: AwareDatetime | None = Field(default=None, description="When the run became due.")
    started_at: AwareDatetime | None = Field(default=None, description="When its pods started.")
    queue_position: int | None = Field(
        default=None, ge=1, description="While Queued: 1 = next for its concurrency key."
    )
    blocked_by: RunId | None = Field(
        default=None, description="While Queued or AwaitingDependency: the run waited for."
    )
    job_name: Annotated[str, Field(max_length=63)] | None = Field(
        default=None, description="The batch/v1 Job running the batches."
    )
    batches_planned: int | None = Field(
        default=None, ge=1, le=MAX_BATCHES,
        description="Batches the run's data was split into when it started. A retry re-runs "
        "failed indexes of this same split, even if spec.batching changed since.")
    batches: BatchCounts | None = Field(default=None, description="Batches by state.")
    batch_statuses: Annotated[list[BatchStatus], Field(max_length=MAX_BATCHES)] | None = Field(
        default=None, description="Each batch's progress, by index."
    )
    records_processed: int | None = Field(default=None, ge=0, description="Rows written so far.")
    records_total: int | None = Field(default=None, ge=0, description="Rows expected, if known.")
    records_rejected: int | None = Field(
        default=None, ge=0, description="ImportJob: rows rejected so far, each in the run's "
        "audit log; the run fails once they exceed spec.maxErrors.")
    percent: int | None = Field(default=None, ge=0, le=100, description="Progress, 0-100.")
    records_per_second: int | None = Field(
        default=None, ge=0, description="Rows written per second, averaged since the run "
        "started (what etaSeconds extrapolates).")
    eta_seconds: int | None = Field(
        default=None, ge=0, description="Estimated seconds left: the rows still expected "
        "at recordsPerSecond. It can rise between samples (batches starting late, the total "
        "estimate growing as batches count their rows).")
    eta: AwareDatetime | None = Field(default=None, description="Estimated completion time.")
    bytes: int | None = Field(default=None, ge=0, description="Bytes written so far.")
    files: int | None = Field(default=None, ge=0, description="Files written so far.")
    progressed_at: AwareDatetime | None = Field(
        default=None, description="When records, bytes or finished batches last grew: the "
        "Stalled condition turns True when this is older than the operator's --stall-after.")

    @property
    def folder(self) -> str:
        """The run folder: a retry writes into the folder of the run it repairs."""
        return self.retry_of or self.id


class HistoryEntry(FerryModel):
    """Summary of a finished run (also used for status.lastRun)."""

    id: RunId = Field(description="Run id <job>.<number>.")
    number: int = Field(ge=1, description="Run number.")
    trigger: Trigger = Field(
        description="schedule, manual, retry, backfill, catchup or group:<g>.<n>."
    )
    scheduled_for: AwareDatetime | None = Field(
        default=None, description="The slot the run was for."
    )
    window: Window | None = Field(default=None, description="The rows' time window.")
    retry_of: RunId | None = Field(default=None, description="For retries: the run retried.")
    source_run: RunId | None = Field(
        default=None, description="ImportJob with spec.source.fromExport: the ExportJob run "
        "whose files it loaded.")
    started_at: AwareDatetime | None = Field(default=None, description="Start time.")
    finished_at: AwareDatetime | None = Field(default=None, description="End time.")
    duration_seconds: int | None = Field(default=None, ge=0, description="finishedAt - startedAt.")
    phase: RunPhase = Field(description="Succeeded, SucceededWithErrors (ImportJob), "
                            "PartiallySucceeded, Failed or Canceled.")
    records: int | None = Field(default=None, ge=0,
                                description="Rows exported (an ImportJob: rows loaded).")
    records_rejected: int | None = Field(
        default=None, ge=0, description="ImportJob: rows rejected under spec.maxErrors, "
        "each listed in the audit log.")
    files: int | None = Field(default=None, ge=0, description="Files written.")
    bytes: int | None = Field(default=None, ge=0, description="Bytes written.")
    batches_planned: int | None = Field(
        default=None, ge=1, le=MAX_BATCHES,
        description="Batches the run's data was split into (a retry re-runs some of them).")
    failed_batches: Annotated[list[int], Field(max_length=MAX_BATCHES)] | None = Field(
        default=None, description="Indexes of failed batches (what a retry re-runs)."
    )
    canceled_batches: Annotated[list[int], Field(max_length=MAX_BATCHES)] | None = Field(
        default=None, description="For a Canceled run: indexes of the batches not seen to "
        "commit before the stop (a retry re-runs them; one that did commit is kept).")
    manifest: Location | None = Field(
        default=None, description="s3:// URL of the run's _manifests/ folder: one "
        "batch-<i>.json per committed batch (files, counts); absent for a canceled run."
    )
    error_report: Location | None = Field(
        default=None, description="s3:// URL of the run's _errors/ folder (batch-<i>.jsonl, one "
        "line per failed attempt), if any batch failed."
    )
    audit_log: Location | None = Field(
        default=None, description="ImportJob: s3:// URL of the run's audit log of rejected "
        "rows (file, line or row number, column, reason, raw value), if any was rejected.")
    message: Message | None = Field(default=None, description="Result summary or error.")
    started_by: ShortText | None = Field(default=None, description="User who requested it.")
    sealed: bool | None = Field(
        default=None, description="False while the run's marker _run.json is being "
        "written (a one-pod seal Job, after the run ended); True once it is, or once the "
        "seal gave up (message says why). Absent for a run that never started.")
    run_marker: Location | None = Field(
        default=None, description="s3:// URL of the run folder's _run.json, which a "
        "downstream reader waits for (docs/worker.md): written when the run ended.")
    complete: bool | None = Field(
        default=None, description="From the run marker: every batch of the run folder "
        "committed (after a retry, the folder as a whole).")
    missing_batches: Annotated[list[int], Field(max_length=MAX_BATCHES)] | None = Field(
        default=None, description="From the run marker: batches of the folder with no "
        "committed manifest.")

    @property
    def folder(self) -> str:
        """The run folder: a retry writes into the folder of the run it repairs."""
        return self.retry_of or self.id

    def batches_to_retry(self) -> list[int] | None:
        """The batch indexes a retry of this run re-runs; None for all of them (a run
        canceled before it started has no batches yet)."""
        if self.phase == RunPhase.CANCELED and self.batches_planned is None:
            return None
        return sorted({*(self.failed_batches or []), *(self.canceled_batches or [])})


class GroupRunRecord(FerryModel):
    """A JobGroup run this job answered: the run it started for it, if any.

    Kept apart from history (which spec.historyLimit may trim) so that a group run is
    never started twice and the group can always tell that its member answered.
    """

    group_run: RunId = Field(description="The group run, <group>.<number>.")
    run_id: RunId | None = Field(
        default=None, description="This job's run for it; absent if none was needed."
    )
    message: Message | None = Field(default=None, description="Why no run was needed.")


class Backfill(FerryModel):
    """A backfill: one run per past schedule slot in [from, to), one after another."""

    request: Annotated[str, Field(max_length=128)] = Field(
        description='The annotation value, "<from>/<to>".')
    from_: AwareDatetime = Field(alias="from", description="Inclusive start of the range.")
    to: AwareDatetime = Field(description="Exclusive end of the range.")
    total: int = Field(ge=0, description="Runs the backfill creates (one per past slot).")
    started: int = Field(default=0, ge=0, description="Runs started so far.")
    last_slot: AwareDatetime | None = Field(
        default=None, description="Slot of the latest backfill run started.")


class ExportJobStatus(FerryModel):
    """Observed state of an ExportJob, written only by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status reflects."
    )
    phase: JobPhase | None = Field(
        default=None,
        description="Drafted, Invalid, Scheduled, Queued, AwaitingDependency, InProgress, "
        "Succeeded, SucceededWithErrors (ImportJob), PartiallySucceeded, Failed, Canceled or "
        "Suspended (see docs/api.md).",
    )
    conditions: Conditions | None = Field(
        default=None, description="Ready, Running, Suspended, Stalled (Kubernetes conditions)."
    )
    schedule_summary: ShortText | None = Field(
        default=None, description='Human summary of spec.schedule, e.g. "every 4h at :15 UTC".'
    )
    schedule_type: ScheduleType | None = Field(
        default=None, description="one-time (schedule.once), recurring (any other schedule) "
        "or on demand (no schedule: runs only when asked)."
    )
    progress: ShortText | None = Field(
        default=None, description='Progress of the current run, e.g. "45% 4.5M/10M".'
    )
    eta: ShortText | None = Field(
        default=None, description='Estimated time left of the current run, e.g. "12m".'
    )
    next_run_at: AwareDatetime | None = Field(default=None, description="Next scheduled slot.")
    upcoming_runs: UpcomingRuns | None = Field(
        default=None, description="The next (up to) 3 scheduled slots."
    )
    concurrency_key: Annotated[str, Field(max_length=253)] | None = Field(
        default=None, description="Effective concurrency key (spec.concurrency.key or derived)."
    )
    created_by: ShortText | None = Field(
        default=None, description="User who created the job (from the admission webhook)."
    )
    last_handled: LastHandledRequests | None = Field(
        default=None, description="Last handled run/stop/retry request annotation values."
    )
    run_counter: int | None = Field(
        default=None, ge=0, description="Number of the most recent run (run ids count up)."
    )
    one_time_started_at: AwareDatetime | None = Field(
        default=None,
        description="For schedule.once: when the run started. From then on the spec is "
        "frozen (a CEL rule on the object checks it) and the job stays suspended.",
    )
    last_scheduled_slot: AwareDatetime | None = Field(
        default=None,
        description="Newest schedule slot already decided (run, or recorded in missedRuns). "
        "A slot at or before it never runs again, whatever restarts, DST or re-applies do.",
    )
    awaiting_group_run: RunId | None = Field(
        default=None, description="While phase is AwaitingDependency: the JobGroup run, "
        "<group>.<n>, whose earlier member runs before this job's turn.")
    group_runs: Annotated[list[GroupRunRecord], Field(max_length=MAX_GROUP_RUNS)] | None = Field(
        default=None,
        description="JobGroup runs this job answered, newest first (at most 20); "
        "see docs/groups.md.",
    )
    current_run: RunStatus | None = Field(default=None, description="The active run, if any.")
    last_run: HistoryEntry | None = Field(default=None, description="The most recent finished run.")
    history: Annotated[list[HistoryEntry], Field(max_length=MAX_HISTORY)] | None = Field(
        default=None, description="Finished runs, newest first, at most spec.historyLimit."
    )
    missed_runs: Annotated[list[MissedRun], Field(max_length=MAX_MISSED_RUNS)] | None = Field(
        default=None, description="Recent slots that did not run, newest first (at most 20)."
    )
    backfill: Backfill | None = Field(
        default=None, description="The latest backfill request (ferry.dev/backfill) and how "
        "far it got.")
    last_successful_window_end: AwareDatetime | None = Field(
        default=None, description="End of the last successful run's window (incremental start)."
    )
    data_lag_seconds: int | None = Field(
        default=None, ge=0, description="Age of the newest exported data when the operator "
        "last wrote this status (a run's start or end, a slot, a request): that time minus "
        "lastSuccessfulWindowEnd. Not refreshed while nothing happens; alert on "
        "lastSuccessfulWindowEnd, which does not go stale."
    )


class ImportJobStatus(ExportJobStatus):
    """Observed state of an ImportJob, written only by the operator.

    The fields of an ExportJob's status (an ImportJobStatus is one, so the reconcile loop
    and the CLI handle both kinds with the same code); the time-window fields
    (lastSuccessfulWindowEnd, dataLagSeconds, backfill) stay unset. Runs count rows
    rejected into the audit log (recordsRejected, history[].auditLog).
    """
