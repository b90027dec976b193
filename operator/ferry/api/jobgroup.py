"""The JobGroup resource: ExportJobs run one after another, on demand or on a schedule."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field

from ferry.api.base import (
    RESOURCE_NAME_MAX,
    FerryModel,
    Message,
    ShortText,
    cel,
    require,
    validations,
)
from ferry.api.common import LastHandledRequests, MissedRun, ObjectMeta
from ferry.api.schedule import Schedule
from ferry.api.status import (
    MAX_HISTORY,
    MAX_MISSED_RUNS,
    Conditions,
    JobPhase,
    RunId,
    RunPhase,
    ScheduleType,
    Trigger,
    UpcomingRuns,
)
from ferry.constants import EXPORTJOB_KIND, IMPORTJOB_KIND, JOBGROUP_KIND

MAX_MEMBERS = 50
IMPORT_MEMBER_PREFIX = "importjob/"
"""A member ``importjob/<name>`` is an ImportJob; a bare ``<name>`` an ExportJob (as kubectl
names a resource: ``kind/name``)."""

MSG_MEMBER_NAME = (f"a member is an ExportJob's name or importjob/<name>, the name at most "
                   f"{RESOURCE_NAME_MAX} characters")


def member_kind(ref: str) -> tuple[str, str]:
    """(kind, name) of a member reference."""
    if ref.startswith(IMPORT_MEMBER_PREFIX):
        return IMPORTJOB_KIND, ref.removeprefix(IMPORT_MEMBER_PREFIX)
    return EXPORTJOB_KIND, ref


def _check_member(ref: str) -> str:
    require(len(member_kind(ref)[1]) <= RESOURCE_NAME_MAX, MSG_MEMBER_NAME)
    return ref


MemberRef = Annotated[
    str,
    Field(min_length=1, max_length=len(IMPORT_MEMBER_PREFIX) + RESOURCE_NAME_MAX,
          pattern=r"^(importjob/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
          json_schema_extra=validations(cel(
              f"self.size() <= (self.startsWith('{IMPORT_MEMBER_PREFIX}') ? "
              f"{len(IMPORT_MEMBER_PREFIX) + RESOURCE_NAME_MAX} : {RESOURCE_NAME_MAX})",
              MSG_MEMBER_NAME))),
    AfterValidator(_check_member),
]


class FailurePolicy(StrEnum):
    """What a group run does when a member run does not succeed."""

    STOP_ON_FAILURE = "StopOnFailure"
    """Stop at the first member that does not succeed; later members are Skipped."""
    CONTINUE = "Continue"
    """Run every member; the group run is PartiallySucceeded if any failed."""


class JobGroupSpec(FerryModel):
    """Desired state of a JobGroup."""

    title: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="Human-readable title shown by kubectl get (required, 1-200 characters)."
    )
    description: Annotated[str, Field(max_length=4096)] | None = Field(
        default=None, description="Free-form description."
    )
    members: Annotated[list[MemberRef], Field(min_length=1, max_length=MAX_MEMBERS)] = Field(
        description="Jobs in this namespace, run in this order, one at a time (1-50, each "
        "listed once): an ExportJob by its name, an ImportJob as importjob/<name>. A "
        "missing member is reported as condition Ready=False, reason MemberNotFound. "
        "Members are usually jobs without their own schedule.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    schedule: Schedule | None = Field(
        default=None,
        description="Absent: the group runs on demand only.",
    )
    suspend: bool = Field(default=False, description="true: start no new scheduled group runs.")
    failure_policy: FailurePolicy = Field(
        default=FailurePolicy.STOP_ON_FAILURE,
        description="StopOnFailure (default): stop at the first member that does not "
        "succeed. Continue: run the remaining members anyway.",
    )
    history_limit: int = Field(
        default=20, ge=1, le=100, description="Finished group runs kept in status.history (1-100)."
    )
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the operator deletes this JobGroup (RFC 3339); its member "
        "ExportJobs are not deleted.",
    )


class MemberPhase(StrEnum):
    """Where one member stands in a group run.

    The run phases, plus Skipped: the member was never asked to run (an earlier member
    failed under StopOnFailure, the group run was stopped, or the member is suspended).
    """

    AWAITING_DEPENDENCY = "AwaitingDependency"
    QUEUED = "Queued"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    SUCCEEDED_WITH_ERRORS = "SucceededWithErrors"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"
    CANCELED = "Canceled"
    SKIPPED = "Skipped"


class MemberRun(FerryModel):
    """One member's part in a group run."""

    name: MemberRef = Field(description="The member: an ExportJob's name, or "
                            "importjob/<name>.")
    run_id: RunId | None = Field(default=None, description="The member's run id, once created.")
    phase: MemberPhase = Field(
        description="AwaitingDependency (not reached yet), Queued (asked to run; waits for "
        "the member or its data source), InProgress, Succeeded, SucceededWithErrors (an "
        "ImportJob member), PartiallySucceeded, Failed, Canceled, or Skipped (never asked to "
        "run)."
    )
    requested_at: AwareDatetime | None = Field(
        default=None,
        description="When the group asked the member to run; a job in two groups serves "
        "the earlier request first.",
    )
    started_at: AwareDatetime | None = Field(default=None, description="Start time.")
    finished_at: AwareDatetime | None = Field(default=None, description="End time.")
    message: Message | None = Field(default=None, description="Details, e.g. why it failed.")


Members = Annotated[list[MemberRun], Field(max_length=MAX_MEMBERS)]


class GroupRunStatus(FerryModel):
    """The group run in progress."""

    id: RunId = Field(description="Group run id <group>.<number>.")
    number: int = Field(ge=1, description="Run number, counting from 1 per group.")
    trigger: Trigger = Field(description="schedule, manual, retry, catchup or backfill.")
    scheduled_for: AwareDatetime | None = Field(default=None, description="The slot, if scheduled.")
    retry_of: RunId | None = Field(
        default=None, description="For trigger retry: the group run it resumes."
    )
    phase: RunPhase = Field(description="The group run's phase.")
    message: Message | None = Field(default=None, description="What the group run is doing.")
    started_by: ShortText | None = Field(default=None, description="User who requested it.")
    started_at: AwareDatetime | None = Field(default=None, description="Start time.")
    member_index: int | None = Field(
        default=None, ge=0, description="Index (0-based) of the member currently running."
    )
    members: Members | None = Field(default=None, description="Each member's run, in order.")


class GroupHistoryEntry(FerryModel):
    """Summary of a finished group run (also used for status.lastRun)."""

    id: RunId = Field(description="Group run id <group>.<number>.")
    number: int = Field(ge=1, description="Run number.")
    trigger: Trigger = Field(description="What started the group run.")
    scheduled_for: AwareDatetime | None = Field(default=None, description="The slot, if any.")
    retry_of: RunId | None = Field(default=None, description="For retries: the run resumed.")
    started_at: AwareDatetime | None = Field(default=None, description="Start time.")
    finished_at: AwareDatetime | None = Field(default=None, description="End time.")
    duration_seconds: int | None = Field(default=None, ge=0, description="Duration.")
    phase: RunPhase = Field(description="Succeeded, PartiallySucceeded, Failed or Canceled.")
    members: Members | None = Field(default=None, description="Each member's run and result.")
    message: Message | None = Field(default=None, description="Result summary.")
    started_by: ShortText | None = Field(default=None, description="User who requested it.")


class JobGroupStatus(FerryModel):
    """Observed state of a JobGroup, written only by the operator."""

    observed_generation: int | None = Field(default=None, ge=0, description="Generation seen.")
    phase: JobPhase | None = Field(
        default=None, description="Same values and precedence as ExportJob status.phase."
    )
    conditions: Conditions | None = Field(
        default=None, description="Ready (members resolve, schedule valid), Running, Suspended."
    )
    schedule_summary: ShortText | None = Field(
        default=None, description='Human summary of spec.schedule, or "on demand".'
    )
    schedule_type: ScheduleType | None = Field(
        default=None, description="one-time (schedule.once), recurring (any other schedule) "
        "or on demand (no schedule)."
    )
    member_summary: ShortText | None = Field(
        default=None, description='The Members column: how many members, and how many of '
        'them are missing, e.g. "3 jobs" or "3 jobs, 1 missing".'
    )
    current: ShortText | None = Field(
        default=None, description='Position of the current run, e.g. "2/3" (member 2 of 3).'
    )
    next_run_at: AwareDatetime | None = Field(default=None, description="Next scheduled slot.")
    upcoming_runs: UpcomingRuns | None = Field(default=None, description="Next (up to) 3 slots.")
    created_by: ShortText | None = Field(default=None, description="User who created the group.")
    last_handled: LastHandledRequests | None = Field(
        default=None, description="Last handled run/stop/retry request annotation values."
    )
    run_counter: int | None = Field(default=None, ge=0, description="Number of the latest run.")
    last_scheduled_slot: AwareDatetime | None = Field(
        default=None,
        description="Newest schedule slot already decided (run, or recorded in missedRuns); "
        "it never runs again. For schedule.once: the slot of its only run.",
    )
    current_run: GroupRunStatus | None = Field(default=None, description="The active group run.")
    last_run: GroupHistoryEntry | None = Field(default=None, description="Latest finished run.")
    history: Annotated[list[GroupHistoryEntry], Field(max_length=MAX_HISTORY)] | None = Field(
        default=None, description="Finished group runs, newest first, at most spec.historyLimit."
    )
    missed_runs: Annotated[list[MissedRun], Field(max_length=MAX_MISSED_RUNS)] | None = Field(
        default=None, description="Recent slots that did not run, newest first."
    )


class JobGroup(FerryModel):
    """A JobGroup object as stored by the API server."""

    api_version: Literal["ferry.dev/v1alpha1"] = Field(
        default="ferry.dev/v1alpha1", description="API version."
    )
    kind: Literal["JobGroup"] = Field(default=JOBGROUP_KIND, description="JobGroup.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Object metadata.")
    spec: JobGroupSpec = Field(description="Members, schedule and failure policy.")
    status: JobGroupStatus | None = Field(default=None, description="Observed state.")
