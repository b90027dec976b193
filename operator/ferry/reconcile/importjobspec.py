"""The batch/v1 Job of an ImportJob run: one Indexed Job, one completion index per batch.

The same Job shape as an export's (`ferry.reconcile.jobspec`): a deterministic name, the
plan in ``FERRY_PLAN``, Secrets only as ``secretKeyRef`` env vars. What differs is the
plan (`ferry.contract.importplan`) and the Secrets: the destination database's DSN, and
the keys of the bucket the files are read from (for fromExport, the ExportJob's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferry.api.importjob import ImportJobSpec
from ferry.api.output import S3Bucket
from ferry.constants import LABEL_RUN
from ferry.contract.importplan import (
    ColumnMapping,
    CsvOptions,
    ErrorsLocation,
    FromExport,
    ImportDestination,
    ImportPlan,
    MaxErrors,
    S3Connection,
    S3Files,
    encode_import_plan,
    parse_table,
)
from ferry.reconcile.batches import Slice
from ferry.reconcile.jobspec import (
    Owner,
    WorkerDefaults,
    indexed_job,
    s3_credentials_env,
    secret_env,
    suffixed_name,
    worker_pod,
)


@dataclass(frozen=True)
class ExportFiles:
    """The files of one ExportJob run an import reads: the export's bucket settings and
    the run's folder under its prefix (``<exportjob>/<run folder>``)."""

    bucket: S3Bucket
    run_folder: str


def import_job_name(import_job: str, run_number: int) -> str:
    """``<job>-import-<n>``: never an ExportJob's ``<job>-<n>`` of the same name."""
    return suffixed_name(import_job, f"-import-{run_number}")


def reading_bucket(spec: ImportJobSpec, export: S3Bucket | None) -> S3Bucket:
    """The bucket whose endpoint and keys the worker uses (source and audit log):
    ``export``, the fromExport ExportJob's, else spec.source.s3."""
    if export is not None:
        return export
    assert spec.source.s3 is not None, "fromExport without its ExportJob's files"
    return spec.source.s3


def audit_location(spec: ImportJobSpec, export: S3Bucket | None) -> tuple[str, str]:
    """(bucket, prefix) of the audit logs: spec.errors, else the source's bucket and
    prefix (for fromExport the ExportJob's)."""
    if spec.errors is not None:
        return spec.errors.s3.bucket, spec.errors.s3.prefix or ""
    bucket = reading_bucket(spec, export)
    return bucket.bucket, bucket.prefix or ""


def import_plan(owner: Owner, spec: ImportJobSpec, run_dir: str, slices: list[Slice],
                files: ExportFiles | None) -> ImportPlan:
    """The FERRY_PLAN of an import run's Job (docs/worker.md, ``ferry-worker import``)."""
    export = files.bucket if files is not None else None
    bucket = reading_bucket(spec, export)
    source = spec.source
    csv = spec.csv_options
    destination = spec.destination
    errors_bucket, errors_prefix = audit_location(spec, export)
    max_errors = (MaxErrors(count=spec.max_errors) if isinstance(spec.max_errors, int)
                  else MaxErrors(count=None, percent=float(spec.max_errors.rstrip("%"))))
    return ImportPlan(
        job=owner.name,
        namespace=owner.namespace,
        run=run_dir,
        job_uid=owner.uid or None,
        batch_index=slices[0].index,
        batch_count=slices[0].total,
        batch_indexes=tuple(s.index for s in slices),
        connection=S3Connection(bucket.endpoint, bucket.region, bucket.force_path_style),
        files=(S3Files(source.s3.bucket, source.s3.prefix or "", source.s3.glob)
               if source.s3 is not None else None),
        from_export=(FromExport(files.bucket.bucket, files.bucket.prefix or "", files.run_folder)
                     if files is not None else None),
        format=spec.format.value,
        csv=CsvOptions(csv.header, csv.delimiter, csv.quote, csv.null_string) if csv
        else CsvOptions(),
        destination=ImportDestination(
            table=parse_table(destination.table, "destination.table"),
            columns=tuple(ColumnMapping(c.name, c.source_name)
                          for c in destination.columns or []),
            unknown_columns=destination.unknown_columns.value,
            missing_columns=destination.missing_columns.value,
        ),
        mode=spec.mode.value,
        key_columns=tuple(spec.key_columns or ()),
        new_files_only=spec.new_files_only,
        max_errors=max_errors,
        errors=ErrorsLocation(errors_bucket, errors_prefix),
    )


def build_import_job(owner: Owner, spec: ImportJobSpec, run_number: int, run_dir: str,
                     slices: list[Slice], defaults: WorkerDefaults,
                     files: ExportFiles | None) -> dict[str, Any]:
    """The Job manifest of one import run (or of a retry's failed batches)."""
    plan = import_plan(owner, spec, run_dir, slices, files)
    ref = spec.destination.connection_secret_ref
    env = [{"name": "FERRY_PLAN", "value": encode_import_plan(plan)},
           secret_env("FERRY_DESTINATION_DSN", ref.name, ref.key),
           *s3_credentials_env(reading_bucket(spec, files.bucket if files else None)
                               .credentials_secret_ref)]
    batching = spec.batching
    return indexed_job(owner, import_job_name(owner.name, run_number),
                       {owner.label: owner.name, LABEL_RUN: str(run_number)}, len(slices),
                       batching.parallelism if batching else 1,
                       batching.retries_per_batch if batching else 2,
                       worker_pod(spec.worker, defaults, ["import"], env))
