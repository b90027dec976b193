"""Every schedule kind fires on its slot, once, with the slot's window, on the real
cluster with the real worker, PostgreSQL and S3 (cron: test_exportjob_controller.py).

The operator runs on the real clock, so the slots are put a few seconds ahead: `once`
at a given second, and hourly, daily (in a time zone that is not UTC), weekly and
monthly at the next whole minute. Their next slots are an hour or more away, so what
a run per slot means here is checked as "this slot ran exactly once": one run, one
history entry, one Job. The DST, month-skipping and catch-up rules are unit-tested
with an injected clock (tests/unit/test_schedule_fires.py, test_schedule_slots.py).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import pytest
import yaml

from ferry.constants import LABEL_JOB
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, minute_rows, run_jobs
from .support import Kubectl, wait_until

ZONE = "Asia/Kolkata"


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def recent_rows(pg_db: str) -> list[dt.datetime]:
    """`interactions`: one row a minute over the last three hours (and a little ahead)."""
    return minute_rows(pg_db, before=180, ahead=5)


def scheduled(name: str, wiring: Wiring, s3: S3Server, schedule: dict[str, Any]
              ) -> dict[str, Any]:
    """A job on its own concurrency key, so that the kinds run side by side."""
    return export_job(name, wiring, s3, schedule=schedule,
                      timeframe={"relative": {"last": "1h"}},
                      concurrency={"key": f"schedules-{name}"})


def test_every_schedule_kind_runs_its_slot_once_with_the_slots_window(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    recent_rows: list[dt.datetime],
) -> None:
    ns = wiring.namespace
    now = dt.datetime.now(dt.UTC)
    at = (now + dt.timedelta(seconds=10)).replace(microsecond=0)
    minute = (now + dt.timedelta(seconds=68)).replace(second=0, microsecond=0)
    local = minute.astimezone(zoneinfo.ZoneInfo(ZONE))
    slots = {
        "once-at": (at, {"once": {"at": rfc3339(at)}}),
        "hourly": (minute, {"hourly": {"every": 1, "minute": minute.minute}}),
        "daily-zoned": (minute, {"daily": {"at": local.strftime("%H:%M")}, "timeZone": ZONE}),
        "weekly": (minute, {"weekly": {"day": minute.strftime("%A"),
                                       "at": minute.strftime("%H:%M")}}),
        "monthly": (minute, {"monthly": {"day": minute.day, "at": minute.strftime("%H:%M")}}),
    }
    manifests = [scheduled(name, wiring, s3, schedule) for name, (_, schedule) in slots.items()]
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(manifests))

    before = {name: wait_until(lambda n=name: get(kubectl, ns, f"exportjob/{n}").get("status"),
                               what=f"{name} to be reconciled") for name in slots}
    for name, (slot, _) in slots.items():
        assert before[name]["nextRunAt"] == rfc3339(slot), name
        upcoming = dt.datetime.fromisoformat(before[name]["upcomingRuns"][0])
        assert upcoming == slot, name
        assert "lastRun" not in before[name], f"{name} ran before its slot"

    ended = {name: wait_until(
        lambda n=name: (get(kubectl, ns, f"exportjob/{n}").get("status") or {}).get("lastRun"),
        what=f"the {name} run", timeout=110) for name in slots}

    jobs = [j["metadata"]["labels"][LABEL_JOB] for j in run_jobs(kubectl, ns)]
    for name, (slot, _) in slots.items():
        entry = ended[name]
        start = slot - dt.timedelta(hours=1)
        assert (entry["id"], entry["trigger"], entry["phase"]) == (
            f"{name}.1", "schedule", "Succeeded"), name
        assert entry["scheduledFor"] == rfc3339(slot), name
        assert entry["window"] == {"from": rfc3339(start), "to": rfc3339(slot)}, name
        assert entry["records"] == sum(start <= s < slot for s in recent_rows), name
        status = get(kubectl, ns, f"exportjob/{name}")["status"]
        assert [h["id"] for h in status["history"]] == [f"{name}.1"], name
        assert status["runCounter"] == 1, name
        assert jobs.count(name) == 1, name

    once = get(kubectl, ns, "exportjob/once-at")["status"]
    suspended = next(c for c in once["conditions"] if c["type"] == "Suspended")
    assert (suspended["status"], suspended["reason"]) == ("True", "OneTimeStarted")
    assert "nextRunAt" not in once
    hourly = get(kubectl, ns, "exportjob/hourly")["status"]
    assert hourly["nextRunAt"] == rfc3339(minute + dt.timedelta(hours=1))
    assert before["daily-zoned"]["upcomingRuns"][0] == local.isoformat(), \
        "upcoming runs are shown in the job's zone"
    daily = get(kubectl, ns, "exportjob/daily-zoned")["status"]
    assert daily["nextRunAt"] == rfc3339(minute + dt.timedelta(days=1)), \
        "Asia/Kolkata has no DST: the same UTC time tomorrow"
    weekly = get(kubectl, ns, "exportjob/weekly")["status"]
    assert weekly["nextRunAt"] == rfc3339(minute + dt.timedelta(days=7))
