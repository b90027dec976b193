"""The ImportJob resource: which files to load into which PostgreSQL table, how, and when.

Everything an ImportJob shares with an ExportJob (schedule, suspend, expiry, history,
batch retries, concurrency, worker pods, Secret references, the S3 bucket fields, the
file formats, the status) is the ExportJob's own type, imported, so both kinds read and
validate alike and the reconcile loop drives both. What only imports have lives here,
in ``importsource`` and in ``destination``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from ferry.api.base import FerryModel, cel, require, validations
from ferry.api.common import ObjectMeta
from ferry.api.destination import Destination
from ferry.api.exportjob import Concurrency, Parallelism, RetriesPerBatch
from ferry.api.importsource import ImportSource
from ferry.api.output import BucketName, Format, KeyPrefix
from ferry.api.pod import WorkerPod
from ferry.api.schedule import Schedule
from ferry.api.source import ColumnList
from ferry.api.status import ImportJobStatus
from ferry.constants import IMPORTJOB_KIND
from ferry.contract.limits import MAX_BATCHES

MAX_KEY_COLUMNS = 32
"""PostgreSQL's INDEX_MAX_KEYS: a merge key needs a unique index over these columns."""
CSV_CHARACTER_PATTERN = r"^[\t -\[\]-~]$"
"""One printable ASCII character other than backslash, or a tab: what a single-byte CSV
reader can split on, and what the worker's plan accepts."""
NULL_STRING_PATTERN = r"^[^\r\n\x00]*$"
PERCENT_PATTERN = r"^(100([.]0{1,3})?|[0-9]{1,2}([.][0-9]{1,3})?)%$"
"""At most three decimals, as the worker's plan takes them."""
MAX_ERRORS_CHARACTERS = 16

MSG_CSV_QUOTE_IS_DELIMITER = "csv.delimiter and csv.quote must be different characters"
MSG_CSV_NEEDS_CSV = "spec.csv applies only to format csv: remove it, or set format: csv"
MSG_MERGE_NEEDS_KEYS = (
    "spec.keyColumns is required by mode Merge: rows whose key columns match are updated, "
    "the others inserted"
)
MSG_KEYS_NEED_MERGE = "spec.keyColumns applies only to mode Merge: remove it, or set mode: Merge"
MSG_KEYS_MAPPED = (
    "every spec.keyColumns entry must be a spec.destination.columns[].name: a merge "
    "matches rows on loaded columns"
)
MSG_OVERWRITE_ONE_BATCH = (
    "spec.batching.batches must be 1 with mode Overwrite: the table's contents are "
    "replaced in one transaction"
)
MSG_NEW_FILES_OVERWRITE = (
    "spec.newFilesOnly cannot be combined with mode Overwrite: the table would be replaced "
    "by the new files alone"
)
MSG_MAX_ERRORS = (
    "maxErrors must be a number of rows (0 or more) or a percentage of a batch's rows "
    "from 0% to 100%, e.g. 2% or 0.5%"
)
MSG_ONE_TIME_FROZEN_IMPORT = (
    "spec cannot change after a one-time job (schedule.once) has started "
    "(status.oneTimeStartedAt is set): create a new ImportJob instead"
)


class ImportMode(StrEnum):
    """How loaded rows meet the rows already in the table."""

    APPEND = "Append"
    """Insert every row."""
    MERGE = "Merge"
    """Upsert on spec.keyColumns: update the rows whose keys match, insert the others."""
    OVERWRITE = "Overwrite"
    """Replace the table's contents in one transaction: readers see the old rows or the
    new ones, never a mix; a run that fails leaves the table as it was."""


CsvCharacter = Annotated[str, Field(min_length=1, max_length=1, pattern=CSV_CHARACTER_PATTERN)]


class CsvOptions(FerryModel):
    """How CSV files are read (format csv only)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.delimiter != self.quote", MSG_CSV_QUOTE_IS_DELIMITER, field_path=".quote")
        )
    )

    header: bool = Field(
        default=True,
        description="true (default): the first line names the columns, mapped by name. "
        "false: there is none; the fields are the table's insertable columns in table "
        "order, or with spec.destination.columns the positions their from gives.",
    )
    delimiter: CsvCharacter = Field(
        default=",", description="Field separator: one printable ASCII character other "
        'than backslash, or a tab (default ",").'
    )
    quote: CsvCharacter = Field(
        default='"', description='Quote character, doubled inside a quoted field (default ").'
    )
    null_string: Annotated[str, Field(max_length=64, pattern=NULL_STRING_PATTERN)] = Field(
        default="",
        description='An unquoted field equal to this is NULL (default: the empty field); '
        'a quoted "" is always the empty string. At most 64 characters, no line breaks.',
    )

    @model_validator(mode="after")
    def _check(self) -> CsvOptions:
        require(self.delimiter != self.quote, MSG_CSV_QUOTE_IS_DELIMITER)
        return self


def _check_max_errors(value: int | str) -> int | str:
    if isinstance(value, int):
        require(value >= 0, MSG_MAX_ERRORS)
    else:
        require(re.fullmatch(PERCENT_PATTERN, value) is not None, MSG_MAX_ERRORS)
    return value


MaxErrors = Annotated[
    int | str,
    AfterValidator(_check_max_errors),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": MAX_ERRORS_CHARACTERS,
            **validations(
                cel(f"type(self) == int ? self >= 0 : self.matches('{PERCENT_PATTERN}')",
                    MSG_MAX_ERRORS)
            ),
        }
    ),
]


class AuditLogS3(FerryModel):
    """A bucket and prefix for the audit log, reached with the source's endpoint and
    credentials (for fromExport: the ExportJob's)."""

    bucket: BucketName = Field(
        description="Bucket name (3-63 characters: lowercase letters, digits, dots, hyphens)."
    )
    prefix: KeyPrefix | None = Field(
        default=None,
        description="Key prefix, without a leading slash (as spec.source.s3.prefix). "
        "Absent: bucket root.",
    )


class AuditLog(FerryModel):
    """Where each run writes its audit log: one line per rejected row (file, line or row
    number, column, reason, the raw value truncated), in a folder per run."""

    s3: AuditLogS3 = Field(description="The bucket and prefix of the audit log.")


class ImportBatching(FerryModel):
    """How a run's files are split into batches (one worker pod each) and how they are
    retried. Without batches a run is one batch."""

    batches: int | None = Field(
        default=None,
        ge=1,
        le=MAX_BATCHES,
        description="Split each run's files into at most this many batches (1-1000), "
        "each file in exactly one. Mode Overwrite allows only 1.",
    )
    parallelism: Parallelism = 1
    retries_per_batch: RetriesPerBatch = 2


class ImportJobSpec(FerryModel):
    """Desired state of an ImportJob."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("!has(self.csv) || self.format == 'csv'", MSG_CSV_NEEDS_CSV, field_path=".csv"),
            cel("!has(self.mode) || self.mode != 'Merge' || has(self.keyColumns)",
                MSG_MERGE_NEEDS_KEYS, field_path=".keyColumns"),
            cel("!has(self.keyColumns) || (has(self.mode) && self.mode == 'Merge')",
                MSG_KEYS_NEED_MERGE, field_path=".keyColumns"),
            cel("!has(self.keyColumns) || !has(self.destination.columns) || "
                "self.keyColumns.all(k, self.destination.columns.exists(c, c.name == k))",
                MSG_KEYS_MAPPED, field_path=".keyColumns"),
            cel("!has(self.mode) || self.mode != 'Overwrite' || !has(self.batching) || "
                "!has(self.batching.batches) || self.batching.batches == 1",
                MSG_OVERWRITE_ONE_BATCH, field_path=".batching.batches"),
            cel("!has(self.mode) || self.mode != 'Overwrite' || !has(self.newFilesOnly) || "
                "!self.newFilesOnly", MSG_NEW_FILES_OVERWRITE, field_path=".newFilesOnly"),
        )
    )

    title: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="Human-readable title shown by kubectl get (required, 1-200 characters)."
    )
    description: Annotated[str, Field(max_length=4096)] | None = Field(
        default=None, description="Free-form description of what the import is for."
    )
    source: ImportSource = Field(description="The files to load.")
    format: Format = Field(
        description="File format, required: csv, jsonl or parquet. Compression (gzip, zstd) "
        "is read from each file's name (.gz, .zst); Parquet's is inside the file."
    )
    csv: CsvOptions | None = Field(
        default=None,
        description="Only with format csv. Absent: a header line, comma-separated, "
        'double-quoted, empty fields NULL.',
    )
    destination: Destination = Field(description="The table to load into.")
    mode: ImportMode = Field(
        default=ImportMode.APPEND,
        description="Append (default): insert every row. Merge: upsert on keyColumns "
        "(update matching rows, insert the rest). Overwrite: replace the table's contents "
        "atomically (the explicit opt-in to deleting rows).",
    )
    key_columns: (
        Annotated[ColumnList, Field(min_length=1, max_length=MAX_KEY_COLUMNS)] | None
    ) = Field(
        default=None,
        description="Mode Merge only, and required by it: the table columns rows are "
        "matched on (1-32, unique; a unique index or primary key over them must exist).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    new_files_only: bool = Field(
        default=False,
        description="true: load each file once, ever, however often the schedule fires "
        "(files are remembered by key and ETag in the destination database). false: "
        "every run loads every file the source lists. Not with mode Overwrite.",
    )
    max_errors: MaxErrors = Field(
        default=0,
        description="Rows each batch may reject into the audit log and still commit: a "
        "count (default 0: any bad row fails the batch) or a percentage of the batch's rows "
        '("2%"); with one batch (the default) the run\'s rows. A run whose batches all '
        "commit with rejected rows ends SucceededWithErrors; a batch over the limit fails "
        "and commits nothing.",
    )
    errors: AuditLog | None = Field(
        default=None,
        description="Absent: the audit log goes to the source's bucket (for fromExport: "
        "the ExportJob's bucket and prefix).",
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
    batching: ImportBatching | None = Field(
        default=None, description="Absent: one batch per run, 2 retries."
    )
    concurrency: Concurrency | None = Field(
        default=None,
        description="Absent: key derived from the destination's connection Secret and "
        "table, policy Queue.",
    )
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the operator deletes this ImportJob (RFC 3339). Not before a "
        "running run ends; loaded rows and audit logs are never deleted. A past time "
        "deletes the job at the next reconcile.",
    )
    history_limit: int = Field(
        default=20,
        ge=1,
        le=100,
        description="Finished runs kept in status.history (1-100, default 20).",
    )
    worker: WorkerPod | None = None

    @model_validator(mode="after")
    def _check(self) -> ImportJobSpec:
        require(self.csv is None or self.format == Format.CSV, MSG_CSV_NEEDS_CSV)
        merge = self.mode == ImportMode.MERGE
        require(not merge or self.key_columns is not None, MSG_MERGE_NEEDS_KEYS)
        require(merge or self.key_columns is None, MSG_KEYS_NEED_MERGE)
        mapped = self.destination.columns
        require(
            self.key_columns is None or mapped is None
            or set(self.key_columns) <= {c.name for c in mapped},
            MSG_KEYS_MAPPED,
        )
        batches = (self.batching or ImportBatching()).batches or 1
        require(self.mode != ImportMode.OVERWRITE or batches == 1, MSG_OVERWRITE_ONE_BATCH)
        require(self.mode != ImportMode.OVERWRITE or not self.new_files_only,
                MSG_NEW_FILES_OVERWRITE)
        return self

    @property
    def is_one_time(self) -> bool:
        """True for a schedule.once job (its spec is frozen once it has started)."""
        return self.schedule is not None and self.schedule.once is not None

    @property
    def csv_options(self) -> CsvOptions | None:
        """The CSV settings a run reads with (the defaults when spec.csv is absent); None
        for other formats."""
        return (self.csv or CsvOptions()) if self.format == Format.CSV else None

    def errors_allowed(self, rows: int) -> int:
        """Rows a batch of ``rows`` rows may reject: maxErrors as a count, or its
        percentage of ``rows`` rounded down (the worker's rule, ferry.contract.importplan)."""
        if isinstance(self.max_errors, int):
            return self.max_errors
        return int(Decimal(self.max_errors.rstrip("%")) * rows / 100)


class ImportJob(FerryModel):
    """An ImportJob object as stored by the API server."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(oldSelf.status) || !has(oldSelf.status.oneTimeStartedAt) || "
                "self.spec == oldSelf.spec",
                MSG_ONE_TIME_FROZEN_IMPORT,
                field_path=".spec",
            ),
        )
    )

    api_version: Literal["ferry.dev/v1alpha1"] = Field(
        default="ferry.dev/v1alpha1", description="ferry.dev/v1alpha1."
    )
    kind: Literal["ImportJob"] = Field(default=IMPORTJOB_KIND, description="ImportJob.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Object metadata.")
    spec: ImportJobSpec = Field(description="Which files to load, into which table, how "
                                "and when.")
    status: ImportJobStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
