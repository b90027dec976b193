"""``ferry-worker import``: load one batch of an ImportJob run, in one transaction.

The batch's files, its ledger rows and (Overwrite) the deletion of the table's old rows
commit together or not at all: a batch over maxErrors, a file refused for its columns,
a lost connection or a killed pod leave the table as it was, and the next attempt finds
in the ledger what an earlier one committed (docs/worker.md, ``ferry-worker import``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from ferry.contract import progress as annotation
from ferry.contract.importplan import ImportPlan, audit_log_name
from ferry.contract.plan import Destination
from ferry.contract.summary import BatchImported, encode_summary
from ferry.worker.errors import ConfigError, ExitCode, Redactor, TransientError, WorkerError
from ferry.worker.importer import ledger
from ferry.worker.importer.audit import AuditLog
from ferry.worker.importer.listing import SourceFile, batch_files
from ferry.worker.importer.load import Loader, TooManyRejectsError
from ferry.worker.importer.readers import open_reader
from ferry.worker.importer.table import check_merge_key, describe, match_columns
from ferry.worker.main import _attempt, _backoff, _gives_up, _int_env, _invalid, _start
from ferry.worker.manifest import failure, write_termination_message
from ferry.worker.plan import Secrets, load_import_plan, load_secrets
from ferry.worker.progress import Progress, Publisher, pod_patcher
from ferry.worker.source import classify
from ferry.worker.upload import Retrier, join_key, make_client

log = logging.getLogger("ferry.worker.import")

APPLICATION_NAME = "ferry-worker-import"
"""``application_name`` of the import's session in ``pg_stat_activity``."""

SESSION_SETTINGS = ("SET TimeZone = 'UTC'", "SET client_encoding = 'UTF8'")
"""Timestamps without an offset are UTC whatever the role's default; files are UTF-8."""


class ImportProgress(Progress):
    """The export's counters plus rows rejected; ``total`` is estimated from the bytes
    read of the batch's listed size until the batch ends."""

    def __init__(self, batch: int) -> None:
        super().__init__(batch)
        self.rejected = 0

    def snapshot(self) -> annotation.Progress:
        return dataclasses.replace(super().snapshot(), rejected=self.rejected)


@dataclasses.dataclass
class _Counts:
    rows: int = 0
    rejected: int = 0
    bytes: int = 0
    files: int = 0
    earlier: int = 0
    skipped: int = 0


def _s3(plan: ImportPlan, secrets: Secrets) -> Any:
    conn = plan.connection
    return make_client(Destination("unused", "", conn.endpoint, conn.region, conn.path_style),
                       secrets)


def _source_bucket(plan: ImportPlan) -> str:
    if plan.from_export is not None:
        return plan.from_export.bucket
    assert plan.files is not None
    return plan.files.bucket


def _connect(dsn: str) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=30,
                               application_name=APPLICATION_NAME)
        for setting in SESSION_SETTINGS:
            conn.execute(setting)
    except psycopg.Error as exc:
        raise classify(exc) from None
    return conn


class Batch:
    """One attempt at the batch."""

    def __init__(self, plan: ImportPlan, dsn: str, client: Any, retrier: Retrier,
                 progress: ImportProgress, redact: Redactor) -> None:
        self.plan = plan
        self._dsn = dsn
        self._client = client
        self._retry = retrier
        self._progress = progress
        self._redact = redact
        self.audit_key: str | None = None
        if plan.errors is not None:
            self.audit_key = join_key(plan.errors.prefix, plan.job, plan.run,
                                      audit_log_name(plan.batch_index))

    def run(self) -> BatchImported:
        files = batch_files(self._client, self._retry, self.plan)
        audit = AuditLog(self._redact)
        try:
            conn = _connect(self._dsn)
            try:
                counts = self._load(conn, files, audit)
            except TooManyRejectsError:
                self._write_audit(audit)
                raise
            except psycopg.Error as exc:
                raise classify(exc, streaming=True) from None
            finally:
                conn.close()
            self._write_audit(audit)
        finally:
            audit.close()
        note = (f"{counts.earlier} file(s) loaded by an earlier attempt of this run"
                if counts.earlier else None)
        return BatchImported(
            batch=self.plan.batch_index, records=counts.rows, rejected=counts.rejected,
            bytes=counts.bytes, file_count=counts.files, files_skipped=counts.skipped,
            audit_log=self.audit_key if counts.rejected and self.plan.errors else None,
            note=note)

    def _write_audit(self, audit: AuditLog) -> None:
        if not audit.count:
            return
        if self.plan.errors is None or self.audit_key is None:
            log.warning("%d rows rejected; no audit log written (the plan has no errors "
                        "location)", audit.count)
            return
        audit.upload(self._client, self._retry, self.plan.errors.bucket, self.audit_key)

    def _on_rows(self, base: int, base_bytes: int, total_bytes: int,
                 rows: int, read: int) -> None:
        progress = self._progress
        progress.records = base + rows
        progress.bytes = base_bytes + read
        if progress.bytes:
            progress.total = max(progress.records,
                                 round(progress.records * total_bytes / progress.bytes))

    def _load(self, conn: psycopg.Connection[Any], files: list[SourceFile],
              audit: AuditLog) -> _Counts:
        plan = self.plan
        info = describe(conn, plan.destination.table)
        if plan.mode == "Merge":
            check_merge_key(conn, info, plan.key_columns)
        ledger.ensure_ledger(conn, info.schema)
        counts = _Counts()
        with conn.transaction():
            ledger.lock_batch(conn, plan)
            done = ledger.loaded_by_run(conn, info.schema, plan)
            ever = (ledger.loaded_ever(conn, info.schema, plan, files)
                    if plan.new_files_only else set())
            todo = []
            for file in files:
                if file.key in done:
                    counts.earlier += 1
                    counts.files += 1
                    counts.rows += done[file.key].rows
                    counts.rejected += done[file.key].rejected
                    counts.bytes += done[file.key].bytes
                elif (file.key, file.etag) in ever:
                    counts.skipped += 1
                else:
                    todo.append(file)
            if plan.mode == "Overwrite" and not done:
                conn.execute(sql.SQL("DELETE FROM {}").format(info.identifier))
            total_bytes = sum(f.size for f in todo)
            progress = self._progress
            bucket = _source_bucket(plan)
            for file in todo:
                reader = open_reader(plan.format, plan.csv, self._client, self._retry,
                                     bucket, file)
                match = match_columns(file.key, reader.columns(), info, plan.destination,
                                      positional=plan.format == "csv" and not plan.csv.header
                                      and not plan.destination.columns)
                reader.select(match.keep)
                before = audit.count
                loader = Loader(conn, plan, info, audit, functools.partial(
                    self._on_rows, progress.records, progress.bytes, total_bytes))
                rows = loader.load_file(file.key, reader, match)
                rejected = audit.count - before
                progress.rejected = audit.count
                ledger.record(conn, info.schema, plan, str(info), file,
                              ledger.Loaded(rows, rejected, file.size))
                counts.rows += rows
                counts.rejected += rejected
                counts.bytes += file.size
                counts.files += 1
                progress.files += 1
                log.info("file %s: %d rows loaded, %d rejected", file.key, rows, rejected)
            limit = plan.max_errors
            batch_rows = counts.rows + counts.rejected
            if audit.count and limit.exceeded(counts.rejected, batch_rows):
                raise TooManyRejectsError(
                    f"{counts.rejected} of {batch_rows} rows rejected, more than maxErrors "
                    f"({limit}): nothing of the batch is committed (the audit log lists them)")
        progress.total = progress.records
        return counts


def _failed(plan: ImportPlan, error: WorkerError, audit_key: str | None) -> str:
    reason = error.reason
    if isinstance(error, TooManyRejectsError) and audit_key and plan.errors:
        reason += f"; audit log s3://{plan.errors.bucket}/{audit_key}"
    return failure(plan.batch_index, error.kind, int(error.exit_code), reason)


def _run(plan: ImportPlan, dsn: str, secrets: Secrets, env: Mapping[str, str],
         redact: Redactor, max_attempts: int, retrier: Retrier) -> int:
    term_path = env.get("FERRY_TERMINATION_MESSAGE_PATH")
    progress = ImportProgress(plan.batch_index)
    patcher = pod_patcher(env)
    publisher = Publisher(progress, patcher).start() if patcher else None
    client = _s3(plan, secrets)
    error: WorkerError = TransientError("no attempt made")
    audit_key: str | None = None
    for number in range(1, max_attempts + 1):
        progress.records = progress.bytes = progress.files = progress.rejected = 0
        log.info("import batch %d of %s/%s %s (%d/%d)", plan.batch_index, plan.namespace,
                 plan.job, plan.run, number, max_attempts)
        batch = Batch(plan, dsn, client, retrier, progress, redact)
        audit_key = batch.audit_key
        outcome = _attempt(batch.run)
        if not isinstance(outcome, WorkerError):
            text = redact(encode_summary(outcome))
            write_termination_message(text, term_path)
            log.info("batch %d done: %s", plan.batch_index, text)
            if publisher:
                publisher.stop("Succeeded")
            return ExitCode.OK
        error = outcome
        error.reason = redact(error.reason)
        log.error("attempt %d failed (%s): %s", number, error.kind, error.reason)
        if _gives_up(error, number, max_attempts):
            break
        _backoff(number)
    write_termination_message(redact(_failed(plan, error, audit_key)), term_path)
    if publisher:
        publisher.stop("Failed")
    return int(error.exit_code)


def import_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``import``; returns the exit code."""
    redact = _start(env)
    try:
        plan = load_import_plan(env, args.plan_file, args.batch_index)
        secrets = load_secrets(env, source=False)
        dsn = env.get("FERRY_DESTINATION_DSN", "")
        if not dsn.strip():
            raise ConfigError("FERRY_DESTINATION_DSN: is required (the destination "
                              "database's connection string, from a Secret)")
        max_attempts = _int_env(env, "FERRY_MAX_ATTEMPTS", 3)
        retrier = Retrier(budget_s=_int_env(env, "FERRY_S3_RETRY_SECONDS", 120))
    except ConfigError as exc:
        index = args.batch_index if args.batch_index is not None else -1
        return _invalid(exc, env, redact, index)
    return _run(plan, dsn, secrets, env, redact, max_attempts, retrier)

