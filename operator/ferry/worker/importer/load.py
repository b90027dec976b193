"""COPY a file into the table, and when the database refuses rows, only those rows.

PostgreSQL 15 has no ``COPY ... ON_ERROR``: one bad value fails the whole COPY. So each
file is first copied whole inside a savepoint (the fast path: a good file costs one
COPY and nothing more). If that COPY fails for a row's sake (SQLSTATE class 22, a value
or the file's format; 23, a constraint), the savepoint is rolled back and the file is
read again as records in chunks of up to CHUNK_ROWS, each copied in a savepoint of its
own; a chunk that fails has its failing row found from the error's ``line N`` (the
line of the COPY, one record each, see ferry.worker.importer.readers), that row goes to
the audit log, and the rows around it are copied again. Where the error names no line
(a deferred check) the chunk is halved until the row is alone. A file with k bad rows
thus costs two reads and about k chunk copies more than a clean one; the batch's other
files stay on the fast path.

Merge copies into a temporary table shaped like the target's loaded columns (their NOT
NULL and CHECK constraints included, so those refuse rows at the COPY, where they can be
isolated), then upserts from it with ``INSERT ... ON CONFLICT (keyColumns) DO UPDATE``; rows of
one key within a file: the last one wins.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg import sql

from ferry.contract.importplan import ImportPlan
from ferry.worker.errors import ConfigError, DataError, WorkerError
from ferry.worker.importer.audit import AuditLog
from ferry.worker.importer.readers import FileReader, Record, Reject, raw_text
from ferry.worker.importer.table import Match, TableInfo
from ferry.worker.source import classify

log = logging.getLogger(__name__)

CHUNK_ROWS = 5000
CHUNK_BYTES = 4 * 1024 * 1024
ROW_ERROR_CLASSES = ("22", "23")
"""SQLSTATE classes one row can cause: data exceptions, integrity constraint violations."""

_CONTEXT = re.compile(r'line (\d+)(?:, column ([^:]+))?(?:: "(.*)")?', re.DOTALL)
_STAGE = "ferry_import_stage"


class TooManyRejectsError(DataError):
    """The batch rejected more rows than maxErrors allows: nothing of it commits."""


def row_error(exc: psycopg.Error) -> bool:
    """Whether the error is about a row (rather than the table, the role, the server)."""
    return (exc.sqlstate or "")[:2] in ROW_ERROR_CLASSES


def _where(exc: psycopg.Error) -> tuple[int | None, str | None, str | None]:
    """(line, column, value) from a COPY error's context, where it says them."""
    match = _CONTEXT.search(exc.diag.context or "")
    if match is None:
        return None, exc.diag.column_name, None
    column = match.group(2) or exc.diag.column_name
    return int(match.group(1)), column, match.group(3) if match.group(2) else None


def _rejected(record: Record, exc: psycopg.Error) -> Reject:
    _, column, value = _where(exc)
    reason = exc.diag.message_primary or str(exc)
    return Reject(record.number, column, reason,
                  raw_text(value) if value is not None else raw_text(record.data))


class Loader:
    """Loads one batch's files on one connection, inside the batch's transaction."""

    def __init__(self, conn: psycopg.Connection[Any], plan: ImportPlan, info: TableInfo,
                 audit: AuditLog, on_rows: Callable[[int, int], None]) -> None:
        self._conn = conn
        self._plan = plan
        self._info = info
        self._audit = audit
        self._on_rows = on_rows
        """Called with (rows so far in this file, bytes read) as the COPY goes."""

    def _reject(self, key: str, unit: str, reject: Reject) -> None:
        self._audit.add(key, unit, reject)
        limit = self._plan.max_errors
        if limit.count is not None and self._audit.count > limit.count:
            raise TooManyRejectsError(f"more than maxErrors ({limit}) rows rejected, the last in "
                                f"file {key} {unit} {reject.number}: {reject.reason}; "
                                "nothing of the batch is committed (the audit log lists "
                                "them)")

    def _copy(self, statement: sql.Composed, blocks: Iterable[bytes],
              reader: FileReader | None = None) -> int:
        with self._conn.cursor() as cur:
            with cur.copy(statement) as copy:
                lines = 0
                for block in blocks:
                    copy.write(block)
                    if reader is not None:
                        lines += block.count(b"\n")
                        self._on_rows(lines, reader.read_bytes)
            return max(cur.rowcount, 0)

    def _statement(self, target: sql.Identifier, match: Match,
                   reader: FileReader) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN {}").format(
            target, sql.SQL(", ").join(map(sql.Identifier, match.columns)),
            reader.copy_options())

    def load_file(self, key: str, reader: FileReader, match: Match) -> int:
        """Load one file (rejected rows to the audit log); returns the rows loaded."""
        rejects: list[Reject] = []
        try:
            target = self._info.identifier
            if self._plan.mode == "Merge":
                target = self._stage(key, match)
            statement = self._statement(target, match, reader)
            try:
                with self._conn.transaction():
                    rows = self._copy(statement, reader.fast(rejects), reader)
            except psycopg.Error as exc:
                if not row_error(exc):
                    raise
                log.info("file %s: the database refused a row (%s); finding the rows it "
                         "refuses", key, exc.diag.message_primary)
                rows = self._isolate(key, statement, reader)
            else:
                for reject in rejects:
                    self._reject(key, reader.unit, reject)
            self._on_rows(rows, reader.read_bytes)
            if self._plan.mode == "Merge":
                self._merge(key, match)
        except psycopg.Error as exc:
            raise _in_file(key, classify(exc, streaming=True)) from None
        except ConfigError as exc:
            raise _in_file(key, exc) from None
        return rows

    def _isolate(self, key: str, statement: sql.Composed, reader: FileReader) -> int:
        loaded = 0
        chunk: list[Record] = []
        size = 0
        for item in reader.records():
            if isinstance(item, Reject):
                self._reject(key, reader.unit, item)
                continue
            chunk.append(item)
            size += len(item.data)
            if len(chunk) >= CHUNK_ROWS or size >= CHUNK_BYTES:
                loaded += self._copy_chunk(key, statement, chunk, reader.unit)
                self._on_rows(loaded, reader.read_bytes)
                chunk, size = [], 0
        if chunk:
            loaded += self._copy_chunk(key, statement, chunk, reader.unit)
        return loaded

    def _copy_chunk(self, key: str, statement: sql.Composed, records: list[Record],
                    unit: str) -> int:
        loaded = 0
        pending = [records]
        while pending:
            part = pending.pop()
            if not part:
                continue
            try:
                with self._conn.transaction():
                    loaded += self._copy(statement, [b"".join(r.data for r in part)])
            except psycopg.Error as exc:
                if not row_error(exc):
                    raise
                line = _where(exc)[0]
                if line is not None and 1 <= line <= len(part):
                    self._reject(key, unit, _rejected(part[line - 1], exc))
                    pending += [part[line:], part[:line - 1]]
                elif len(part) == 1:
                    self._reject(key, unit, _rejected(part[0], exc))
                else:
                    middle = len(part) // 2
                    pending += [part[middle:], part[:middle]]
        return loaded

    def _stage(self, key: str, match: Match) -> sql.Identifier:
        """A temporary table of the target's columns the file loads, with their types,
        NOT NULL and the CHECK constraints over those columns alone, built from the
        catalog (``LIKE`` would need SELECT on the whole table). Type names and check
        expressions come from the catalog's own deparsers, never from a file."""
        missing_keys = [k for k in self._plan.key_columns if k not in match.columns]
        if missing_keys:
            raise ConfigError(f"lacks key column {missing_keys[0]!r} (keyColumns), which "
                              "Merge needs to match rows")
        types = dict(self._conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
            (self._info.oid,)).fetchall())
        checks = [row[0] for row in self._conn.execute(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.conrelid = %s "
            "AND c.contype = 'c' AND NOT EXISTS (SELECT FROM pg_attribute a WHERE "
            "a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) AND a.attname <> ALL(%s))",
            (self._info.oid, list(match.columns))).fetchall()]
        not_null = {c.name for c in self._info.columns if c.not_null}
        elements: list[sql.Composable] = [sql.SQL("{} {}{}").format(
            sql.Identifier(name), sql.SQL(types[name]),
            sql.SQL(" NOT NULL" if name in not_null else "")) for name in match.columns]
        elements += [sql.SQL(check) for check in checks]
        stage = sql.Identifier(_STAGE)
        self._conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
        self._conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(
            stage, sql.SQL(", ").join(elements)))
        return stage

    def _merge(self, key: str, match: Match) -> None:
        columns = sql.SQL(", ").join(map(sql.Identifier, match.columns))
        keys = sql.SQL(", ").join(map(sql.Identifier, self._plan.key_columns))
        updates = [c for c in match.columns if c not in self._plan.key_columns]
        action = (sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates))
                  if updates else sql.SQL("DO NOTHING"))
        names = {"target": self._info.identifier, "columns": columns, "keys": keys,
                 "stage": sql.Identifier(_STAGE), "action": action}
        try:
            if not updates or not self._upsert_unique_keys(names):
                self._conn.execute(sql.SQL(
                    "INSERT INTO {target} ({columns}) SELECT DISTINCT ON ({keys}) {columns} "
                    "FROM {stage} ORDER BY {keys}, ctid DESC ON CONFLICT ({keys}) {action}"
                ).format(**names))
        except psycopg.Error as exc:
            if row_error(exc):
                detail = exc.diag.message_detail or "no detail"
                raise DataError(f"file {key}: merging into {self._info} failed: "
                                f"{exc.diag.message_primary} ({detail}); the batch is not "
                                "committed") from None
            raise
        self._conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(_STAGE)))

    def _upsert_unique_keys(self, names: dict[str, sql.Composable]) -> bool:
        """The upsert without DISTINCT ON's sort of the whole stage, in a savepoint;
        False when the file has a key twice (PostgreSQL refuses to update one row twice
        in a command, SQLSTATE 21000), and then nothing of it stays. Without repeated
        keys both statements do the same; a file with repeats pays the upsert twice."""
        try:
            with self._conn.transaction():
                self._conn.execute(sql.SQL(
                    "INSERT INTO {target} ({columns}) SELECT {columns} FROM {stage} "
                    "ON CONFLICT ({keys}) {action}").format(**names))
        except psycopg.errors.CardinalityViolation:
            return False
        return True


def _in_file(key: str, error: WorkerError) -> WorkerError:
    """The error with the file it happened in."""
    error.reason = f"file {key}: {error.reason}"
    return error
