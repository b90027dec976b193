"""Reading a batch from PostgreSQL as a stream of COPY rows.

Everything runs in one ``REPEATABLE READ READ ONLY`` transaction, so the COUNT used for
progress totals and the COPY see the same snapshot (the total is exact, not a guess)
and a ``query`` source cannot write. The session is pinned to ``TimeZone=UTC``,
ISO dates and full float precision, so output never depends on the role's defaults.

COPY ... TO STDOUT sends one protocol message per row; rows are grouped into chunks of
about ``chunk_bytes`` so the per-chunk work downstream (compression, Arrow parsing,
upload) runs on large buffers. Memory is one chunk, whatever the table size.

The COUNT costs one extra pass over the batch's predicate (an index-only scan when the
key or window column is indexed and the visibility map is current); ``totals:
estimate`` uses the planner's estimate instead and ``none`` skips it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import psycopg
from psycopg import ClientCursor

from ferry.worker import sql as batch_sql
from ferry.worker.errors import ConfigError, DataError, TransientError, WorkerError
from ferry.worker.formats import NUMERIC, ColumnInfo
from ferry.worker.plan import Plan

CHUNK_SECONDS = 1.0
"""Longest a slow source holds rows back from the writer (and the progress counters)."""
CLOCK_EVERY_ROWS = 256

SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'iso_8601'",
    "SET extra_float_digits = 1",
    "SET client_encoding = 'UTF8'",
    "SET bytea_output = 'hex'",
)

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


class BatchReader:
    """A connection in the batch's snapshot: describe, count, then stream."""

    def __init__(self, dsn: str, plan: Plan, connect_timeout_s: int = 30) -> None:
        self._dsn = dsn
        self._plan = plan
        self._timeout = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> BatchReader:
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._timeout,
                                   application_name="ferry-worker")
        except psycopg.Error as exc:
            raise classify(exc) from None
        try:
            for setting in SESSION_SETTINGS:
                conn.execute(setting)
            conn.autocommit = False
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
        except psycopg.Error as exc:
            conn.close()
            raise classify(exc) from None
        self._conn = conn
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
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
                cur.execute(batch_sql.describe_query(self._plan))
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

    def total(self) -> int | None:
        """Rows the batch will export: exact COUNT, planner estimate, or None."""
        mode = self._plan.totals
        if mode == "none":
            return None
        query, params = (batch_sql.count_query(self._plan) if mode == "count"
                         else batch_sql.estimate_query(self._plan))
        try:
            with ClientCursor(self.conn) as cur:
                cur.execute(query, params)
                row = cur.fetchone()
        except psycopg.Error as exc:
            raise classify(exc) from None
        assert row is not None
        if mode == "count":
            return int(row[0])
        plan_doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
        return int(plan_doc[0]["Plan"]["Plan Rows"])

    def rows(self, columns: list[ColumnInfo], chunk_bytes: int) -> Iterator[list[bytes]]:
        """Yield lists of whole COPY rows totalling about ``chunk_bytes`` each, or what
        arrived in the last ``CHUNK_SECONDS`` when the source is slow, so that progress
        keeps moving (the clock is read once every ``CLOCK_EVERY_ROWS`` rows only).

        (Driving libpq directly instead of psycopg's Copy object was measured: no gain.)
        """
        query, params = batch_sql.copy_statement(self._plan, [c.name for c in columns])
        started = False
        try:
            with ClientCursor(self.conn) as cur, cur.copy(query, params) as copy:
                chunk: list[bytes] = []
                size = 0
                deadline = time.monotonic() + CHUNK_SECONDS
                for row in copy:
                    chunk.append(row)  # type: ignore[arg-type]  # memoryview joins like bytes
                    size += len(row)
                    if size >= chunk_bytes or (len(chunk) % CLOCK_EVERY_ROWS == 0
                                               and time.monotonic() >= deadline):
                        started = True
                        yield chunk
                        chunk, size = [], 0
                        deadline = time.monotonic() + CHUNK_SECONDS
                if chunk:
                    yield chunk
        except psycopg.Error as exc:
            raise classify(exc, streaming=started) from None
