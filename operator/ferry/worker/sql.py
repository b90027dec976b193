"""SQL for one batch, built with psycopg.sql so no plan value is ever spliced as text.

Identifiers (schema, table, columns) are :class:`psycopg.sql.Identifier` (double-quoted,
embedded quotes doubled); every filter, window and key-range value is a bound ``%s``
parameter. COPY cannot take server-side parameters, so the worker uses psycopg's
client-side binding there (``ClientCursor``): values are rendered as escaped literals by
libpq's quoting, never by string formatting here.

A ``query`` source is trusted SQL by design (it comes from the namespace's users, who
could as well run it themselves); it is wrapped as a subquery, and the worker runs it in
a ``READ ONLY`` transaction with a role that should only have ``SELECT`` (docs/worker.md).

Boundaries, as the controller relies on them to cover a table exactly once:
the window is ``[from, to)`` (``col >= from AND col < to``; rows with a NULL timestamp
are never in a window), the key range is ``[lo, hi)`` (empty where ``lo == hi``) and NULL
keys belong to the one batch with ``includeNulls``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from ferry.contract.plan import Filter, KeyPartition, KeyRange, Plan, Source, Window

SRC = sql.Identifier("ferry_src")
ROW = sql.Identifier("ferry_row")

_COMPARE = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def relation(source: Source) -> sql.Composable:
    """``"schema"."table"`` or ``(<query>)``, ready to be aliased."""
    if source.query is not None:
        # A literal % in the user's query must not be taken for a placeholder; every
        # statement built here is executed with parameters, which turns %% back into %.
        return sql.SQL("({})").format(sql.SQL(source.query.replace("%", "%%")))
    assert source.table is not None
    if source.schema is not None:
        return sql.Identifier(source.schema, source.table)
    return sql.Identifier(source.table)


def _filter(flt: Filter) -> tuple[sql.Composable, list[Any]]:
    col = sql.Identifier(flt.column)
    if flt.op == "isNull":
        return sql.SQL("{} IS NULL").format(col), []
    if flt.op == "notNull":
        return sql.SQL("{} IS NOT NULL").format(col), []
    if flt.op in ("in", "notIn"):
        marks = sql.SQL(", ").join(sql.Placeholder() * len(flt.values))
        word = sql.SQL("IN" if flt.op == "in" else "NOT IN")
        return sql.SQL("{} {} ({})").format(col, word, marks), list(flt.values)
    op = sql.SQL(_COMPARE[flt.op])
    return sql.SQL("{} {} %s").format(col, op), [flt.values[0]]


def _window(win: Window) -> tuple[list[sql.Composable], list[Any]]:
    col = sql.Identifier(win.column)
    parts: list[sql.Composable] = []
    params: list[Any] = []
    if win.start is not None:
        parts.append(sql.SQL("{} >= %s").format(col))
        params.append(win.start)
    if win.end is not None:
        parts.append(sql.SQL("{} < %s").format(col))
        params.append(win.end)
    if not parts:
        parts.append(sql.SQL("{} IS NOT NULL").format(col))
    return parts, params


def _key_range(kr: KeyRange) -> tuple[sql.Composable, list[Any]]:
    col = sql.Identifier(kr.column)
    if kr.lo is not None and kr.lo == kr.hi:
        return sql.SQL("FALSE"), []  # a batch the run's key plan leaves no keys
    bounds: list[sql.Composable] = []
    params: list[Any] = []
    if kr.lo is not None:
        bounds.append(sql.SQL("{} >= %s").format(col))
        params.append(kr.lo)
    if kr.hi is not None:
        bounds.append(sql.SQL("{} < %s").format(col))
        params.append(kr.hi)
    in_range: sql.Composable = (
        sql.SQL(" AND ").join(bounds) if bounds else sql.SQL("{} IS NOT NULL").format(col)
    )
    if kr.include_nulls:
        if not bounds:
            return sql.SQL("TRUE"), []
        return sql.SQL("(({}) OR {} IS NULL)").format(in_range, col), params
    return sql.SQL("({})").format(in_range), params


def _key_partition(kp: KeyPartition) -> tuple[sql.Composable, list[Any]]:
    """hashtextextended is stable across sessions and servers of one major version;
    the double modulo keeps negative hashes in [0, count)."""
    col = sql.Identifier(kp.column)
    return sql.SQL(
        "(CASE WHEN {col} IS NULL THEN 0 ELSE "
        "((hashtextextended({col}::text, 0) %% %s) + %s) %% %s END) = %s"
    ).format(col=col), [kp.count, kp.count, kp.count, kp.index]


def predicate(plan: Plan) -> tuple[sql.Composable, list[Any]]:
    """The WHERE condition of a batch and its parameters, in placeholder order."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for flt in plan.filters:
        part, values = _filter(flt)
        parts.append(part)
        params.extend(values)
    if plan.window is not None:
        win_parts, values = _window(plan.window)
        parts.extend(win_parts)
        params.extend(values)
    if plan.key_range is not None:
        part, values = _key_range(plan.key_range)
        parts.append(part)
        params.extend(values)
    if plan.key_partition is not None:
        part, values = _key_partition(plan.key_partition)
        parts.append(part)
        params.extend(values)
    if not parts:
        return sql.SQL("TRUE"), []
    return sql.SQL(" AND ").join(parts), params


def _select_list(columns: Sequence[str]) -> sql.Composable:
    if not columns:
        return sql.SQL("*")
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def describe_query(plan: Plan) -> tuple[sql.Composed, list[Any]]:
    """A zero-row query whose result description gives the output columns and types.

    It has no parameters, but is executed with an empty list all the same: only then does
    psycopg turn the ``%%`` that :func:`relation` wrote back into the query's ``%``.
    """
    query = sql.SQL("SELECT {} FROM {} AS {} LIMIT 0").format(
        _select_list(plan.columns), relation(plan.source), SRC
    )
    return query, []


def select_query(plan: Plan, columns: Sequence[str]) -> tuple[sql.Composed, list[Any]]:
    """``SELECT <columns> FROM <source> WHERE <predicate>``."""
    where, params = predicate(plan)
    query = sql.SQL("SELECT {} FROM {} AS {} WHERE {}").format(
        _select_list(columns), relation(plan.source), SRC, where
    )
    return query, params


def count_query(plan: Plan) -> tuple[sql.Composed, list[Any]]:
    """``SELECT count(*)`` over exactly the batch's predicate (the progress total)."""
    where, params = predicate(plan)
    query = sql.SQL("SELECT count(*) FROM {} AS {} WHERE {}").format(
        relation(plan.source), SRC, where
    )
    return query, params


def estimate_query(plan: Plan) -> tuple[sql.Composed, list[Any]]:
    """The planner's row estimate for the batch (cheap, may be far off)."""
    query, params = select_query(plan, plan.columns)
    return sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query), params


def copy_statement(plan: Plan, columns: Sequence[str]) -> tuple[sql.Composed, list[Any]]:
    """COPY of the batch in the wire shape each format is built from.

    CSV and Parquet read COPY's CSV. JSON Lines reads one ``row_to_json`` value per row
    through COPY's CSV mode with delimiter ``\\x02`` and quote ``\\x01``, so nothing is
    escaped: JSON text never contains raw control characters, and a row arrives as its
    JSON document followed by LF. Except where the document holds a line break, which
    only a ``json`` value copied verbatim (its input text, whitespace included) brings:
    COPY then wraps the row in ``\\x01``, and the worker unwraps it and turns those line
    breaks, which lie between tokens, into spaces
    (:func:`ferry.worker.formats.join_quoted_records`).
    """
    if plan.format == "jsonl":
        query, params = jsonl_query(plan, columns)
        return sql.SQL(
            "COPY ({}) TO STDOUT (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
        ).format(query), params
    query, params = select_query(plan, columns)
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query), params


def copy_quote(plan: Plan) -> bytes:
    """The quote character of :func:`copy_statement`'s CSV."""
    return b"\x01" if plan.format == "jsonl" else b'"'


def jsonl_query(plan: Plan, columns: Sequence[str]) -> tuple[sql.Composed, list[Any]]:
    """``SELECT row_to_json(...)`` over the batch: one JSON document per row."""
    query, params = select_query(plan, columns)
    return sql.SQL("SELECT row_to_json({}.*) FROM ({}) AS {}").format(ROW, query, ROW), params
