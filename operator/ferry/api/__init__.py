"""The ferry.dev/v1alpha1 API: pydantic models of ExportJob and JobGroup.

These models are the single source of truth: ``python -m ferry.api.crdgen`` generates
the CRDs in ``crds/`` from them, and the controller parses objects with them.
"""

from ferry.api.common import (
    Condition,
    ConditionStatus,
    ConditionType,
    LastHandledRequests,
    MissedRun,
    MissedRunReason,
    ObjectMeta,
    SecretKeyRef,
    Window,
)
from ferry.api.exportjob import (
    Batching,
    Concurrency,
    ConcurrencyPolicy,
    ExportJob,
    ExportJobSpec,
)
from ferry.api.jobgroup import (
    FailurePolicy,
    GroupHistoryEntry,
    GroupRunStatus,
    JobGroup,
    JobGroupSpec,
    JobGroupStatus,
    MemberRun,
)
from ferry.api.output import Compression, Format, Output, S3CredentialsSecretRef, S3Destination
from ferry.api.pod import Resources, Toleration, WorkerPod
from ferry.api.schedule import (
    DEFAULT_MAX_CATCH_UP,
    CronSchedule,
    DailySchedule,
    HourlySchedule,
    MissedRunPolicy,
    MonthlySchedule,
    OnceSchedule,
    Schedule,
    Weekday,
    WeeklySchedule,
)
from ferry.api.source import Filter, Source, SourceType
from ferry.api.status import (
    FINISHED_RUN_PHASES,
    BatchCounts,
    BatchPhase,
    BatchStatus,
    ExportJobStatus,
    HistoryEntry,
    JobPhase,
    RunPhase,
    RunStatus,
)
from ferry.api.timeframe import (
    AllTimeframe,
    FixedTimeframe,
    IncrementalTimeframe,
    RelativeTimeframe,
    Timeframe,
)
from ferry.api.units import parse_duration, parse_quantity
from ferry.api.validators import validate_cron, validate_schedule, validate_time_zone

__all__ = [
    "DEFAULT_MAX_CATCH_UP",
    "FINISHED_RUN_PHASES",
    "AllTimeframe",
    "BatchCounts",
    "BatchPhase",
    "BatchStatus",
    "Batching",
    "Compression",
    "Concurrency",
    "ConcurrencyPolicy",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "CronSchedule",
    "DailySchedule",
    "ExportJob",
    "ExportJobSpec",
    "ExportJobStatus",
    "FailurePolicy",
    "Filter",
    "FixedTimeframe",
    "Format",
    "GroupHistoryEntry",
    "GroupRunStatus",
    "HistoryEntry",
    "HourlySchedule",
    "IncrementalTimeframe",
    "JobGroup",
    "JobGroupSpec",
    "JobGroupStatus",
    "JobPhase",
    "LastHandledRequests",
    "MemberRun",
    "MissedRun",
    "MissedRunPolicy",
    "MissedRunReason",
    "MonthlySchedule",
    "ObjectMeta",
    "OnceSchedule",
    "Output",
    "RelativeTimeframe",
    "Resources",
    "RunPhase",
    "RunStatus",
    "S3CredentialsSecretRef",
    "S3Destination",
    "Schedule",
    "SecretKeyRef",
    "Source",
    "SourceType",
    "Timeframe",
    "Toleration",
    "Weekday",
    "WeeklySchedule",
    "Window",
    "WorkerPod",
    "parse_duration",
    "parse_quantity",
    "validate_cron",
    "validate_schedule",
    "validate_time_zone",
]
