"""Schedules as a user relies on them, on the real cluster, clock, operator and worker.

- `once` without `at`: runs at once when created, a single run (trigger `schedule`,
  slot = the creation time), then the job stays suspended for good.
- `hourly` counts hours from 00:00 UTC: `status.upcomingRuns` of an every-4h job, and a
  live fire. The operator has no clock that a test could shift (it runs on the real
  clock; `ferry.controller.loop.Loop.clock` is no option or environment
  variable), so a slot a minute ahead can only be an every-4h slot when the current UTC
  hour is a multiple of 4. In the other hours the live fire uses `every: <hour>`
  instead (slots at 00:MM and <hour>:MM UTC, right only when hours are counted from
  00:00 UTC rather than from the job's creation); at 01:xx UTC only `every: 1` has a
  slot in the hour, which would show nothing, and the live test is skipped.
- DST: a daily wall-clock time inside a spring-forward gap and inside a fall-back
  overlap of Europe/Berlin and America/New_York, as docs/scheduling.md states it
  ("shifted forward by the length of the gap", "once, at its first occurrence"), seen in
  `upcomingRuns`. The next change is months away, so the schedule is the cron form of
  "daily at HH:MM" restricted to the change day and its neighbour (`MM HH D,D+1 M *`, the
  same wall-clock rule as daily, weekly and monthly); the expected instants are computed
  here with zoneinfo from the zone's next transition. Without a clock to shift, a DST
  slot cannot fire live in a test: what runs is what `upcomingRuns` lists (a slot runs
  at most once, tested above and in test_schedules.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import subprocess
import time
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry.constants import LABEL_JOB, LABEL_RUN
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, minute_rows
from .support import Kubectl, wait_until

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.UTC


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def recent_rows(pg_db: str) -> list[dt.datetime]:
    """`interactions`: one row a minute over the last six hours (and a little ahead)."""
    return minute_rows(pg_db, before=360, ahead=10)


def status_of(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    return get(kubectl, ns, f"exportjob/{name}").get("status") or {}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def apply(kubectl: Kubectl, ns: str, manifest: dict[str, Any]) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))


def jobs_of(kubectl: Kubectl, ns: str, name: str) -> list[str]:
    """The batch/v1 Jobs running the job's runs (not other Jobs of the job's, such as a
    run's seal)."""
    return [j["metadata"]["name"] for j in get(kubectl, ns, "jobs")["items"]
            if j["metadata"]["labels"].get(LABEL_JOB) == name
            and LABEL_RUN in j["metadata"]["labels"]]


# --- once, immediately ---------------------------------------------------------------------


def test_a_one_time_job_without_at_runs_once_at_creation_then_stays_suspended(
    kubectl: Kubectl, kubeconfig: str, operator: OperatorProcess, wiring: Wiring,
    s3: S3Server, recent_rows: list[dt.datetime],
) -> None:
    ns = wiring.namespace
    apply(kubectl, ns, export_job("once-now", wiring, s3, schedule={"once": {}},
                                  timeframe={"relative": {"last": "1h"}},
                                  concurrency={"key": "user-schedules-once-now"}))
    created = parse(get(kubectl, ns, "exportjob/once-now")["metadata"]["creationTimestamp"])

    entry = wait_until(lambda: status_of(kubectl, ns, "once-now").get("lastRun"),
                       what="the one-time run to end", timeout=120)

    assert (entry["id"], entry["trigger"], entry["phase"]) == (
        "once-now.1", "schedule", "Succeeded")
    assert parse(entry["scheduledFor"]) == created, "its slot is the job's creation time"
    assert parse(entry["startedAt"]) - created < dt.timedelta(seconds=60), \
        "started immediately, not at some later slot"
    start = created - dt.timedelta(hours=1)
    assert entry["window"] == {"from": rfc3339(start), "to": rfc3339(created)}
    assert entry["records"] == sum(start <= s < created for s in recent_rows)

    status = status_of(kubectl, ns, "once-now")
    suspended = condition(status, "Suspended")
    assert (suspended["status"], suspended["reason"]) == ("True", "OneTimeStarted")
    assert status["scheduleSummary"] == "once (immediately)"
    assert status["oneTimeStartedAt"]
    assert "nextRunAt" not in status and "upcomingRuns" not in status

    # For good: the plugin refuses to resume it, the API server refuses any spec edit.
    resume = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "kubectl-ferry"), "-n", ns, "resume", "once-now"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "KUBECONFIG": kubeconfig})
    assert resume.returncode == 1
    assert "is a one-time job that has already started: it cannot be resumed" in resume.stderr
    edit = kubectl("patch", "exportjob/once-now", "-n", ns, "--type=merge",
                   "-p", json.dumps({"spec": {"title": "again"}}), check=False)
    assert edit.returncode != 0
    assert "spec cannot change after a one-time job (schedule.once) has started" in edit.stderr

    # A later reconcile (any metadata change wakes it) starts nothing more.
    kubectl("label", "-n", ns, "exportjob/once-now", "touched=yes")
    time.sleep(8)
    status = status_of(kubectl, ns, "once-now")
    assert status["runCounter"] == 1
    assert [h["id"] for h in status["history"]] == ["once-now.1"]
    assert "currentRun" not in status
    assert jobs_of(kubectl, ns, "once-now") == ["once-now-1"]
    assert condition(status, "Suspended")["reason"] == "OneTimeStarted"


# --- hourly, counted from 00:00 UTC --------------------------------------------------------


def grid_slots(every: int, minute: int, after: dt.datetime, count: int = 3) -> list[dt.datetime]:
    """Slots of `hourly: {every, minute}` strictly after `after`: hours 0, every, 2*every,
    ... < 24 of each UTC day (the count restarts at midnight), at `minute`."""
    day = after.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    slots: list[dt.datetime] = []
    while len(slots) < count:
        for hour in range(0, 24, every):
            slot = day + dt.timedelta(hours=hour, minutes=minute)
            if slot > after and len(slots) < count:
                slots.append(slot)
        day += dt.timedelta(days=1)
    return slots


def test_every_4h_lists_its_next_three_slots_counted_from_midnight_utc(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
) -> None:
    ns = wiring.namespace
    now = dt.datetime.now(UTC)
    minute = (now.minute + 30) % 60  # the nearest slot is at least 29 minutes away
    apply(kubectl, ns, export_job("every-4h", wiring, s3,
                                  schedule={"hourly": {"every": 4, "minute": minute}},
                                  timeframe={"relative": {"last": "4h"}},
                                  concurrency={"key": "user-schedules-every-4h"}))
    created = parse(get(kubectl, ns, "exportjob/every-4h")["metadata"]["creationTimestamp"])

    status = wait_until(lambda: (s := status_of(kubectl, ns, "every-4h")).get("upcomingRuns")
                        and s, what="upcomingRuns")

    expected = grid_slots(4, minute, created)
    assert [parse(t) for t in status["upcomingRuns"]] == expected
    assert all(t.hour in (0, 4, 8, 12, 16, 20) and t.minute == minute for t in expected)
    assert status["nextRunAt"] == rfc3339(expected[0])
    assert status["scheduleSummary"] == f"every 4h at :{minute:02d} UTC"
    assert status["phase"] == "Scheduled"
    assert "lastRun" not in status


def test_hourly_fires_live_on_its_slot_counted_from_midnight_utc(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    recent_rows: list[dt.datetime],
) -> None:
    ns = wiring.namespace
    slot = (dt.datetime.now(UTC) + dt.timedelta(seconds=100)).replace(second=0, microsecond=0)
    if slot.hour % 4 == 0:
        every = 4
    elif slot.hour >= 2:
        every = slot.hour  # fires at 00:MM and <hour>:MM UTC: anchored at midnight
    else:
        pytest.skip(f"the next minute is {slot:%H:%M} UTC: only `every: 1` has a slot in "
                    "hour 01, which shows nothing about counting from 00:00 UTC (the "
                    "operator's clock cannot be shifted)")
    name = f"every-{every}h-live"
    apply(kubectl, ns, export_job(name, wiring, s3,
                                  schedule={"hourly": {"every": every, "minute": slot.minute}},
                                  timeframe={"relative": {"last": f"{every}h"}},
                                  concurrency={"key": f"user-schedules-{name}"}))
    created = parse(get(kubectl, ns, f"exportjob/{name}")["metadata"]["creationTimestamp"])
    before = wait_until(lambda: status_of(kubectl, ns, name).get("upcomingRuns") and
                        status_of(kubectl, ns, name), what="upcomingRuns")
    assert [parse(t) for t in before["upcomingRuns"]] == grid_slots(every, slot.minute, created)
    assert parse(before["upcomingRuns"][0]) == slot

    entry = wait_until(lambda: status_of(kubectl, ns, name).get("lastRun"),
                       what=f"the run of the {slot:%H:%M} UTC slot", timeout=180)

    assert (entry["id"], entry["trigger"], entry["phase"]) == (
        f"{name}.1", "schedule", "Succeeded")
    assert entry["scheduledFor"] == rfc3339(slot)
    start = slot - dt.timedelta(hours=every)
    assert entry["window"] == {"from": rfc3339(start), "to": rfc3339(slot)}
    assert entry["records"] == sum(start <= s < slot for s in recent_rows)
    status = status_of(kubectl, ns, name)
    assert status["nextRunAt"] == rfc3339(grid_slots(every, slot.minute, slot)[0])
    assert [h["id"] for h in status["history"]] == [f"{name}.1"]
    assert jobs_of(kubectl, ns, name) == [f"{name}-1"]


# --- DST -----------------------------------------------------------------------------------


def next_transition(zone: zoneinfo.ZoneInfo, after: dt.datetime, forward: bool
                    ) -> tuple[dt.datetime, dt.timedelta, dt.timedelta]:
    """The zone's next change after `after` that moves clocks forward (spring) or back
    (fall): (instant in UTC, offset before, offset after), found by stepping UTC hours
    and then minutes."""
    def offset(t: dt.datetime) -> dt.timedelta:
        value = t.astimezone(zone).utcoffset()
        assert value is not None
        return value

    t = after.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for _ in range(24 * 400):
        nxt = t + dt.timedelta(hours=1)
        before, later = offset(t), offset(nxt)
        if before != later and (later > before) == forward:
            while offset(t + dt.timedelta(minutes=1)) == before:
                t += dt.timedelta(minutes=1)
            return t + dt.timedelta(minutes=1), before, later
        t = nxt
    raise AssertionError(f"{zone.key} has no DST change within 400 days")


def documented_instant(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """Where docs/scheduling.md says a wall-clock time `wall` (naive) fires in `zone`:
    a time in a spring-forward gap shifted forward by the length of the gap, a time in
    a fall-back overlap at its first occurrence, any other time at its only instant."""
    candidates = sorted({(wall - off).replace(tzinfo=UTC)
                         for off in (wall.replace(tzinfo=zone, fold=f).utcoffset()
                                     for f in (0, 1)) if off is not None})
    real = [c for c in candidates if c.astimezone(zone).replace(tzinfo=None) == wall]
    if real:
        return real[0]  # the only instant, or the first of two
    early = wall.replace(tzinfo=zone, fold=0).utcoffset()
    late = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert early is not None and late is not None
    gap = abs(late - early)
    shifted = (wall + gap).replace(tzinfo=zone)
    assert shifted.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall + gap
    return shifted.astimezone(UTC)


def dst_case(zone_name: str, kind: str) -> tuple[dict[str, Any], dt.datetime, list[str]]:
    """(schedule, the change-day slot, the expected upcomingRuns) for a wall-clock time
    in the middle of the gap (`spring`) or the repeated hour (`fall`) of the zone's next
    change at least two days ahead."""
    zone = zoneinfo.ZoneInfo(zone_name)
    now = dt.datetime.now(UTC)
    change, before, after = next_transition(zone, now + dt.timedelta(days=2),
                                            forward=kind == "spring")
    shift = abs(after - before)
    # The skipped / repeated local hour starts at the change's wall time on the side of
    # the older offset (spring) or the newer one (fall).
    start = (change + (before if kind == "spring" else after)).replace(tzinfo=None)
    wall = start + shift / 2
    assert wall.second == 0 and wall.microsecond == 0
    month_days = (dt.date(wall.year + wall.month // 12, wall.month % 12 + 1, 1)
                  - dt.timedelta(days=1)).day
    days = [wall.day, wall.day + 1] if wall.day < month_days else [wall.day - 1, wall.day]
    schedule = {"cron": {"expression": f"{wall.minute} {wall.hour} "
                         f"{','.join(map(str, days))} {wall.month} *"},
                "timeZone": zone_name}
    expected = sorted(
        documented_instant(dt.datetime(year, wall.month, day, wall.hour, wall.minute), zone)
        for year in (wall.year, wall.year + 1, wall.year + 2) for day in days)
    expected = [t for t in expected if t > now][:3]
    change_day = documented_instant(wall, zone)
    return schedule, change_day, [t.astimezone(zone).isoformat() for t in expected]


DST_CASES = [("Europe/Berlin", "spring"), ("Europe/Berlin", "fall"),
             ("America/New_York", "spring"), ("America/New_York", "fall")]


def test_dst_gap_and_overlap_slots_are_listed_once_at_the_documented_instant(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
) -> None:
    ns = wiring.namespace
    cases = {}
    for zone_name, kind in DST_CASES:
        name = f"dst-{zone_name.split('/')[1].lower().replace('_', '-')}-{kind}"
        cases[name] = dst_case(zone_name, kind)
        apply(kubectl, ns, export_job(name, wiring, s3, schedule=cases[name][0],
                                      timeframe={"relative": {"last": "1d"}},
                                      concurrency={"key": f"user-schedules-{name}"}))

    def listed(name: str) -> dict[str, Any] | None:
        status = status_of(kubectl, ns, name)
        return status if status.get("upcomingRuns") else None

    for name, (schedule, change_day, expected) in cases.items():
        status = wait_until(functools.partial(listed, name), what=f"upcomingRuns of {name}")
        zone = zoneinfo.ZoneInfo(schedule["timeZone"])
        local_day = change_day.astimezone(zone).date()
        assert status["upcomingRuns"] == expected, (name, schedule)
        on_change_day = [t for t in status["upcomingRuns"]
                         if dt.datetime.fromisoformat(t).date() == local_day]
        assert on_change_day == [change_day.astimezone(zone).isoformat()], \
            f"{name}: exactly one slot on the change day, at the documented instant"
        assert status["nextRunAt"] == rfc3339(parse(expected[0])), name
        assert condition(status, "Ready")["status"] == "True", name

    # What docs/scheduling.md spells out for these zones, as a cross-check of the
    # computation above (the change days of the current rules, whatever the year).
    berlin_spring = cases["dst-berlin-spring"][1].astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert berlin_spring.strftime("%H:%M %z") == "03:30 +0200", "02:30 runs at 03:30 CEST"
    berlin_fall = cases["dst-berlin-fall"][1].astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert berlin_fall.strftime("%H:%M %z") == "02:30 +0200", "02:30 runs at 02:30 CEST"
    ny_spring = cases["dst-new-york-spring"][1].astimezone(zoneinfo.ZoneInfo("America/New_York"))
    assert ny_spring.strftime("%H:%M %z") == "03:30 -0400", "02:30 runs at 03:30 EDT"
    ny_fall = cases["dst-new-york-fall"][1].astimezone(zoneinfo.ZoneInfo("America/New_York"))
    assert ny_fall.strftime("%H:%M %z") == "01:30 -0400", "01:30 runs at 01:30 EDT"
