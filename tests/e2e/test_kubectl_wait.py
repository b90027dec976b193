"""`kubectl wait` on the conditions the operator writes (docs/gitops.md, "`kubectl wait`").

The real `kubectl` binary waits on ExportJobs and a JobGroup whose status only this
module's operator writes: Ready=True for a valid spec; Ready=False with the reason for
one only the operator can judge (an unknown time zone, with the admission webhook off as
it is for these operators, or a group member that does not exist); and, right after an
edit, no success on a Ready=True the operator wrote for the previous generation.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import yaml

from .operator_fixtures import OperatorProcess, get, start_operator
from .support import Kubectl

ZONE_MESSAGE = ("spec.schedule.timeZone 'Mars/Olympus' is not an IANA time zone "
                "(use e.g. UTC, Europe/Berlin, America/New_York)")


def orders(time_zone: str) -> dict[str, Any]:
    """A daily job 12 hours away: no run starts while the test runs, and its Secrets are
    never read (the operator judges the spec, not the Secrets, until a run starts)."""
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)).strftime("%H:%M")
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob",
            "metadata": {"name": "orders"},
            "spec": {"title": "orders", "schedule": {"daily": {"at": at}, "timeZone": time_zone},
                     "source": {"type": "postgres",
                                "connectionSecretRef": {"name": "db", "key": "dsn"},
                                "table": "orders", "timestampColumn": "created_at"},
                     "output": {"s3": {"bucket": "exports"}, "format": "csv"}}}


def wait(kubectl: Kubectl, ns: str, obj: str, condition: str, timeout: str
         ) -> tuple[int, str, str]:
    done = kubectl("wait", "-n", ns, f"--for=condition={condition}", obj,
                   f"--timeout={timeout}", check=False)
    return done.returncode, done.stdout, done.stderr


def ready(kubectl: Kubectl, ns: str, obj: str) -> dict[str, Any]:
    """The Ready condition as stored, with the object's generation beside it."""
    found = get(kubectl, ns, obj)
    [condition] = [c for c in found["status"]["conditions"] if c["type"] == "Ready"]
    return {**condition, "generation": found["metadata"]["generation"]}


def apply(kubectl: Kubectl, ns: str, manifest: dict[str, Any]) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))


def test_kubectl_wait_for_ready(kubectl: Kubectl, operator: OperatorProcess, namespace: str,
                                operator_kubeconfig: str) -> None:
    ns = namespace
    apply(kubectl, ns, orders("Europe/Berlin"))
    # Created without status: the wait is met once the operator has judged the spec.
    assert wait(kubectl, ns, "exportjob/orders", "Ready", "60s") == (
        0, "exportjob.ferry.dev/orders condition met\n", "")
    condition = ready(kubectl, ns, "exportjob/orders")
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "True", "Valid", "the spec is valid")
    assert condition["observedGeneration"] == condition["generation"] == 1

    # An edit the operator has not judged yet: its Ready=True is for generation 1, so a
    # pipeline's `kubectl apply && kubectl wait` does not pass on it.
    operator.kill()
    try:
        apply(kubectl, ns, orders("Mars/Olympus"))
        assert ready(kubectl, ns, "exportjob/orders")["status"] == "True"
        assert wait(kubectl, ns, "exportjob/orders", "Ready", "5s") == (
            1, "", "error: timed out waiting for the condition on exportjobs/orders\n")
    finally:
        operator.process = start_operator(operator_kubeconfig, operator.log, ns).process

    # Judged: Ready=False with the reason and what to fix; the Ready wait times out.
    assert wait(kubectl, ns, "exportjob/orders", "Ready=False", "60s") == (
        0, "exportjob.ferry.dev/orders condition met\n", "")
    condition = ready(kubectl, ns, "exportjob/orders")
    assert (condition["reason"], condition["message"]) == ("InvalidTimeZone", ZONE_MESSAGE)
    assert condition["observedGeneration"] == condition["generation"] == 2
    assert wait(kubectl, ns, "exportjob/orders", "Ready", "5s") == (
        1, "", "error: timed out waiting for the condition on exportjobs/orders\n")
    reason = kubectl("get", "-n", ns, "exportjob/orders", "-o",
                     'jsonpath={.status.conditions[?(@.type=="Ready")].reason}').stdout
    assert reason == "InvalidTimeZone"
    phase = json.loads(kubectl("get", "-n", ns, "exportjob/orders", "-o", "json").stdout)[
        "status"]["phase"]
    assert phase == "Invalid"

    # Fixed in place: Ready again, for the new generation.
    apply(kubectl, ns, orders("UTC"))
    assert wait(kubectl, ns, "exportjob/orders", "Ready", "60s") == (
        0, "exportjob.ferry.dev/orders condition met\n", "")
    assert ready(kubectl, ns, "exportjob/orders")["observedGeneration"] == 3


def test_kubectl_wait_for_a_group_ready_once_its_members_exist(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str,
) -> None:
    """docs/groups.md: `kubectl wait jg/nightly --for=condition=Ready`."""
    ns = namespace
    apply(kubectl, ns, {"apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup",
                        "metadata": {"name": "nightly"},
                        "spec": {"title": "nightly", "members": ["invoices"]}})
    assert wait(kubectl, ns, "jobgroup/nightly", "Ready=False", "60s") == (
        0, "jobgroup.ferry.dev/nightly condition met\n", "")
    condition = ready(kubectl, ns, "jobgroup/nightly")
    assert (condition["reason"], condition["message"]) == (
        "MemberNotFound", 'member "invoices" not found')
    assert wait(kubectl, ns, "jobgroup/nightly", "Ready", "5s") == (
        1, "", "error: timed out waiting for the condition on jobgroups/nightly\n")

    invoices = orders("UTC")
    invoices["metadata"]["name"] = "invoices"
    apply(kubectl, ns, invoices)
    assert wait(kubectl, ns, "jobgroup/nightly", "Ready", "60s") == (
        0, "jobgroup.ferry.dev/nightly condition met\n", "")
    condition = ready(kubectl, ns, "jobgroup/nightly")
    assert (condition["status"], condition["reason"]) == ("True", "Valid")
