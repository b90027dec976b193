"""The destination table as the catalog describes it, and a file's columns matched to it.

Names are matched exactly (PostgreSQL's own spelling, case included): a header ``Email``
does not load a column ``email``; map it in ``destination.columns``. What is matched
decides the COPY's column list, so a file's columns may come in any order. The rules
(docs/worker.md, column matching):

- a file column no table column takes: ``unknownColumns: Refuse`` (default) refuses
  the file naming them, ``Ignore`` leaves them out; with an explicit mapping, the file's
  unmapped columns are always left out (the mapping is the choice);
- a table column the file does not give ("missing"): one with a default (an identity,
  serial or ``DEFAULT`` column) or a generated one is filled by the database.
  ``missingColumns: Refuse`` (default) refuses the file for a missing column without a
  default, naming them; ``Default`` loads NULL into it, unless it is NOT NULL (every row
  would fail: the file is refused, naming it);
- a file column that maps onto a generated column is refused (the database computes
  it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg import sql

from ferry.contract.importplan import ImportDestination, Table
from ferry.worker.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column; ``generated`` is a stored generated or ``ALWAYS`` identity column."""

    name: str
    not_null: bool
    has_default: bool
    generated: bool


@dataclasses.dataclass(frozen=True)
class TableInfo:
    """The resolved table: its schema (where the ledger goes), oid and columns."""

    schema: str
    name: str
    oid: int
    columns: tuple[Column, ...]

    @property
    def identifier(self) -> sql.Identifier:
        """The quoted, schema-qualified name."""
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def describe(conn: psycopg.Connection[Any], table: Table) -> TableInfo:
    """Resolve the plan's table (search_path when unqualified) and read its columns."""
    name = (sql.Identifier(table.schema, table.table) if table.schema
            else sql.Identifier(table.table)).as_string(conn)
    row = conn.execute(
        "SELECT c.oid::bigint, n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        (name,)).fetchone()
    if row is None:
        raise ConfigError(f"destination.table: table {table} does not exist (or this role "
                          "may not see its schema): create it, or correct destination.table")
    oid, schema, relname, kind = row
    if kind not in ("r", "p"):
        raise ConfigError(f"destination.table: {schema}.{relname} is not a table")
    columns = conn.execute(
        "SELECT attname, attnotnull, atthasdef OR attidentity <> '', "
        "attgenerated <> '' OR attidentity = 'a' FROM pg_attribute "
        "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,)).fetchall()
    return TableInfo(schema, relname, oid, tuple(Column(*c) for c in columns))


def check_merge_key(conn: psycopg.Connection[Any], info: TableInfo,
                    keys: tuple[str, ...]) -> None:
    """ON CONFLICT needs a unique index (or primary key) on exactly the key columns,
    without a predicate or expressions; say so, naming both, before any row moves."""
    absent = [k for k in keys if k not in {c.name for c in info.columns}]
    if absent:
        raise ConfigError(f"keyColumns: table {info} has no column {absent[0]!r}")
    indexes = conn.execute(
        "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i "
        "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid AND i.indpred IS NULL "
        "AND i.indexprs IS NULL AND k.position <= i.indnkeyatts GROUP BY i.indexrelid",
        (info.oid,)).fetchall()
    if sorted(keys) not in [row[0] for row in indexes]:
        columns = ", ".join(keys)
        raise ConfigError(f"keyColumns: table {info} has no unique index or primary key on "
                          f"exactly ({columns}), which Merge needs to find matching rows: "
                          f"CREATE UNIQUE INDEX ON {info} ({columns}), or correct keyColumns")


@dataclasses.dataclass(frozen=True)
class Match:
    """What to load of a file: the table columns in file order, and which of the file's
    columns they come from (None: all of them, in order)."""

    columns: tuple[str, ...]
    keep: list[int] | None


def _ordered(names: list[str]) -> str:
    return ", ".join(names)


def match_columns(file_key: str, file_columns: list[str], info: TableInfo,
                  destination: ImportDestination, *, positional: bool) -> Match:
    """Match a file's columns to the table, or refuse the file (ConfigError, naming the
    file and the columns). ``positional``: a CSV without header, whose columns are the
    table's insertable ones in order unless mapped by position."""
    by_name = {c.name: c for c in info.columns}
    where = f"file {file_key}"
    dupes = sorted({c for c in file_columns if file_columns.count(c) > 1})
    if dupes:
        raise ConfigError(f"{where}: column {dupes[0]!r} appears twice in the file")
    if "" in file_columns:
        raise ConfigError(f"{where}: column {file_columns.index('') + 1} has no name in "
                          "the header")
    if destination.columns:
        pairs = []
        for i, mapping in enumerate(destination.columns):
            if mapping.name not in by_name:
                raise ConfigError(f"destination.columns[{i}].name: table {info} has no "
                                  f"column {mapping.name!r}")
            if mapping.source not in file_columns:
                raise ConfigError(f"{where}: has no column {mapping.source!r} "
                                  f"(destination.columns[{i}].from); its columns: "
                                  f"{_ordered(file_columns)}")
            pairs.append((file_columns.index(mapping.source), mapping.name))
        pairs.sort()
        keep: list[int] | None = [p[0] for p in pairs]
        loaded = [p[1] for p in pairs]
    elif positional:
        insertable = [c.name for c in info.columns if not c.generated]
        if len(file_columns) != len(insertable):
            raise ConfigError(f"{where}: has {len(file_columns)} fields, table {info} "
                              f"{len(insertable)} columns to fill ({_ordered(insertable)}): "
                              "add a header (format.header: true) or map the fields in "
                              "destination.columns")
        keep, loaded = None, insertable
    else:
        unknown = [c for c in file_columns if c not in by_name]
        if unknown and destination.unknown_columns == "Refuse":
            raise ConfigError(f"{where}: has columns table {info} has not: "
                              f"{_ordered(unknown)}: add them to the table, map the file's "
                              "columns in destination.columns, or set unknownColumns: "
                              "Ignore to leave them out")
        keep = [i for i, c in enumerate(file_columns) if c in by_name]
        loaded = [file_columns[i] for i in keep]
        if not loaded:
            raise ConfigError(f"{where}: none of its columns ({_ordered(file_columns)}) is "
                              f"a column of table {info}")
    generated = [c for c in loaded if by_name[c].generated]
    if generated:
        raise ConfigError(f"{where}: column {generated[0]!r} of table {info} is generated "
                          "(the database computes it): leave it out of the file or the "
                          "mapping")
    absent = [c for c in info.columns if c.name not in loaded and not c.generated
              and not c.has_default]
    if absent and destination.missing_columns == "Refuse":
        raise ConfigError(f"{where}: lacks columns of table {info} that have no default: "
                          f"{_ordered([c.name for c in absent])}: add them to the file, map "
                          "them in destination.columns, or set missingColumns: Default to "
                          "load NULL into them")
    required = [c.name for c in absent if c.not_null]
    if required:
        raise ConfigError(f"{where}: lacks NOT NULL columns of table {info} without a "
                          f"default: {_ordered(required)}: add them to the file or give "
                          "them a default")
    if keep is not None and keep == list(range(len(file_columns))):
        keep = None
    return Match(tuple(loaded), keep)
