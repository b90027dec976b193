"""Plan parsing: a valid plan round-trips, every bad input names its field."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest

from ferry.worker.errors import ConfigError
from ferry.worker.plan import load_plan, load_secrets, parse_plan

BASE: dict[str, Any] = {
    "job": "orders",
    "run": "7",
    "source": {"table": "orders", "schema": "public"},
    "columns": ["id", "total"],
    "filters": [{"column": "kind", "op": "in", "values": ["chat", "email"]}],
    "window": {"column": "created_at", "from": "2024-01-01T00:00:00Z",
               "to": "2024-01-02T00:00:00+02:00"},
    "keyRange": {"column": "id", "lo": 0, "hi": 100, "includeNulls": True},
    "format": "parquet",
    "compression": "zstd",
    "fileSplitSize": 1 << 20,
    "destination": {"bucket": "exports", "prefix": "team/a", "endpoint": "http://s3:9000",
                    "region": "eu-west-1", "pathStyle": True},
    "batchCount": 4,
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    plan = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = plan
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return plan


_DELETE = object()


def test_valid_plan_parses_with_batch_index_from_env() -> None:
    plan = parse_plan(BASE, {"JOB_COMPLETION_INDEX": "3"})
    assert plan.batch_index == 3
    assert plan.batch_count == 4
    assert plan.window is not None
    assert plan.window.start == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert plan.window.end == dt.datetime(2024, 1, 1, 22, tzinfo=dt.UTC)
    assert plan.key_range is not None and plan.key_range.include_nulls
    assert plan.compression_level == 3
    assert plan.destination.prefix == "team/a"


def test_cli_index_beats_plan_beats_env() -> None:
    plan = with_change("batchIndex", 1)
    assert parse_plan(plan, {"JOB_COMPLETION_INDEX": "2"}).batch_index == 1
    assert parse_plan(plan, {"JOB_COMPLETION_INDEX": "2"}, batch_index=0).batch_index == 0


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("job", _DELETE, "plan.job: is required"),
        ("job", "Orders_1", "plan.job: must be a DNS label"),
        ("run", "../x", "plan.run: must match"),
        ("format", "xml", "plan.format: must be one of csv, jsonl, parquet, got 'xml'"),
        ("compression", "lz4", "plan.compression: must be one of none, gzip, zstd"),
        ("compressionLevel", 40, "plan.compressionLevel: zstd levels are 1-22"),
        ("fileSplitSize", 1000, "plan.fileSplitSize: must be 0 (no split) or >= 65536"),
        ("source", {"table": "a", "query": "select 1"}, "plan.source: set exactly one"),
        ("source", {"query": "select 1", "schema": "s"}, "plan.source.schema: only allowed"),
        ("source.table", "x" * 64, "plan.source.table: identifier longer than 63 bytes"),
        ("columns", ["a", "a"], "plan.columns: duplicate column 'a'"),
        ("columns", ["a", 1], "plan.columns[1]: must be a non-empty string"),
        ("filters", [{"column": "k", "op": "in"}], "plan.filters[0].values: op in needs"),
        ("filters", [{"column": "k", "op": "eq", "value": None}], "plan.filters[0].value:"),
        ("filters", [{"column": "k", "op": "isNull", "value": 1}], "takes no value"),
        ("filters", [{"column": "k", "op": "like", "value": 1}], "plan.filters[0].op:"),
        ("filters", [{"column": "k", "value": {"a": 1}}], "plan.filters[0].value: must be a"),
        ("window.from", "2024-01-01T00:00:00", "plan.window.from: needs a UTC offset"),
        ("window.to", "yesterday", "plan.window.to: not an RFC 3339 timestamp"),
        ("window.to", "2023-01-01T00:00:00Z", "plan.window: from must be before to"),
        ("keyRange.lo", 100, "plan.keyRange: lo must be below hi"),
        ("keyRange.hi", "z", "plan.keyRange: lo and hi must have the same type"),
        ("keyRange.includeNulls", "yes", "plan.keyRange.includeNulls: must be a boolean"),
        ("destination.prefix", "a/../b", "plan.destination.prefix: segment '..' not allowed"),
        ("destination.prefix", "a//b", "plan.destination.prefix: segment '' not allowed"),
        ("destination.bucket", "Bad_Bucket", "plan.destination.bucket: not a valid S3"),
        ("destination.endpoint", "http://u:p@h", "plan.destination.endpoint: must be"),
        ("destination.extra", 1, "plan.destination.extra: unknown field"),
        ("batchIndex", 4, "plan.batchIndex: 4 is not below batchCount 4"),
        ("surprise", True, "plan.surprise: unknown field"),
    ],
)
def test_bad_plan_names_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_plan(with_change(path, value), {})
    assert message in err.value.reason


def test_bad_job_completion_index() -> None:
    with pytest.raises(ConfigError, match="JOB_COMPLETION_INDEX: must be an integer >= 0"):
        parse_plan(BASE, {"JOB_COMPLETION_INDEX": "x"})


def test_load_plan_sources_and_json_errors(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="FERRY_PLAN: is required"):
        load_plan({})
    with pytest.raises(ConfigError, match="FERRY_PLAN: invalid JSON at line 1 column 2"):
        load_plan({"FERRY_PLAN": "{x"})
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(BASE))
    assert load_plan({"FERRY_PLAN_FILE": str(path)}).job == "orders"
    with pytest.raises(ConfigError, match="plan file /nonexistent: No such file"):
        load_plan({}, plan_file="/nonexistent")


def test_secrets() -> None:
    with pytest.raises(ConfigError, match="FERRY_SOURCE_DSN: is required"):
        load_secrets({})
    with pytest.raises(ConfigError, match="set both or neither"):
        load_secrets({"FERRY_SOURCE_DSN": "host=x", "AWS_ACCESS_KEY_ID": "a"})
    secrets = load_secrets({"FERRY_SOURCE_DSN": "host=x"})
    assert secrets.aws_access_key_id is None


SLICED: dict[str, Any] = {
    **{k: v for k, v in BASE.items() if k not in ("window", "batchCount")},
    "batchCount": 8,
    "slices": [
        {"batchIndex": 2, "window": {"column": "created_at", "from": "2024-01-01T00:00:00Z",
                                     "to": "2024-01-01T06:00:00Z"}},
        {"batchIndex": 5, "window": {"column": "created_at", "from": "2024-01-01T06:00:00Z"}},
    ],
}


def test_slice_is_picked_by_completion_index() -> None:
    plan = parse_plan(SLICED, {"JOB_COMPLETION_INDEX": "1"})
    assert plan.batch_index == 5
    assert plan.window is not None and plan.window.end is None
    assert plan.window.start == dt.datetime(2024, 1, 1, 6, tzinfo=dt.UTC)
    assert parse_plan(SLICED, {}, batch_index=0).batch_index == 2  # position in slices


def test_slice_selection_and_validation_errors() -> None:
    with pytest.raises(ConfigError, match=r"plan\.slices: has 2 entries; no slice for index 2"):
        parse_plan(SLICED, {"JOB_COMPLETION_INDEX": "2"})
    with pytest.raises(ConfigError, match=r"plan.slices\[0\].extra: unknown field"):
        parse_plan({**SLICED, "slices": [{"batchIndex": 0, "extra": 1}]}, {})
    with pytest.raises(ConfigError, match=r"plan\.slices: must be a non-empty list"):
        parse_plan({**SLICED, "slices": []}, {})


@pytest.mark.parametrize(("path", "value"), [
    ("job", "orders\n"), ("run", "7\n"), ("destination.bucket", "exports\n"),
    ("destination.endpoint", "http://s3:9000/\n"), ("destination.prefix", "team\n"),
])
def test_trailing_newline_is_rejected(path: str, value: str) -> None:
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        parse_plan(with_change(path, value), {})


SEAL = {"runId": "orders.3", "outcome": "Canceled"}


def test_seal_plan_ignores_slices_and_the_completion_index() -> None:
    """The seal covers batches 0..batchCount-1 whatever slices the ended Job had."""
    raw = {**SLICED, "slices": [{"batchIndex": 5, "bogus": 1}], "seal": SEAL}
    plan = parse_plan(raw, {"JOB_COMPLETION_INDEX": "3"}, sealing=True)
    assert plan.seal is not None
    assert (plan.seal.run_id, plan.seal.outcome) == ("orders.3", "Canceled")
    assert (plan.batch_index, plan.batch_count, plan.run) == (0, 8, "7")
    assert parse_plan(BASE, {}).seal is None


@pytest.mark.parametrize(
    ("seal", "sealing", "message"),
    [
        (None, True, "plan.seal: is required for ferry-worker seal"),
        (SEAL, False, "plan.seal: only for ferry-worker seal"),
        ("Canceled", True, "plan.seal: must be an object, got str"),
        ({**SEAL, "extra": 1}, True, "plan.seal.extra: unknown field (allowed: outcome, runId)"),
        ({"outcome": "Canceled"}, True, "plan.seal.runId: must match"),
        ({**SEAL, "runId": "../x"}, True, "plan.seal.runId: must match"),
        ({"runId": "orders.3"}, True, "plan.seal.outcome: is required"),
        ({**SEAL, "outcome": "Done"}, True,
         "plan.seal.outcome: must be one of Succeeded, PartiallySucceeded, Failed, Canceled"),
    ],
)
def test_bad_seal_names_the_field(seal: Any, sealing: bool, message: str) -> None:
    raw = {**BASE, **({"seal": seal} if seal is not None else {})}
    with pytest.raises(ConfigError) as err:
        parse_plan(raw, {}, sealing=sealing)
    assert message in err.value.reason


def test_seal_needs_no_source_dsn() -> None:
    assert load_secrets({"FERRY_SOURCE_DSN": "host=x"}, source=False).source_dsn == ""
    assert load_secrets({}, source=False).aws_access_key_id is None
    with pytest.raises(ConfigError, match="set both or neither"):
        load_secrets({"AWS_SECRET_ACCESS_KEY": "a"}, source=False)
