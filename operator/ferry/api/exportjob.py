"""The ExportJob resource: what to export, when, and where to.

ExportJobSpec is written by users (and GitOps tools) only; the operator never
writes spec. Everything the operator learns lives in ExportJobStatus.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from ferry.api.base import (
    FerryModel,
    at_most_one_rule,
    cel,
    count_set,
    require,
    validations,
)
from ferry.api.common import ObjectMeta
from ferry.api.output import Output
from ferry.api.pod import WorkerPod
from ferry.api.schedule import Schedule
from ferry.api.source import Source
from ferry.api.status import ExportJobStatus
from ferry.api.timeframe import Timeframe, all_data
from ferry.constants import EXPORTJOB_KIND

CONCURRENCY_KEY_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.:/]*[A-Za-z0-9])?$"

MSG_BATCHING_ONE_OF = "set at most one of batches or rowsPerBatch"
MSG_TIMEFRAME_NEEDS_TIMESTAMP = (
    "spec.source.timestampColumn is required by a fixed, relative or incremental "
    "spec.timeframe: set it, or use timeframe.all"
)
MSG_ROWS_NEED_KEY = (
    "spec.source.keyColumn is required by spec.batching.rowsPerBatch (batches are key ranges)"
)
MSG_BATCHES_NEED_COLUMN = (
    "spec.batching.batches > 1 needs spec.source.keyColumn or spec.source.timestampColumn "
    "to split the data on"
)
MSG_ONE_TIME_FROZEN = (
    "spec cannot change after a one-time job (schedule.once) has started "
    "(status.oneTimeStartedAt is set): create a new ExportJob instead"
)


Parallelism = Annotated[
    int, Field(ge=1, le=100, description="Batches running at the same time (1-100).")
]
RetriesPerBatch = Annotated[
    int,
    Field(ge=0, le=10,
          description="Times a failed batch is retried before it counts as failed (0-10)."),
]
"""How many batches run at once and how often a failed one is retried: the same two
knobs, with the same bounds, for every kind's batching."""


class Batching(FerryModel):
    """How a run is split into batches (one worker pod each) and how they are retried.

    Without batches or rowsPerBatch a run is one batch.
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(at_most_one_rule(["batches", "rowsPerBatch"]), MSG_BATCHING_ONE_OF)
        )
    )

    batches: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Split each run into this many batches (1-1000): hash partitions of "
        "source.keyColumn when it is set (NULL keys in batch 0), else equal slices of the "
        "time window (a window without both ends runs as one batch).",
    )
    rows_per_batch: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000_000,
        description="Aim for batches of about this many rows: hash partitions of "
        "source.keyColumn, as many as the previous successful run's records divided by this "
        "(rounded up, at most 1000). The operator never queries the source, so the first run "
        "is one batch; the Started event says how the count was chosen.",
    )
    parallelism: Parallelism = 1
    retries_per_batch: RetriesPerBatch = 2

    @model_validator(mode="after")
    def _check(self) -> Batching:
        require(count_set(self, ["batches", "rows_per_batch"]) <= 1, MSG_BATCHING_ONE_OF)
        return self


class ConcurrencyPolicy(StrEnum):
    """What a due run does while another run with the same concurrency key is in progress."""

    QUEUE = "Queue"
    """Wait (phase Queued) and start automatically when the other run ends."""
    FORBID = "Forbid"
    """Do not run; the slot is recorded in status.missedRuns (ConcurrencyForbidden)."""


class Concurrency(FerryModel):
    """Serialization of runs that touch the same database table.

    Runs of one job never overlap. Runs of different jobs with the same key run one at
    a time.
    """

    key: (
        Annotated[str, Field(min_length=1, max_length=253, pattern=CONCURRENCY_KEY_PATTERN)] | None
    ) = Field(
        default=None,
        description="Runs with equal keys (in the namespace) run one at a time. Absent: "
        "derived by the controller from the connection Secret and the table (or a hash "
        "of the query); shown in status.concurrencyKey.",
    )
    policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.QUEUE,
        description="Queue (default): wait for the other run, then start. Forbid: skip "
        "this run and record it in status.missedRuns.",
    )


class ExportJobSpec(FerryModel):
    """Desired state of an ExportJob."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.timeframe) || has(self.timeframe.all) || "
                "has(self.source.timestampColumn)",
                MSG_TIMEFRAME_NEEDS_TIMESTAMP,
                field_path=".source.timestampColumn",
            ),
            cel(
                "!has(self.batching) || !has(self.batching.rowsPerBatch) || "
                "has(self.source.keyColumn)",
                MSG_ROWS_NEED_KEY,
                field_path=".source.keyColumn",
            ),
            cel(
                "!has(self.batching) || !has(self.batching.batches) || self.batching.batches == 1"
                " || has(self.source.keyColumn) || has(self.source.timestampColumn)",
                MSG_BATCHES_NEED_COLUMN,
                field_path=".batching.batches",
            ),
        )
    )

    title: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="Human-readable title shown by kubectl get (required, 1-200 characters)."
    )
    description: Annotated[str, Field(max_length=4096)] | None = Field(
        default=None, description="Free-form description of what the export is for."
    )
    source: Source = Field(description="The data to export.")
    timeframe: Timeframe = Field(
        default_factory=all_data,
        description="Absent: all data.",
    )
    schedule: Schedule | None = Field(
        default=None,
        description="Absent: the job runs only on demand (ferry.dev/run-requested-at "
        "annotation, kubectl ferry run) or as a JobGroup member.",
    )
    suspend: bool = Field(
        default=False,
        description="true: start no new scheduled runs (a running run continues; stop it "
        "with ferry.dev/stop-requested-at). Slots that pass while suspended are recorded in "
        "status.missedRuns (reason Suspended) and are not run on resume.",
    )
    output: Output
    batching: Batching | None = Field(
        default=None,
        description="Absent: one batch per run, 2 retries.",
    )
    concurrency: Concurrency | None = Field(
        default=None,
        description="Absent: key derived from the source, policy Queue.",
    )
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the operator deletes this ExportJob (RFC 3339), like a seed "
        "service's expiration date. Not before a running run ends; exported files are never "
        "deleted. A past time deletes the job at the next reconcile.",
    )
    history_limit: int = Field(
        default=20,
        ge=1,
        le=100,
        description="Finished runs kept in status.history (1-100, default 20); the full record "
        "of every run stays in its manifest in the bucket.",
    )
    worker: WorkerPod | None = None

    @model_validator(mode="after")
    def _check(self) -> ExportJobSpec:
        require(
            self.timeframe.all is not None or self.source.timestamp_column is not None,
            MSG_TIMEFRAME_NEEDS_TIMESTAMP,
        )
        batching = self.batching or Batching()
        require(
            batching.rows_per_batch is None or self.source.key_column is not None,
            MSG_ROWS_NEED_KEY,
        )
        require(
            (batching.batches or 1) == 1
            or self.source.key_column is not None
            or self.source.timestamp_column is not None,
            MSG_BATCHES_NEED_COLUMN,
        )
        return self

    @property
    def is_one_time(self) -> bool:
        """True for a schedule.once job (its spec is frozen once it has started)."""
        return self.schedule is not None and self.schedule.once is not None


class ExportJob(FerryModel):
    """An ExportJob object as stored by the API server."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(oldSelf.status) || !has(oldSelf.status.oneTimeStartedAt) || "
                "self.spec == oldSelf.spec",
                MSG_ONE_TIME_FROZEN,
                field_path=".spec",
            ),
        )
    )

    api_version: Literal["ferry.dev/v1alpha1"] = Field(
        default="ferry.dev/v1alpha1", description="ferry.dev/v1alpha1."
    )
    kind: Literal["ExportJob"] = Field(default=EXPORTJOB_KIND, description="ExportJob.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Object metadata.")
    spec: ExportJobSpec = Field(description="What to export, when and where to.")
    status: ExportJobStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
