"""Schedules in words for status, kubectl get and the CLI (ferry.reconcile.schedule.describe).
"""

from __future__ import annotations

from typing import Any

import pytest

from ferry.reconcile.schedule.describe import describe, schedule_type

from .schedules import sched


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ({"hourly": {"every": 4, "minute": 15}}, "every 4h at :15 UTC"),
        ({"hourly": {"every": 1, "minute": 5}}, "hourly at :05 UTC"),
        ({"daily": {"at": "02:30"}, "timeZone": "Europe/Berlin"}, "daily at 02:30 Europe/Berlin"),
        ({"weekly": {"day": "Monday", "at": "09:00"}}, "weekly Mon at 09:00 UTC"),
        ({"monthly": {"day": 31, "at": "06:00"}}, "monthly day 31 at 06:00 UTC"),
        ({"cron": {"expression": "0 */2 * * *"}}, "cron 0 */2 * * * UTC"),
        ({"once": {"at": "2026-12-01T11:00:00+01:00"}}, "once at 2026-12-01T10:00Z"),
        ({"once": {"at": "2026-12-01T10:00:30Z"}}, "once at 2026-12-01T10:00:30Z"),
        ({"once": {}}, "once (immediately)"),
    ],
)
def test_describe(spec: dict[str, Any], text: str) -> None:
    assert describe(sched(**spec)) == text


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (None, "on demand"),
        ({"once": {}}, "one-time"),
        ({"once": {"at": "2026-12-01T10:00:00Z"}}, "one-time"),
        ({"hourly": {"every": 4, "minute": 15}}, "recurring"),
        ({"cron": {"expression": "0 */2 * * *"}}, "recurring"),
    ],
)
def test_schedule_type(spec: dict[str, Any] | None, kind: str) -> None:
    """The Type column of kubectl get (status.scheduleType)."""
    assert schedule_type(sched(**spec) if spec is not None else None) == kind
