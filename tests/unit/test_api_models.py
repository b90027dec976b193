"""The pydantic models: parsing, aliasing, defaults and the rules they share with CEL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from ferry.api import (
    ExportJob,
    ExportJobSpec,
    ExportJobStatus,
    Filter,
    HistoryEntry,
    ImportJob,
    JobGroup,
    JobGroupSpec,
    MissedRunPolicy,
    RunPhase,
    RunStatus,
    Schedule,
    Timeframe,
    Window,
)

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "Orders",
        "source": {
            "type": "postgres",
            "connectionSecretRef": {"name": "warehouse-db", "key": "uri"},
            "table": "sales.orders",
        },
        "output": {"s3": {"bucket": "exports"}},
    }
    return base | changes


def rejects(model: Any, data: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert message in str(info.value)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_parses(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    model = {"ExportJob": ExportJob, "ImportJob": ImportJob, "JobGroup": JobGroup}[doc["kind"]]
    parsed = model.model_validate(doc)
    assert parsed.metadata.name == doc["metadata"]["name"]


def test_defaults() -> None:
    parsed = ExportJobSpec.model_validate(spec())
    assert parsed.suspend is False
    assert parsed.history_limit == 20
    assert parsed.timeframe.kind == "all"
    assert parsed.schedule is None
    assert parsed.output.format == "csv"
    assert parsed.output.compression == "none"
    assert parsed.output.file_split_bytes is None


def test_wire_names_are_camel_case_and_python_names_snake_case() -> None:
    parsed = ExportJobSpec.model_validate(
        spec(historyLimit=5, schedule={"daily": {"at": "02:00"}, "timeZone": "Europe/Berlin"})
    )
    assert parsed.history_limit == 5
    assert parsed.schedule is not None
    assert parsed.schedule.time_zone == "Europe/Berlin"
    dumped = parsed.to_k8s()
    assert dumped["historyLimit"] == 5
    assert dumped["schedule"]["timeZone"] == "Europe/Berlin"
    assert dumped["source"]["connectionSecretRef"] == {"name": "warehouse-db", "key": "uri"}
    assert "description" not in dumped  # None is absent, never null


def test_reserved_word_aliases() -> None:
    f = Filter.model_validate({"column": "media_type", "in": ["chat", "email"]})
    assert f.in_ == ["chat", "email"]
    assert f.to_k8s() == {"column": "media_type", "in": ["chat", "email"]}
    w = Window(from_=datetime(2030, 1, 1, tzinfo=UTC))
    assert w.to_k8s() == {"from": "2030-01-01T00:00:00Z"}


def test_round_trip_is_stable() -> None:
    """Parsing what we dump gives the same dump: no defaulted field flips."""
    for path in EXAMPLES:
        doc = yaml.safe_load(path.read_text())
        model = {"ExportJob": ExportJob, "ImportJob": ImportJob, "JobGroup": JobGroup}[doc["kind"]]
        once = model.model_validate(doc).to_k8s()
        assert model.model_validate(once).to_k8s() == once


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hourly": {}, "daily": {"at": "02:00"}}, "set exactly one of once, hourly"),
        ({"timeZone": "UTC"}, "set exactly one of once, hourly"),
        ({"hourly": {"every": 24}}, "less than or equal to 23"),
        ({"hourly": {"minute": -1}}, "greater than or equal to 0"),
        ({"daily": {"at": "24:00"}}, "String should match pattern"),
        ({"weekly": {"day": "Funday", "at": "01:00"}}, "Input should be 'Monday'"),
        ({"monthly": {"day": 32, "at": "01:00"}}, "less than or equal to 31"),
        ({"cron": {"expression": "daily"}}, "String should match pattern"),
        ({"daily": {"at": "01:00"}, "maxCatchUp": 3}, "maxCatchUp only applies"),
        ({"once": {"at": "2030-01-01T00:00:00"}}, "Input should have timezone info"),
    ],
)
def test_invalid_schedules(data: dict[str, Any], message: str) -> None:
    rejects(Schedule, data, message)


def test_schedule_kind_and_policy() -> None:
    s = Schedule.model_validate({"cron": {"expression": "5 */2 * * 1-5"}})
    assert s.kind == "cron"
    assert s.missed_run_policy == MissedRunPolicy.LATEST
    all_ = Schedule.model_validate(
        {"hourly": {"every": 4}, "missedRunPolicy": "All", "maxCatchUp": 6}
    )
    assert all_.max_catch_up == 6
    assert all_.hourly is not None
    assert (all_.hourly.every, all_.hourly.minute) == (4, 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "set exactly one of all, fixed, relative or incremental"),
        ({"all": {}, "incremental": {}}, "set exactly one of all, fixed"),
        (
            {"fixed": {"start": "2024-02-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"}},
            "end must be later than start",
        ),
        ({"relative": {"last": "0h"}}, "last must be greater than zero"),
        ({"relative": {"last": "4 hours"}}, "String should match pattern"),
    ],
)
def test_invalid_timeframes(data: dict[str, Any], message: str) -> None:
    rejects(Timeframe, data, message)


def test_timeframe_kinds() -> None:
    assert Timeframe.model_validate({"relative": {"last": "1d12h"}}).kind == "relative"
    inc = Timeframe.model_validate({"incremental": {"initialStart": "2025-01-01T00:00:00Z"}})
    assert inc.incremental is not None
    assert inc.incremental.initial_start == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"title": ""}, "at least 1 character"),
        ({"source": spec()["source"] | {"query": "SELECT 1"}}, "set exactly one of table or query"),
        (
            {"source": spec()["source"] | {"table": "x; DROP TABLE y"}},
            "String should match pattern",
        ),
        (
            {
                "source": spec()["source"]
                | {"filters": [{"column": "a", "equals": "b", "isNull": True}]}
            },
            "set exactly one of in, notIn, equals or isNull",
        ),
        ({"timeframe": {"incremental": {}}}, "spec.source.timestampColumn is required"),
        ({"batching": {"rowsPerBatch": 10}}, "spec.source.keyColumn is required"),
        ({"batching": {"batches": 3}}, "spec.batching.batches > 1 needs"),
        ({"batching": {"batches": 3, "rowsPerBatch": 1}}, "set at most one of batches"),
        ({"output": {"s3": {"bucket": "team..exports"}}}, "two adjacent periods"),
        ({"output": {"s3": {"bucket": "exports"}, "fileSplitSize": "100Ki"}}, "at least 1Mi"),
        (
            {"output": {"s3": {"bucket": "exports"}, "fileSplitSize": "big"}},
            "not a Kubernetes quantity",
        ),
        ({"historyLimit": 101}, "less than or equal to 100"),
        (
            {"worker": {"tolerations": [{"operator": "Exists", "value": "x"}]}},
            "operator Exists must not set value",
        ),
        (
            {"worker": {"tolerations": [{"key": "k", "tolerationSeconds": 5}]}},
            "tolerationSeconds only applies to effect NoExecute",
        ),
    ],
)
def test_invalid_export_job_specs(changes: dict[str, Any], message: str) -> None:
    rejects(ExportJobSpec, spec(**changes), message)


def test_file_split_size_in_bytes() -> None:
    out = ExportJobSpec.model_validate(
        spec(output={"s3": {"bucket": "exports"}, "fileSplitSize": "1024Mi"})
    ).output
    assert out.file_split_bytes == 1024 * 2**20
    as_int = ExportJobSpec.model_validate(
        spec(output={"s3": {"bucket": "exports"}, "fileSplitSize": 2**20})
    ).output
    assert as_int.file_split_bytes == 2**20


def test_one_time_flag() -> None:
    assert ExportJobSpec.model_validate(spec(schedule={"once": {}})).is_one_time
    assert not ExportJobSpec.model_validate(spec(schedule={"hourly": {}})).is_one_time
    assert not ExportJobSpec.model_validate(spec()).is_one_time


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([], "at least 1 item"),
        (["Bad_Name"], "String should match pattern"),
        (["a" * 53], "the name at most 52 characters"),
        (["importjob/" + "a" * 53], "at most 62 characters"),
        (["cronjob/a"], "String should match pattern"),
    ],
)
def test_invalid_group_members(members: list[str], message: str) -> None:
    rejects(JobGroupSpec, {"title": "g", "members": members}, message)


def test_group_defaults() -> None:
    group = JobGroupSpec.model_validate({"title": "g", "members": ["a", "b"]})
    assert group.failure_policy == "StopOnFailure"
    assert group.schedule is None
    assert group.history_limit == 20


def test_status_round_trip() -> None:
    now = datetime(2030, 1, 1, 4, 15, tzinfo=UTC)
    status = ExportJobStatus(
        phase="InProgress",
        run_counter=3,
        current_run=RunStatus(
            id="orders.3",
            number=3,
            trigger="group:nightly.7",
            phase=RunPhase.IN_PROGRESS,
            window=Window(from_=now - timedelta(hours=4), to=now),
            percent=45,
        ),
        history=[
            HistoryEntry(id="orders.2", number=2, trigger="schedule", phase=RunPhase.SUCCEEDED)
        ],
    )
    dumped = status.to_k8s()
    assert dumped["currentRun"]["window"] == {
        "from": "2030-01-01T00:15:00Z",
        "to": "2030-01-01T04:15:00Z",
    }
    assert ExportJobStatus.model_validate(dumped) == status


@pytest.mark.parametrize("trigger", ["cron", "group:Nightly.1", "group:nightly", "manual "])
def test_run_trigger_vocabulary(trigger: str) -> None:
    rejects(RunStatus, {"id": "a.1", "number": 1, "trigger": trigger, "phase": "Queued"}, "pattern")
