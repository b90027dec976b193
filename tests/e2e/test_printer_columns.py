"""What `kubectl get ej` and `kubectl get jg` print (issue 22, "readiness where people
look"): the Type, Ready and Phase of a valid and an invalid job, and a group's Members as
a count naming the missing ones, read from the real kubectl's table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml

from .operator_fixtures import OperatorProcess, get
from .support import Kubectl, wait_until


def job(name: str, time_zone: str | None) -> dict[str, Any]:
    """A daily job 12 hours away (no run starts), or without a schedule (on demand)."""
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)).strftime("%H:%M")
    spec: dict[str, Any] = {
        "title": name,
        "source": {"type": "postgres", "connectionSecretRef": {"name": "db", "key": "dsn"},
                   "table": "orders", "timestampColumn": "created_at"},
        "output": {"s3": {"bucket": "exports"}, "format": "csv"}}
    if time_zone is not None:
        spec["schedule"] = {"daily": {"at": at}, "timeZone": time_zone}
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob",
            "metadata": {"name": name}, "spec": spec}


def table(kubectl: Kubectl, ns: str, kind: str) -> dict[str, dict[str, str]]:
    """kubectl get's table by NAME, each row by column header."""
    lines = kubectl("get", kind, "-n", ns).stdout.splitlines()
    header = lines[0]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    # Headers with a space ("LAST RUN") start once: merge the word after a single space.
    starts = [s for s in starts if s == 0 or header[s - 2] == " "]
    bounds = [*starts[1:], None]
    rows = {}
    for line in lines[1:]:
        cells = {header[s:e].strip(): line[s:e].strip() for s, e in zip(starts, bounds,
                                                                         strict=True)}
        rows[cells["NAME"]] = cells
    return rows


def judged(kubectl: Kubectl, ns: str, obj: str) -> bool:
    status = get(kubectl, ns, obj).get("status") or {}
    return any(c["type"] == "Ready" for c in status.get("conditions") or [])


def test_kubectl_get_shows_type_ready_phase_and_member_count(
        kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    ns = namespace
    for manifest in (job("daily", "UTC"), job("mars", "Mars/Olympus"), job("adhoc", None),
                     {"apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup",
                      "metadata": {"name": "nightly"},
                      "spec": {"title": "Nightly", "members": ["daily", "adhoc", "ghost"]}}):
        kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    for obj in ("exportjob/daily", "exportjob/mars", "exportjob/adhoc", "jobgroup/nightly"):
        wait_until(lambda obj=obj: judged(kubectl, ns, obj), timeout=60)

    jobs = table(kubectl, ns, "exportjobs")
    assert [(n, r["TYPE"], r["READY"], r["PHASE"]) for n, r in sorted(jobs.items())] == [
        ("adhoc", "on demand", "True", "Drafted"),
        ("daily", "recurring", "True", "Scheduled"),
        ("mars", "recurring", "False", "Invalid"),
    ]
    assert jobs["adhoc"]["SCHEDULE"] == "on demand"
    # No run yet: nothing initiated one.
    assert jobs["daily"]["INITIATED BY"] == ""

    groups = table(kubectl, ns, "jobgroups")
    row = groups["nightly"]
    assert (row["TYPE"], row["MEMBERS"], row["READY"], row["PHASE"]) == (
        "on demand", "3 jobs, 1 missing", "False", "Drafted")
