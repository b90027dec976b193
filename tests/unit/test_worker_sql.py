"""Query building: identifiers are quoted, values are only ever placeholders."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from ferry.worker import sql as batch_sql
from ferry.worker.plan import parse_plan

HOSTILE_COLUMN = 'id"; DROP TABLE victims; --'
HOSTILE_VALUE = "'); DROP TABLE victims; --"


def plan_with(**changes: Any) -> Any:
    raw: dict[str, Any] = {
        "job": "j", "run": "1", "source": {"table": "t"},
        "destination": {"bucket": "bucket"},
    }
    raw.update(changes)
    return parse_plan(raw, {})


def text(composed: sql.Composable) -> str:
    return composed.as_string(None)


def test_hostile_identifier_is_one_quoted_identifier() -> None:
    plan = plan_with(source={"table": 'we"ird', "schema": "s p"}, columns=[HOSTILE_COLUMN],
                     filters=[{"column": HOSTILE_COLUMN, "value": HOSTILE_VALUE}])
    query, params = batch_sql.select_query(plan, plan.columns)
    rendered = text(query)
    assert rendered == (
        'SELECT "id""; DROP TABLE victims; --" FROM "s p"."we""ird" AS "ferry_src" '
        'WHERE "id""; DROP TABLE victims; --" = %s'
    )
    assert params == [HOSTILE_VALUE]
    assert HOSTILE_VALUE not in rendered


@given(column=st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
       value=st.text(max_size=40).filter(lambda s: "\x00" not in s))
def test_no_column_or_value_changes_the_sql_shape(column: str, value: str) -> None:
    plan = plan_with(filters=[{"column": column[:20], "op": "ne", "value": value}])
    where, params = batch_sql.predicate(plan)
    rendered = text(where)
    quoted = '"' + column[:20].replace('"', '""') + '"'
    assert rendered == f"{quoted} <> %s"
    assert params == [value]


def test_key_range_and_nulls() -> None:
    def where(**key_range: Any) -> tuple[str, list[Any]]:
        clause, params = batch_sql.predicate(plan_with(keyRange={"column": "k", **key_range}))
        return text(clause), params

    assert where(lo=1, hi=5) == ('("k" >= %s AND "k" < %s)', [1, 5])
    assert where(lo=1, hi=5, includeNulls=True) == (
        '(("k" >= %s AND "k" < %s) OR "k" IS NULL)', [1, 5])
    assert where(hi="m") == ('("k" < %s)', ["m"])
    assert where() == ('("k" IS NOT NULL)', [])
    assert where(includeNulls=True) == ("TRUE", [])


def test_window_filters_and_in_lists() -> None:
    plan = plan_with(
        filters=[{"column": "kind", "op": "in", "values": ["a", "b"]},
                 {"column": "gone", "op": "isNull"}],
        window={"column": "ts", "from": "2024-01-01T00:00:00Z", "to": "2024-02-01T00:00:00Z"},
    )
    where, params = batch_sql.predicate(plan)
    assert text(where) == ('"kind" IN (%s, %s) AND "gone" IS NULL AND "ts" >= %s AND "ts" < %s')
    assert params == ["a", "b", dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                      dt.datetime(2024, 2, 1, tzinfo=dt.UTC)]


def test_query_source_percent_signs_are_not_placeholders() -> None:
    plan = plan_with(source={"query": "SELECT * FROM t WHERE name LIKE 'a%';"})
    query, _ = batch_sql.count_query(plan)
    assert text(query) == (
        "SELECT count(*) FROM (SELECT * FROM t WHERE name LIKE 'a%%') AS \"ferry_src\" WHERE TRUE")


def test_copy_statements_per_format() -> None:
    csv_copy, _ = batch_sql.copy_statement(plan_with(format="csv"), ["a"])
    assert text(csv_copy) == (
        'COPY (SELECT "a" FROM "t" AS "ferry_src" WHERE TRUE) TO STDOUT (FORMAT csv)')
    json_copy, _ = batch_sql.copy_statement(plan_with(format="jsonl"), ["a"])
    assert text(json_copy).startswith(
        'COPY (SELECT row_to_json("ferry_row".*) FROM (SELECT "a" FROM "t" AS "ferry_src"')
    assert "DELIMITER E'\\x02', QUOTE E'\\x01'" in text(json_copy)
