"""Reading a batch from PostgreSQL as a stream of COPY rows.

Everything runs in one ``REPEATABLE READ READ ONLY`` transaction, so a ``query`` source
cannot write and the snapshot can be shared with the session that counts the total. The
session is pinned to ``TimeZone=UTC``, ISO dates and full float precision, so output never
depends on the role's defaults.

COPY ... TO STDOUT sends one protocol message per row. The rows go from libpq's
``PQgetCopyData`` straight into one ``bytearray`` per chunk of about ``chunk_bytes``,
counted (a :class:`~ferry.worker.splitting.Chunk`): a CopyData message is exactly one
row, so the count is exact even for CSV values with embedded newlines, and the splitter
finds the record boundaries in the rare chunk it has to cut. This is the worker's hottest
loop, so it is C (``_copyrows.c``): the rows, and the waits for the socket between the
server's sends, called once per chunk. The best Python loop cost about 1.25 CPU-us per
row on the benchmark table (psycopg's ``Copy`` object 1.5x that); reading the 5M rows
without uploading them took 4.0-4.3 user CPU-s in Python and 2.2-2.4 with the per-row
part in C, the same 1.0-1.5 system CPU-s, and 10x fewer page faults. Downstream work
(compression, Arrow parsing, upload) runs on whole chunks. Memory is one chunk, whatever
the table size.

The exact total (``totals: count``) is counted beside the COPY, on a second session in
the same snapshot (:mod:`ferry.worker.totals`); ``totals: estimate`` asks the planner on
this connection instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import json
import logging
import os
import select
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import psycopg
from psycopg import ClientCursor, pq, sql

from ferry.contract.plan import Plan
from ferry.worker import _copyrows
from ferry.worker import sql as batch_sql
from ferry.worker.errors import ConfigError, DataError, TransientError, WorkerError
from ferry.worker.formats import NUMERIC, ColumnInfo
from ferry.worker.splitting import Chunk

log = logging.getLogger(__name__)

CANCEL_TIMEOUT_S = 5.0
"""How long closing a reader mid-statement waits for the server to take the cancel."""

CHUNK_SECONDS = 1.0
"""Longest a slow source holds rows back from the writer (and the progress counters)."""

SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'iso_8601'",
    "SET extra_float_digits = 1",
    "SET client_encoding = 'UTF8'",
    "SET bytea_output = 'hex'",
)

JSONL_SETTINGS = ("SET parallel_tuple_cost = 0",)
"""JSON Lines only: let the planner compute ``row_to_json`` in parallel workers.

``row_to_json`` costs the server about 2.3x the CPU of COPY's CSV for the same rows,
which caps a single backend at about 0.44x the CSV rate. The planner does not know that
cost (the function's cost is 1), and the default ``parallel_tuple_cost`` (0.1 per row
handed from a worker to the leader) makes it keep big scans serial. At 0 it plans a
Parallel Seq Scan whenever the table is big enough to qualify
(``min_parallel_table_scan_size``), and the JSON is built by the workers; the leader
only copies finished documents out. The number of workers is still the server's and the
role's ``max_parallel_workers_per_gather``: a DBA who wants exports serial sets it to 0
for the worker's role. CSV and Parquet gain nothing from this (COPY formats the values
in the leader either way), so their plans are left alone.
"""

_CONFIG_CLASSES = ("42", "3D", "3F", "28", "25", "0A", "2B", "44")
_DATA_CLASSES = ("22", "23", "2F", "38", "39", "XX")
_CONFIG_CONNECT_HINTS = (
    "password authentication failed", "no pg_hba.conf entry", "does not exist",
    "invalid connection option", "invalid dsn", "missing \"=\"", "authentication",
)


def classify(exc: psycopg.Error, *, streaming: bool = False) -> WorkerError:
    """Map a database error to fatal (config/data) or transient by its SQLSTATE class.

    Class 22 (bad value) is a plan error before rows flow (a filter value the column
    cannot take) and a data error while streaming (e.g. division by zero in a query).
    """
    state = exc.sqlstate or ""
    reason = f"database: {exc}"
    if state[:2] in _CONFIG_CLASSES:
        return ConfigError(reason)
    if state[:2] == "22" and not streaming:
        return ConfigError(reason)
    if state[:2] in _DATA_CLASSES:
        return DataError(reason)
    if not state and isinstance(exc, psycopg.OperationalError):
        text = str(exc).lower()
        if any(hint in text for hint in _CONFIG_CONNECT_HINTS):
            return ConfigError(reason)
        return TransientError(reason)
    if isinstance(exc, psycopg.ProgrammingError | psycopg.InterfaceError) and not state:
        return ConfigError(reason)
    return TransientError(reason)


APPLICATION_NAME = "ferry-worker"
"""``application_name`` of the export's session, as a DBA sees it in ``pg_stat_activity``."""

COUNT_APPLICATION_NAME = "ferry-worker-count"
"""``application_name`` of the session that counts the progress total beside the export."""


def open_session(dsn: str, plan: Plan, connect_timeout_s: int = 30,
                 snapshot: str | None = None,
                 application_name: str = APPLICATION_NAME) -> psycopg.Connection[Any]:
    """A connection in the session settings above, inside a ``REPEATABLE READ READ ONLY``
    transaction; in the snapshot exported as ``snapshot`` when one is given.

    The transaction is opened explicitly (not by psycopg's implicit BEGIN) because the
    COPY runs on the raw libpq connection, which psycopg's transaction logic never sees.
    """
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout_s,
                               application_name=application_name)
    except psycopg.Error as exc:
        raise classify(exc) from None
    try:
        for setting in SESSION_SETTINGS:
            conn.execute(setting)
        if plan.format == "jsonl":
            for setting in JSONL_SETTINGS:
                conn.execute(setting)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if snapshot is not None:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    except psycopg.Error as exc:
        conn.close()
        raise classify(exc) from None
    return conn


def count_rows(conn: psycopg.Connection[Any], plan: Plan) -> int:
    """``COUNT(*)`` over the batch's predicate, in ``conn``'s snapshot."""
    query, params = batch_sql.count_query(plan)
    try:
        with ClientCursor(conn) as cur:
            cur.execute(query, params)
            row = cur.fetchone()
    except psycopg.Error as exc:
        raise classify(exc) from None
    assert row is not None
    return int(row[0])


class BatchReader:
    """A connection in the batch's snapshot: describe, share the snapshot, then stream."""

    def __init__(self, dsn: str, plan: Plan, connect_timeout_s: int = 30) -> None:
        self._dsn = dsn
        self._plan = plan
        self._timeout = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> BatchReader:
        self._conn = open_session(self._dsn, self._plan, self._timeout)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
                # Left mid-statement (an error, SIGTERM): closing the socket alone would
                # leave the backend running the query until it next tries to send a row,
                # minutes later for a query that sorts before its first one.
                with contextlib.suppress(psycopg.Error):
                    conn.cancel_safe(timeout=CANCEL_TIMEOUT_S)
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            conn.close()

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The open connection."""
        assert self._conn is not None, "use BatchReader as a context manager"
        return self._conn

    def describe(self) -> list[ColumnInfo]:
        """Output columns with their types, from a zero-row query."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(*batch_sql.describe_query(self._plan))
                description = cur.description or []
        except psycopg.Error as exc:
            raise classify(exc) from None
        columns = [
            ColumnInfo(
                name=d.name,
                type_oid=d.type_code,
                precision=d.precision if d.type_code == NUMERIC else None,
                scale=d.scale if d.type_code == NUMERIC else None,
            )
            for d in description
        ]
        names = [c.name for c in columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"plan.source: the result has two columns named {dupes[0]!r}; "
                              "alias them in the query or list plan.columns")
        if not columns:
            raise ConfigError("plan.source: the result has no columns")
        return columns

    def export_snapshot(self) -> str | None:
        """The id of this transaction's snapshot, for :func:`open_session` to share; None
        (logged) where the role may not call ``pg_export_snapshot()``. Asked first rather
        than tried: a failed call would abort the export's transaction, and a snapshot
        cannot be exported from inside a savepoint."""
        try:
            allowed = self.conn.execute(
                "SELECT coalesce(has_function_privilege("
                "to_regprocedure('pg_catalog.pg_export_snapshot()'), 'EXECUTE'), false)"
            ).fetchone()
            if not (allowed and allowed[0]):
                log.info("the snapshot cannot be shared: this role may not call "
                         "pg_export_snapshot()")
                return None
            row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
        except psycopg.Error as exc:
            raise classify(exc) from None
        assert row is not None
        return str(row[0])

    def estimate(self) -> int:
        """The planner's estimate of the rows the batch will export."""
        query, params = batch_sql.estimate_query(self._plan)
        try:
            with ClientCursor(self.conn) as cur:
                cur.execute(query, params)
                row = cur.fetchone()
        except psycopg.Error as exc:
            raise classify(exc) from None
        assert row is not None
        plan_doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
        return int(plan_doc[0]["Plan"]["Plan Rows"])

    def rows(self, columns: list[ColumnInfo], chunk_bytes: int) -> Iterator[Chunk]:
        """Yield chunks of whole COPY rows of about ``chunk_bytes`` each, or what arrived
        in the last ``CHUNK_SECONDS`` when the source is slow, so that progress keeps
        moving (the clock is read only when the loop has to wait for the server).
        """
        query, params = batch_sql.copy_statement(self._plan, [c.name for c in columns])
        quote = batch_sql.copy_quote(self._plan)
        started = False
        try:
            text = ClientCursor(self.conn).mogrify(query, params)
            pgconn = self.conn.pgconn
            self._start_copy(pgconn, text.encode())
            read_rows = _copyrows_bound()
            # Documented on psycopg's pq.PGconn, missing from the abc it is typed as.
            address: int = pgconn.pgconn_ptr  # type: ignore[attr-defined]
            sock = pgconn.socket
            data = bytearray()
            records = 0
            while True:
                # WOULD_BLOCK: CHUNK_SECONDS passed before the chunk filled up.
                read, status = read_rows(address, data, chunk_bytes, sock, CHUNK_SECONDS)
                records += read
                if status not in (_copyrows.FULL, _copyrows.WOULD_BLOCK):
                    break
                if records:
                    started = True
                    yield Chunk(data, records, quote)
                    data, records = bytearray(), 0
            self._finish_copy(pgconn)
            if records:
                yield Chunk(data, records, quote)
        except psycopg.Error as exc:
            raise classify(exc, streaming=started) from None

    @staticmethod
    def _start_copy(pgconn: pq.abc.PGconn, statement: bytes) -> None:
        """Send the COPY and wait for the server to start streaming (or fail)."""
        pgconn.send_query(statement)
        while pgconn.flush():
            _wait(pgconn, read=False)
        result = _next_result(pgconn)
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            _drain(pgconn)
            raise _error(pgconn, result)

    @staticmethod
    def _finish_copy(pgconn: pq.abc.PGconn) -> None:
        """Collect the COPY's final status: an error mid-stream arrives here."""
        result = _next_result(pgconn)
        _drain(pgconn)
        if result is None or result.status != pq.ExecStatus.COMMAND_OK:
            raise _error(pgconn, result)


@functools.cache
def _copyrows_bound() -> Callable[[int, bytearray, int, int, float], tuple[int, int]]:
    """``_copyrows.read_rows``, bound to the libpq that psycopg loaded.

    ``dlsym`` on psycopg's own ``pq`` extension resolves through its dependencies to the
    very libpq whose ``PGconn`` the connection holds: psycopg-binary bundles one that is
    not the system's, and the two must never be mixed.
    """
    if pq.__impl__ == "python":
        libpq = importlib.import_module("psycopg.pq._pq_ctypes").pq
    else:
        extension = sys.modules[f"psycopg_{pq.__impl__}.pq"].__file__
        libpq = ctypes.CDLL(extension, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    addresses = [ctypes.cast(function, ctypes.c_void_p).value for function in
                 (libpq.PQgetCopyData, libpq.PQfreemem, libpq.PQconsumeInput)]
    get_copy_data, freemem, consume_input = addresses
    assert get_copy_data is not None and freemem is not None and consume_input is not None
    _copyrows.bind(get_copy_data, freemem, consume_input)
    return _copyrows.read_rows


def _wait(pgconn: pq.abc.PGconn, *, read: bool) -> None:
    """Block until the connection's socket is readable (or writable)."""
    sock = pgconn.socket
    select.select([sock] if read else [], [] if read else [sock], [])


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """The next result, waiting on the socket in Python (where signals such as SIGTERM
    are handled and the upload threads run) rather than blocking inside libpq."""
    while pgconn.is_busy():
        _wait(pgconn, read=True)
        pgconn.consume_input()
    return pgconn.get_result()


def _drain(pgconn: pq.abc.PGconn) -> None:
    """Read results up to the end of the statement, so the connection is usable again."""
    while _next_result(pgconn) is not None:
        pass


def _error(pgconn: pq.abc.PGconn, result: pq.abc.PGresult | None) -> psycopg.Error:
    """The psycopg exception (with its SQLSTATE) for a failed result."""
    if result is None:
        return psycopg.OperationalError(pgconn.get_error_message())
    return psycopg.errors.error_from_result(result, encoding="utf-8")
