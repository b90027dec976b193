"""The JobGroup controller on the real cluster, with the real worker, PostgreSQL and S3.

The same three members (one reading a view that always fails) serve two groups with
different failure policies, so these tests also cover a job in two groups. Each test
reads back what a user would: the group's status and each member's own history.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import (
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
)
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, request
from .support import Kubectl, wait_until

WINDOW = {"fixed": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"}}
ONE_BATCH = {"batches": 1, "retriesPerBatch": 0}


@pytest.fixture(scope="module")
def members(kubectl: Kubectl, wiring: Wiring, s3: S3Server, pg_db: str) -> list[str]:
    """ExportJobs ``first``, ``broken`` (every row raises until ``fixed`` has a row) and
    ``third``; ``slow`` (minutes long) and ``paused`` (suspended) for the interplay tests."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions AS SELECT id, timestamptz '2026-11-01' "
                      "+ id * interval '1 minute' AS created_at FROM generate_series(0, 59) id")
        conn.execute("CREATE TABLE fixed (ok boolean)")
        conn.execute("CREATE VIEW broken_view AS SELECT id, created_at, CASE WHEN NOT EXISTS "
                     "(SELECT 1 FROM fixed) THEN (1 / (id - id))::text END AS payload "
                     "FROM interactions")
        conn.execute("CREATE VIEW slow_view AS SELECT id, now() AS created_at, "
                     "pg_sleep(0.05)::text AS nap FROM generate_series(1, 100000) AS id")
    manifests = []
    for name, table in (("first", "interactions"), ("broken", "broken_view"),
                        ("third", "interactions"), ("slow", "slow_view"),
                        ("paused", "interactions")):
        manifest = export_job(name, wiring, s3, timeframe=WINDOW, batching=ONE_BATCH)
        manifest["spec"]["source"]["table"] = table
        manifest["spec"]["suspend"] = name == "paused"
        manifests.append(manifest)
    kubectl("apply", "-n", wiring.namespace, "-f", "-", input=yaml.safe_dump_all(manifests))
    return ["first", "broken", "third"]


def apply_group(kubectl: Kubectl, namespace: str, name: str, members: list[str],
                **spec: Any) -> None:
    manifest = {"apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup",
                "metadata": {"name": name},
                "spec": {"title": f"e2e {name}", "members": members, **spec}}
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))


def group_request(kubectl: Kubectl, namespace: str, name: str, annotation: str) -> None:
    value = dt.datetime.now(dt.UTC).isoformat()
    kubectl("annotate", "-n", namespace, f"jobgroup/{name}", f"{annotation}={value}",
            "--overwrite")


def group_status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return get(kubectl, namespace, f"jobgroup/{name}").get("status") or {}


def finished_run(kubectl: Kubectl, namespace: str, name: str, run_id: str) -> dict[str, Any]:
    """The group's lastRun once it is ``run_id``."""
    return wait_until(  # type: ignore[no-any-return]
        lambda: (r := group_status(kubectl, namespace, name).get("lastRun")) and
        r["id"] == run_id and r, what=f"group run {run_id} to end", timeout=180)


def member_entry(kubectl: Kubectl, namespace: str, job: str, trigger: str) -> dict[str, Any]:
    """The member's own history entry for a group run."""
    history = (get(kubectl, namespace, f"exportjob/{job}").get("status") or {}).get(
        "history") or []
    entries = [h for h in history if h["trigger"] == trigger]
    assert len(entries) == 1, f"{job}: {history}"
    return entries[0]  # type: ignore[no-any-return]


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_one_after_another(entries: list[dict[str, Any]]) -> None:
    for before, after in itertools.pairwise(entries):
        assert parse(before["finishedAt"]) <= parse(after["startedAt"]), (before, after)


def test_stop_on_failure_skips_the_members_after_a_failure(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, members: list[str],
) -> None:
    ns = wiring.namespace
    apply_group(kubectl, ns, "strict", members)
    group_request(kubectl, ns, "strict", ANNOTATION_RUN_REQUESTED_AT)

    run = finished_run(kubectl, ns, "strict", "strict.1")

    assert (run["phase"], run["trigger"]) == ("Failed", "manual")
    assert [(m["name"], m["phase"]) for m in run["members"]] == [
        ("first", "Succeeded"), ("broken", "Failed"), ("third", "Skipped")]
    assert "division by zero" in run["members"][1]["message"]
    assert run["message"].startswith('stopped at member "broken"')
    entries = [member_entry(kubectl, ns, job, "group:strict.1") for job in ("first", "broken")]
    assert [(e["id"], e["phase"]) for e in entries] == [
        (run["members"][0]["runId"], "Succeeded"), (run["members"][1]["runId"], "Failed")]
    assert_one_after_another(entries)
    third = get(kubectl, ns, "exportjob/third").get("status") or {}
    assert all(h["trigger"] != "group:strict.1" for h in third.get("history") or [])
    status = group_status(kubectl, ns, "strict")
    assert (status["phase"], status.get("current")) == ("Failed", None)
    assert [h["id"] for h in status["history"]] == ["strict.1"]


def test_continue_runs_every_member_one_after_another(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, members: list[str],
) -> None:
    ns = wiring.namespace
    apply_group(kubectl, ns, "lenient", members, failurePolicy="Continue")
    group_request(kubectl, ns, "lenient", ANNOTATION_RUN_REQUESTED_AT)

    seen_positions = set()

    def ended() -> dict[str, Any] | None:
        status = group_status(kubectl, ns, "lenient")
        if status.get("current"):
            seen_positions.add(status["current"])
        last = status.get("lastRun")
        return last if last and last["id"] == "lenient.1" else None

    run = wait_until(ended, what="the group run to end", timeout=180, interval=0.2)

    assert run["phase"] == "PartiallySucceeded"
    assert [m["phase"] for m in run["members"]] == ["Succeeded", "Failed", "Succeeded"]
    entries = [member_entry(kubectl, ns, job, "group:lenient.1") for job in members]
    assert [e["phase"] for e in entries] == ["Succeeded", "Failed", "Succeeded"]
    assert_one_after_another(entries)
    assert seen_positions <= {"1/3", "2/3", "3/3"} and seen_positions


def test_a_suspended_member_is_skipped_and_the_group_goes_on(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, members: list[str],
) -> None:
    ns = wiring.namespace
    apply_group(kubectl, ns, "with-paused", ["paused", "first"])
    group_request(kubectl, ns, "with-paused", ANNOTATION_RUN_REQUESTED_AT)

    run = finished_run(kubectl, ns, "with-paused", "with-paused.1")

    assert run["phase"] == "PartiallySucceeded"
    skipped = run["members"][0]
    assert (skipped["phase"], skipped["message"]) == (
        "Skipped", 'member "paused" is suspended (spec.suspend: true): skipped')
    assert run["members"][1]["phase"] == "Succeeded"
    paused = get(kubectl, ns, "exportjob/paused").get("status") or {}
    assert not paused.get("history")


def test_the_group_waits_for_a_busy_member_and_stop_cancels_its_run(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, members: list[str],
) -> None:
    ns = wiring.namespace
    request(kubectl, ns, "slow", ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: ((get(kubectl, ns, "exportjob/slow").get("status") or {})
                        .get("currentRun") or {}).get("phase") == "InProgress",
               what="slow's own run to start")
    apply_group(kubectl, ns, "waiting", ["slow"])
    group_request(kubectl, ns, "waiting", ANNOTATION_RUN_REQUESTED_AT)

    queued = wait_until(lambda: (s := group_status(kubectl, ns, "waiting")).get(
        "phase") == "Queued" and s, what="the group to wait for slow")
    member = queued["currentRun"]["members"][0]
    assert (member["phase"], member["message"]) == (
        "Queued", "waiting for the member's run slow.1 (manual) to end")

    request(kubectl, ns, "slow", ANNOTATION_STOP_REQUESTED_AT)
    running = wait_until(
        lambda: ((group_status(kubectl, ns, "waiting").get("currentRun") or {})
                 .get("members") or [{}])[0].get("phase") == "InProgress",
        what="slow to start the group's run")
    assert running
    slow = get(kubectl, ns, "exportjob/slow")["status"]
    assert (slow["currentRun"]["id"], slow["currentRun"]["trigger"]) == (
        "slow.2", "group:waiting.1")
    assert (slow["lastRun"]["id"], slow["lastRun"]["phase"]) == ("slow.1", "Canceled")

    group_request(kubectl, ns, "waiting", ANNOTATION_STOP_REQUESTED_AT)

    run = finished_run(kubectl, ns, "waiting", "waiting.1")
    assert (run["phase"], run["members"][0]["phase"]) == ("Canceled", "Canceled")
    entry = wait_until(lambda: (r := (get(kubectl, ns, "exportjob/slow").get("status") or {})
                                .get("lastRun")) and r["id"] == "slow.2" and r,
                       what="slow's group run to be canceled")
    assert (entry["phase"], entry["message"]) == ("Canceled", "group run waiting.1 was stopped")


def test_a_later_member_shows_awaiting_dependency_while_an_earlier_one_runs(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, members: list[str],
) -> None:
    """The seeds' "Awaiting collection": `kubectl get ej` of a member whose turn in a
    group run has not come says so, and stops saying it once the group run is over."""
    ns = wiring.namespace
    apply_group(kubectl, ns, "ordered", ["slow", "third"])
    group_request(kubectl, ns, "ordered", ANNOTATION_RUN_REQUESTED_AT)

    wait_until(lambda: ((get(kubectl, ns, "exportjob/slow").get("status") or {})
                        .get("currentRun") or {}).get("trigger") == "group:ordered.1",
               what="slow to run for the group")
    third = wait_until(lambda: (s := get(kubectl, ns, "exportjob/third").get("status") or {})
                       .get("phase") == "AwaitingDependency" and s,
                       what="third to show AwaitingDependency")
    assert third["awaitingGroupRun"] == "ordered.1"
    phase_column = kubectl("get", "-n", ns, "exportjob/third", "-o",
                           "custom-columns=PHASE:.status.phase", "--no-headers").stdout.strip()
    assert phase_column == "AwaitingDependency"

    group_request(kubectl, ns, "ordered", ANNOTATION_STOP_REQUESTED_AT)
    finished_run(kubectl, ns, "ordered", "ordered.1")
    after = wait_until(lambda: (s := get(kubectl, ns, "exportjob/third").get("status") or {})
                       .get("phase") != "AwaitingDependency" and s,
                       what="third to stop awaiting the canceled group run")
    assert "awaitingGroupRun" not in after


def test_a_missing_member_makes_the_group_not_ready(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, members: list[str],
) -> None:
    ns = wiring.namespace
    apply_group(kubectl, ns, "dangling", ["first", "ghost"])

    def ready() -> dict[str, Any] | None:
        conditions = group_status(kubectl, ns, "dangling").get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), None)

    condition = wait_until(ready, what="the Ready condition")
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False", "MemberNotFound", 'member "ghost" not found')

    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob", "metadata": {"name": "ghost"},
         "spec": get(kubectl, ns, "exportjob/third")["spec"]}))
    healed = wait_until(lambda: (c := ready()) and c["status"] == "True" and c,
                        what="Ready=True once the member exists")
    assert healed["reason"] == "Valid"


def test_a_member_deleted_during_a_group_run_fails_it_cleanly(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, members: list[str],
) -> None:
    ns = wiring.namespace
    victim = get(kubectl, ns, "exportjob/third")["spec"]
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob", "metadata": {"name": "victim"},
         "spec": victim}))
    apply_group(kubectl, ns, "doomed", ["slow", "victim"], failurePolicy="Continue")
    group_request(kubectl, ns, "doomed", ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: ((get(kubectl, ns, "exportjob/slow").get("status") or {})
                        .get("currentRun") or {}).get("trigger") == "group:doomed.1",
               what="slow to run for the group")

    kubectl("delete", "-n", ns, "exportjob/victim")
    not_ready = wait_until(
        lambda: next((c for c in group_status(kubectl, ns, "doomed").get("conditions") or []
                      if c["type"] == "Ready" and c["status"] == "False"), None),
        what="Ready=False while the run is in flight")
    assert not_ready["message"] == 'member "victim" not found'
    request(kubectl, ns, "slow", ANNOTATION_STOP_REQUESTED_AT)

    run = finished_run(kubectl, ns, "doomed", "doomed.1")
    assert run["phase"] == "Failed"
    assert [(m["phase"], m.get("message")) for m in run["members"]] == [
        ("Canceled", "stopped by request (ferry.dev/stop-requested-at)"),
        ("Failed", 'member "victim" not found')]


def test_retry_reruns_from_the_first_member_that_did_not_succeed(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, members: list[str],
    pg_db: str,
) -> None:
    """Runs after the StopOnFailure test: ``strict.1`` failed at ``broken``."""
    ns = wiring.namespace
    failed = group_status(kubectl, ns, "strict")["lastRun"]
    assert failed["id"] == "strict.1"
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("INSERT INTO fixed VALUES (true)")
    group_request(kubectl, ns, "strict", ANNOTATION_RETRY_REQUESTED_AT)

    run = finished_run(kubectl, ns, "strict", "strict.2")

    assert (run["phase"], run["trigger"], run["retryOf"]) == ("Succeeded", "retry", "strict.1")
    assert [(m["name"], m["phase"]) for m in run["members"]] == [
        ("first", "Succeeded"), ("broken", "Succeeded"), ("third", "Succeeded")]
    assert run["members"][0]["runId"] == failed["members"][0]["runId"]
    assert run["members"][0]["message"] == "succeeded in group run strict.1"
    first = get(kubectl, ns, "exportjob/first")["status"]["history"]
    assert all(h["trigger"] != "group:strict.2" for h in first)
    assert_one_after_another([member_entry(kubectl, ns, job, "group:strict.2")
                              for job in ("broken", "third")])


def test_the_groups_own_schedule_starts_a_group_run(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, members: list[str],
) -> None:
    ns = wiring.namespace
    apply_group(kubectl, ns, "ticking", ["first", "third"],
                schedule={"cron": {"expression": "* * * * *"}})
    status = wait_until(lambda: (s := group_status(kubectl, ns, "ticking")).get(
        "scheduleSummary") and s, what="the first reconcile")
    assert status["scheduleSummary"] == "cron * * * * * UTC"
    assert status["phase"] in ("Scheduled", "Queued", "InProgress")
    assert status.get("nextRunAt") or status.get("currentRun")

    run = wait_until(lambda: (r := group_status(kubectl, ns, "ticking").get("lastRun")) and r,
                     what="the first scheduled group run to end", timeout=150)
    kubectl("delete", "-n", ns, "jobgroup/ticking")

    slot = parse(run["scheduledFor"])
    assert (run["id"], run["trigger"], run["phase"]) == ("ticking.1", "schedule", "Succeeded")
    assert (slot.second, slot.microsecond) == (0, 0)
    assert [(m["name"], m["phase"]) for m in run["members"]] == [
        ("first", "Succeeded"), ("third", "Succeeded")]
    entries = [member_entry(kubectl, ns, job, "group:ticking.1") for job in ("first", "third")]
    assert [e["id"] for e in entries] == [m["runId"] for m in run["members"]]
    assert parse(entries[0]["startedAt"]) >= slot
    assert_one_after_another(entries)


def test_a_member_whose_schedule_fires_during_its_group_run_waits_for_it(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server, pg_db: str,
    members: list[str],
) -> None:
    """``crawler`` (cron every minute, 20 rows at 1 s each) is started by its group 10-18 s
    before a minute boundary, so its own slot fires while it runs for the group."""
    ns = wiring.namespace
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION crawl(i bigint) RETURNS text STABLE LANGUAGE plpgsql "
                     "AS $$ BEGIN PERFORM pg_sleep(1); RETURN i::text; END $$")
        conn.execute("CREATE VIEW crawling AS SELECT id, created_at, crawl(id) AS payload "
                     "FROM interactions")
    twenty_rows = {"fixed": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T00:20:00Z"}}
    manifest = export_job("crawler", wiring, s3, timeframe=twenty_rows, batching=ONE_BATCH,
                          schedule={"cron": {"expression": "* * * * *"}})
    manifest["spec"]["source"]["table"] = "crawling"
    now = dt.datetime.now(dt.UTC)
    if not 42 <= now.second < 50:
        time.sleep((42 - now.second - now.microsecond / 1e6) % 60)
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    apply_group(kubectl, ns, "crawl", ["crawler"])
    group_request(kubectl, ns, "crawl", ANNOTATION_RUN_REQUESTED_AT)

    overlaps = []

    def scheduled_run_ended() -> dict[str, Any] | None:
        status = get(kubectl, ns, "exportjob/crawler").get("status") or {}
        current = status.get("currentRun")
        if current and current["phase"] == "InProgress":
            others = [h for h in status.get("history") or [] if h["id"] != current["id"]]
            overlaps.extend(h for h in others if parse(h["finishedAt"]) >
                            parse(current["startedAt"]))
        return next((h for h in status.get("history") or []
                     if h["trigger"] in ("schedule", "catchup")), None)

    scheduled = wait_until(scheduled_run_ended, what="crawler's own scheduled run to end",
                           timeout=180, interval=1)
    kubectl("patch", "-n", ns, "exportjob/crawler", "--type=merge",
            "-p", '{"spec": {"suspend": true}}')
    request(kubectl, ns, "crawler", ANNOTATION_STOP_REQUESTED_AT)

    group_run = finished_run(kubectl, ns, "crawl", "crawl.1")
    assert (group_run["phase"], group_run["members"][0]["phase"]) == ("Succeeded", "Succeeded")
    grouped = member_entry(kubectl, ns, "crawler", "group:crawl.1")
    assert (grouped["id"], grouped["phase"]) == ("crawler.1", "Succeeded")
    assert group_run["members"][0]["runId"] == "crawler.1"
    slot = parse(scheduled["scheduledFor"])
    assert parse(grouped["startedAt"]) < slot < parse(grouped["finishedAt"]), (grouped, slot)
    assert (scheduled["id"], scheduled["phase"]) == ("crawler.2", "Succeeded")
    assert_one_after_another([grouped, scheduled])
    history = get(kubectl, ns, "exportjob/crawler")["status"]["history"]
    assert_one_after_another(sorted(history, key=lambda h: h["number"]))
    assert not overlaps


def test_an_expired_group_without_a_run_deletes_itself(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, members: list[str],
) -> None:
    ns = wiring.namespace
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)).isoformat()
    apply_group(kubectl, ns, "ephemeral", ["first"], expiresAt=expires)

    wait_until(lambda: kubectl("get", "jobgroup/ephemeral", "-n", ns, check=False).returncode,
               what="the JobGroup to delete itself", timeout=60)
    events = [e["reason"] for e in get(kubectl, ns, "events")["items"]
              if e["involvedObject"]["name"] == "ephemeral"]
    assert "Expired" in events
    assert get(kubectl, ns, "exportjob/first")["metadata"]["name"] == "first"
