"""Small types shared by ExportJob and JobGroup: Secret references, conditions,
time windows, object metadata and the record of handled imperative requests."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from ferry.api.base import FerryModel, Message, SecretDataKey, SecretName


class SecretKeyRef(FerryModel):
    """A key of a Secret in the resource's own namespace."""

    name: SecretName = Field(description="Name of the Secret, in the same namespace.")
    key: SecretDataKey = Field(description="Key inside the Secret's data.")


class ConditionStatus(StrEnum):
    """Kubernetes condition status values."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """Condition types the Ferry controllers set (others may be added; the field is open).

    - Ready: the spec is usable (schedule parses, time zone exists, members resolve,
      a run's pods can start). False with a ConditionReason (InvalidSchedule,
      InvalidTimeZone, InvalidSpec, MemberNotFound, SecretNotFound, WorkerCannotStart,
      ConfigurationError) and a message that says what to fix.
    - Running: a run is in progress (or queued / awaiting a dependency).
    - Suspended: spec.suspend is true, or a one-time job has started.
    - Stalled: the controller cannot make progress without intervention.
    """

    READY = "Ready"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    STALLED = "Stalled"


class ConditionReason(StrEnum):
    """Every reason the Ferry controllers write into a condition: one place, documented
    in docs/api.md ("Conditions"; a unit test checks each is listed there). Running=True
    carries the active run's phase instead."""

    VALID = "Valid"
    """Ready=True: the spec is usable (a group: every member exists too)."""
    INVALID_SCHEDULE = "InvalidSchedule"
    """Ready=False: spec.schedule does not parse (full cron syntax, which CEL cannot check)."""
    INVALID_TIME_ZONE = "InvalidTimeZone"
    """Ready=False: spec.schedule.timeZone is not an IANA zone the operator knows."""
    INVALID_SPEC = "InvalidSpec"
    """Ready=False: the models refuse a spec the CRD schema let through."""
    MEMBER_NOT_FOUND = "MemberNotFound"
    """Ready=False (JobGroup): a member ExportJob does not exist."""
    SECRET_NOT_FOUND = "SecretNotFound"
    """Ready=False, Stalled=True: a run's pods wait for a Secret, or a key in one, that the
    spec references and that does not exist."""
    WORKER_CANNOT_START = "WorkerCannotStart"
    """Ready=False, Stalled=True: a run's pods cannot start for another reason (image,
    container configuration)."""
    CONFIGURATION_ERROR = "ConfigurationError"
    """Ready=False: a run failed on its configuration (worker exit 3); cleared by a run
    that succeeds or a spec edit."""
    NO_PROGRESS = "NoProgress"
    """Stalled=True: the run in progress has not moved for the operator's --stall-after."""
    PROGRESSING = "Progressing"
    """Stalled=False: nothing is stuck."""
    IDLE = "Idle"
    """Running=False: no run is active."""
    SPEC_SUSPEND = "SpecSuspend"
    """Suspended=True: spec.suspend is true."""
    ONE_TIME_STARTED = "OneTimeStarted"
    """Suspended=True: a one-time job has started (clone it to run again)."""
    ACTIVE = "Active"
    """Suspended=False: scheduled runs are enabled."""


CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(FerryModel):
    """A Kubernetes-convention condition (the shape of metav1.Condition)."""

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)] = Field(
        description="Condition type in CamelCase: Ready, Running, Suspended, Stalled."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Annotated[
        str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)
    ] = Field(description="Machine-readable CamelCase reason for the last transition.")
    message: Annotated[str, Field(max_length=32768)] = Field(
        default="", description="Human-readable details; says what to do when status is bad."
    )
    last_transition_time: AwareDatetime = Field(
        description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )


class Window(FerryModel):
    """A half-open time interval [from, to) of source data (by the timestamp column)."""

    from_: AwareDatetime | None = Field(
        default=None,
        alias="from",
        description="Inclusive start (RFC 3339); absent means from the beginning of the data.",
    )
    to: AwareDatetime | None = Field(
        default=None, description="Exclusive end (RFC 3339); absent means up to now."
    )


class LastHandledRequests(FerryModel):
    """The last value of each imperative annotation the operator acted on.

    Re-applying an annotation with the same value does nothing; a new value (a new
    timestamp) is a new request.
    """

    run_requested_at: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="Last handled value of the ferry.dev/run-requested-at annotation."
    )
    stop_requested_at: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description="Last handled value of the ferry.dev/stop-requested-at annotation.",
    )
    retry_requested_at: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description="Last handled value of the ferry.dev/retry-requested-at annotation.",
    )
    backfill: Annotated[str, Field(max_length=128)] | None = Field(
        default=None,
        description="Last handled value of the ferry.dev/backfill annotation.",
    )


class MissedRunReason(StrEnum):
    """Why a schedule slot did not produce a run."""

    SKIPPED = "Skipped"
    """missedRunPolicy Skip (or Latest, for all but the newest) dropped the slot."""
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    """The slot was found later than schedule.startingDeadlineSeconds allows."""
    CATCH_UP_LIMIT = "CatchUpLimit"
    """More slots were missed than schedule.maxCatchUp allows to run."""
    CONCURRENCY_FORBIDDEN = "ConcurrencyForbidden"
    """concurrency.policy Forbid and another run on the same key was in progress."""
    SUSPENDED = "Suspended"
    """The job (or its group) was suspended at the slot time."""


class MissedRun(FerryModel):
    """A schedule slot that did not produce a run."""

    scheduled_for: AwareDatetime = Field(description="The slot (RFC 3339).")
    reason: MissedRunReason = Field(description="Why the slot was not run.")
    message: Message | None = Field(default=None, description="Details for a reader.")


class ObjectMeta(FerryModel):
    """The parts of metav1.ObjectMeta Ferry reads (the API server owns the rest)."""

    name: Annotated[str, Field(max_length=253)] | None = Field(
        default=None, description="Object name."
    )
    namespace: Annotated[str, Field(max_length=63)] | None = Field(
        default=None, description="Object namespace."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    generation: int | None = Field(default=None, description="Spec generation.")
    resource_version: str | None = Field(default=None, description="Resource version.")
    uid: str | None = Field(default=None, description="Object UID.")
    creation_timestamp: datetime | None = Field(default=None, description="Creation time.")
