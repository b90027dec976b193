"""The ledger: which files an ImportJob loaded, in the destination database itself.

One row per file a run loaded, written in the transaction that loads the batch, so it
is true exactly when the rows are: a pod killed before its commit left neither, one
killed after it left both, and the next attempt reads which. The table is
``ferry_import_ledger`` in the destination table's schema, created when missing (which
needs CREATE on the schema; a DBA may create it beforehand instead, docs/worker.md).

Every attempt of a batch first takes a transaction-level advisory lock on (job, run,
batch): a second pod of the same batch (a retry racing a pod that is not quite gone)
waits for the first to commit or roll back, then sees its ledger rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import psycopg
from psycopg import sql

from ferry.contract.importplan import LEDGER_TABLE, ImportPlan
from ferry.worker.importer.listing import SourceFile

_COLUMNS = """
    namespace text NOT NULL,
    job text NOT NULL,
    job_uid text NOT NULL,
    run_id text NOT NULL,
    batch integer NOT NULL,
    file_key text NOT NULL,
    etag text NOT NULL,
    table_name text NOT NULL,
    rows bigint NOT NULL,
    rejected bigint NOT NULL,
    bytes bigint NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, job, job_uid, run_id, file_key)
"""


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A ledger row's counts."""

    rows: int
    rejected: int
    bytes: int


def ledger_name(schema: str) -> sql.Identifier:
    """The ledger's quoted name in ``schema``."""
    return sql.Identifier(schema, LEDGER_TABLE)


def ensure_ledger(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the ledger where it is missing (asked first: CREATE ... IF NOT EXISTS
    needs CREATE on the schema even when the table exists)."""
    name = ledger_name(schema)
    row = conn.execute("SELECT to_regclass(%s)", (name.as_string(conn),)).fetchone()
    if row is not None and row[0] is not None:
        return
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                name, sql.SQL(_COLUMNS)))
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} "
                                 "(namespace, job, file_key, etag)").format(
                sql.Identifier(f"{LEDGER_TABLE}_files"), name))
    except psycopg.errors.UniqueViolation:
        # Another batch's pod created it at the same moment: IF NOT EXISTS does not
        # serialize two creators, the catalog's unique index does, and theirs won.
        return


def _job_uid(plan: ImportPlan) -> str:
    return plan.job_uid or ""


def lock_batch(conn: psycopg.Connection[Any], plan: ImportPlan) -> None:
    """Wait for any other attempt of this batch to end (the lock ends with the
    transaction)."""
    name = "\x00".join((plan.namespace, plan.job, _job_uid(plan), plan.run,
                        str(plan.batch_index)))
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))


def loaded_by_run(conn: psycopg.Connection[Any], schema: str,
                  plan: ImportPlan) -> dict[str, Loaded]:
    """The files this run (this job's uid) loaded, by key."""
    rows = conn.execute(sql.SQL(
        "SELECT file_key, rows, rejected, bytes FROM {} WHERE namespace = %s AND job = %s "
        "AND job_uid = %s AND run_id = %s").format(ledger_name(schema)),
        (plan.namespace, plan.job, _job_uid(plan), plan.run)).fetchall()
    return {key: Loaded(n, rejected, size) for key, n, rejected, size in rows}


def loaded_ever(conn: psycopg.Connection[Any], schema: str, plan: ImportPlan,
                files: list[SourceFile]) -> set[tuple[str, str]]:
    """Which of ``files`` (key, ETag) any run of this job (by namespace and name, so a
    job deleted and created again keeps its history) has loaded."""
    if not files:
        return set()
    rows = conn.execute(sql.SQL(
        "SELECT DISTINCT file_key, etag FROM {} WHERE namespace = %s AND job = %s "
        "AND file_key = ANY(%s)").format(ledger_name(schema)),
        (plan.namespace, plan.job, [f.key for f in files])).fetchall()
    return {(key, etag) for key, etag in rows}


def record(conn: psycopg.Connection[Any], schema: str, plan: ImportPlan, table: str,
           file: SourceFile, loaded: Loaded) -> None:
    """The file's ledger row, in the batch's transaction."""
    conn.execute(sql.SQL(
        "INSERT INTO {} (namespace, job, job_uid, run_id, batch, file_key, etag, table_name, "
        "rows, rejected, bytes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(
        ledger_name(schema)),
        (plan.namespace, plan.job, _job_uid(plan), plan.run, plan.batch_index, file.key,
         file.etag, table, loaded.rows, loaded.rejected, loaded.bytes))
