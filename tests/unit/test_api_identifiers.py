"""PostgreSQL identifiers: the API and the worker agree on what is a valid name.

PostgreSQL identifiers are at most 63 bytes (NAMEDATALEN - 1). A hypothesis run once
found a 64-character table name the API accepted and the worker refused, so the run
failed at the pod instead of at `kubectl apply`. Here every identifier field is pinned
at the boundary, with the exact message a user sees, on both sides.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydantic import ValidationError

from ferry.api.crdgen import exportjob_crd
from ferry.api.exportjob import ExportJobSpec
from ferry.api.source import (
    IDENTIFIER_MAX_BYTES,
    IDENTIFIER_PATTERN,
    MSG_TABLE_PART_TOO_LONG,
    TABLE_PARTS_RULE,
)
from ferry.constants import ANNOTATION_RUN_REQUESTED_AT
from ferry.reconcile.admission import Refusal, check_exportjob, first_error
from ferry.reconcile.runs import reconcile
from ferry.worker.plan import ConfigError, parse_plan

from .builders import T0, observation, spec

OK = "c" * 63
LONG = "c" * 64

# Every identifier a user writes, as (spec path, value to put there, YAML path of the error).
COLUMN_FIELDS = [
    ("source.keyColumn", lambda name: name, "spec.source.keyColumn"),
    ("source.timestampColumn", lambda name: name, "spec.source.timestampColumn"),
    ("source.columns", lambda name: ["id", name], "spec.source.columns.1"),
    ("source.filters", lambda name: [{"column": name, "equals": "x"}],
     "spec.source.filters.0.column"),
]


def document(path: str, value: Any) -> dict[str, Any]:
    return spec().set("batching", {"batches": 2}).set("source.keyColumn", "id") \
        .set(path, value).doc


def rejection(doc: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as raised:
        ExportJobSpec.model_validate(doc)
    return first_error(raised.value)


def worker_plans(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan the controller hands each batch of a run of this spec."""
    decision = reconcile(observation(ExportJobSpec.model_validate(doc), T0 + dt.timedelta(days=1),
                                     annotations={ANNOTATION_RUN_REQUESTED_AT: "1"}))
    assert decision.create_job is not None
    env = decision.create_job["spec"]["template"]["spec"]["containers"][0]["env"]
    plan = json.loads(next(e["value"] for e in env if e["name"] == "FERRY_PLAN"))
    return [plan] * decision.create_job["spec"]["completions"]


@pytest.mark.parametrize(("path", "value", "where"), COLUMN_FIELDS)
def test_a_63_byte_column_name_is_accepted_and_reaches_the_worker(
        path: str, value: Any, where: str) -> None:
    doc = document(path, value(OK))
    for index, plan in enumerate(worker_plans(doc)):
        parse_plan(plan, {"JOB_COMPLETION_INDEX": str(index)})


@pytest.mark.parametrize(("path", "value", "where"), COLUMN_FIELDS)
def test_a_64_byte_column_name_is_refused_naming_the_field_and_the_limit(
        path: str, value: Any, where: str) -> None:
    assert rejection(document(path, value(LONG))) == \
        f"{where}: String should have at most 63 characters"


@pytest.mark.parametrize("table", [
    "t" * 63, "s" * 63 + "." + "t" * 63, "public." + "t" * 63, "s" * 63 + ".t",
])
def test_63_byte_schema_and_table_parts_are_accepted_and_reach_the_worker(table: str) -> None:
    for index, plan in enumerate(worker_plans(document("source.table", table))):
        parsed = parse_plan(plan, {"JOB_COMPLETION_INDEX": str(index)})
        schema, _, name = table.rpartition(".")
        assert (parsed.source.schema, parsed.source.table) == (schema or None, name)


@pytest.mark.parametrize("table", [
    "t" * 64, "public." + "t" * 64, "s" * 64 + ".t", "s" * 64 + "." + "t" * 62,
])
def test_a_64_byte_schema_or_table_part_is_refused_with_the_limit(table: str) -> None:
    assert rejection(document("source.table", table)) == \
        f"spec.source.table: {MSG_TABLE_PART_TOO_LONG}"
    assert MSG_TABLE_PART_TOO_LONG == ("schema and table name may each have at most 63 "
                                       "characters (PostgreSQL's identifier limit)")


def test_the_webhook_refuses_a_too_long_table_with_the_same_message() -> None:
    obj = {"metadata": {"name": "contacts"}, "spec": document("source.table", "t" * 64)}
    assert check_exportjob("CREATE", obj, None) == Refusal(
        "spec.source.table: schema and table name may each have at most 63 characters "
        "(PostgreSQL's identifier limit)", 422)


@pytest.mark.parametrize("name", ["ü", "kundennummer_ä", "🙂", "a-b", "a b", "1abc"])
def test_identifiers_are_ascii_so_a_character_is_a_byte(name: str) -> None:
    """Why the schema counts characters: no accepted name has a multibyte character."""
    for path, value, where in COLUMN_FIELDS:
        assert rejection(document(path, value(name))).startswith(f"{where}: String should match")
    assert rejection(document("source.table", name)).startswith("spec.source.table: String "
                                                                 "should match")


def test_the_worker_counts_bytes_not_characters() -> None:
    """A plan written by hand (not through the API) may hold non-ASCII names: 63 bytes."""
    base = {"job": "j", "run": "j.1", "destination": {"bucket": "b-1"}}
    parse_plan({**base, "source": {"table": "ü" * 31 + "x"}}, {})  # 63 bytes
    for table in ("ü" * 32, "t" * 64):  # 64 bytes each
        with pytest.raises(ConfigError) as raised:
            parse_plan({**base, "source": {"table": table}}, {})
        assert str(raised.value) == "plan.source.table: identifier longer than 63 bytes"
    with pytest.raises(ConfigError) as raised:
        parse_plan({**base, "source": {"table": "t"}, "columns": ["id", LONG]}, {})
    assert str(raised.value) == "plan.columns[1]: identifier longer than 63 bytes"


def test_duplicate_columns_are_refused_as_the_api_server_and_the_worker_do() -> None:
    assert rejection(document("source.columns", ["id", "note", "id"])) == \
        "spec.source.columns: duplicate column 'id'"


def test_the_crd_holds_the_same_limits() -> None:
    """What the API server checks before the webhook: maxLength 63 with the ASCII pattern
    on every column name, and the per-part CEL rule on the table (its message verified
    against kube-apiserver 1.37 with a server-side dry run: docs/api.md)."""
    source = exportjob_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["spec"]["properties"]["source"]["properties"]
    for node in (source["keyColumn"], source["timestampColumn"], source["columns"]["items"],
                 source["filters"]["items"]["properties"]["column"]):
        assert (node["maxLength"], node["pattern"]) == (IDENTIFIER_MAX_BYTES, IDENTIFIER_PATTERN)
    assert source["table"]["x-kubernetes-validations"] == [
        {"rule": TABLE_PARTS_RULE, "message": MSG_TABLE_PART_TOO_LONG}]
    assert TABLE_PARTS_RULE == "self.matches('^[^.]{1,63}([.][^.]{1,63})?$')"
