"""The helpers the controller calls for what CEL cannot check, and the unit parsers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ferry.api import (
    Schedule,
    parse_duration,
    parse_quantity,
    validate_cron,
    validate_schedule,
    validate_time_zone,
)


@pytest.mark.parametrize("expr", ["*/5 * * * *", "15 */4 * * 1-5", "0 2 1 * *", "@daily"])
def test_valid_cron(expr: str) -> None:
    assert validate_cron(expr) is None


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "cron expression '61 * * * *' is not valid"),
        ("* * * * * *", "must have five fields"),
        ("@often", "cron expression '@often' is not valid"),
        ("a b c d e", "is not valid"),
    ],
)
def test_invalid_cron(expr: str, message: str) -> None:
    problem = validate_cron(expr)
    assert problem is not None
    assert message in problem


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"])
def test_valid_time_zone(name: str) -> None:
    assert validate_time_zone(name) is None


@pytest.mark.parametrize("name", ["Mars/Olympus", "Europe/Berlinn", "../etc/passwd", ""])
def test_invalid_time_zone(name: str) -> None:
    assert validate_time_zone(name) == (
        f"time zone {name!r} is not a known IANA time zone, e.g. UTC or Europe/Berlin"
    )


def test_validate_schedule_reports_the_first_problem() -> None:
    bad_cron = Schedule.model_validate(
        {"cron": {"expression": "99 * * * *"}, "timeZone": "Nowhere"}
    )
    assert "cron expression" in (validate_schedule(bad_cron) or "")
    bad_zone = Schedule.model_validate({"daily": {"at": "01:00"}, "timeZone": "Nowhere"})
    assert "time zone 'Nowhere'" in (validate_schedule(bad_zone) or "")
    assert validate_schedule(Schedule.model_validate({"hourly": {}})) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1Mi", 2**20),
        ("1024Mi", 2**30),
        ("1.5Ki", 1536),
        ("1G", 10**9),
        ("500m", 1),
        ("1e3", 1000),
        (42, 42),
        ("7", 7),
    ],
)
def test_parse_quantity(value: int | str, expected: int) -> None:
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["", "1MB", "lots", "1 Mi", True])
def test_parse_quantity_rejects(value: int | str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4h", timedelta(hours=4)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("2w", timedelta(weeks=2)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(value: str, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["4", "h", "4 hours", "4H", "-1h", "1.5h"])
def test_parse_duration_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(value)
