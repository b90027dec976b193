"""kubectl-style formatting: tables, bars, durations, relative times, -o output."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml

from ferry.cli import render

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def test_table_pads_columns_and_strips_trailing_space() -> None:
    out = render.table(["NAME", "PHASE"], [["a", "Succeeded"], ["longer-name", "-"]])
    assert out == (
        "NAME          PHASE\n"
        "a             Succeeded\n"
        "longer-name   -\n"
    )


def test_fields_align_values_like_kubectl_describe() -> None:
    assert render.fields([("Name", "x"), ("Namespace", "y")], indent="  ") == (
        "  Name:       x\n"
        "  Namespace:  y\n"
    )


@pytest.mark.parametrize(
    ("percent", "expected"),
    [(0, "[--------------------]   0%"), (45, "[#########-----------]  45%"),
     (100, "[####################] 100%"), (140, "[####################] 100%")],
)
def test_bar(percent: int, expected: str) -> None:
    assert render.bar(percent) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, "-"), (0, "0s"), (90, "1m30s"), (3600, "1h"), (3700, "1h1m"), (86400, "1d"),
     (90000, "1d1h")],
)
def test_duration(seconds: int | None, expected: str) -> None:
    assert render.duration(seconds) == expected


def test_relative_past_and_future() -> None:
    assert render.relative(NOW - dt.timedelta(hours=2), NOW) == "2h ago"
    assert render.relative(NOW + dt.timedelta(minutes=45), NOW) == "in 45m"
    assert render.relative(None, NOW) == "-"


def test_timestamp_is_utc_rfc3339() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    assert render.timestamp(dt.datetime(2026, 11, 22, 13, 0, tzinfo=berlin)) == (
        "2026-11-22T12:00:00Z"
    )


@pytest.mark.parametrize(
    ("size", "expected"), [(None, "-"), (512, "512 B"), (1536, "1.5 KiB"), (3 * 2**20, "3.0 MiB")]
)
def test_size(size: int | None, expected: str) -> None:
    assert render.size(size) == expected


def test_text_folds_newlines() -> None:
    assert render.text("a\n  b") == "a b"
    assert render.text(None) == "-"


def test_dump_json_and_yaml_round_trip() -> None:
    doc = {"b": 1, "a": ["x"]}
    assert json.loads(render.dump(doc, "json")) == doc
    assert yaml.safe_load(render.dump(doc, "yaml")) == doc
    assert render.dump(doc, "yaml").startswith("b: 1")  # key order kept
