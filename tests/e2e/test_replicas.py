"""Two operator replicas on one Lease (issue 8, scenario 8): exactly one acts, and
SIGKILLing the active one mid-run hands over without a duplicate run.

Both replicas run as the chart's operator ServiceAccount (with the chart's Lease Role)
and with the chart's default election timing (15 s lease, 10 s renew deadline, 2 s
retry), against the real worker, PostgreSQL and S3 server. What is checked is what a
user sees: one Job per run, the run once in history, each source row once in the
files the run's manifests list.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT
from tests.fixtures.services import S3Server

from .operator_fixtures import (
    OPERATOR_NAMESPACE,
    OperatorProcess,
    Wiring,
    export_job,
    get,
    request,
    run_jobs,
    start_operator,
)
from .relay import Relay
from .support import Kubectl, wait_until
from .test_admission import pki, serving
from .test_faults import assert_exactly_once, recent_rows, slot_time
from .test_schedules import rfc3339
from .test_watch_health import free_port

__all__ = ["pki"]

pytestmark = pytest.mark.timeout(600)  # a slow worker pod start on a loaded machine

ROWS = 300
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
LEASE_DURATION = 15
"""The chart's default operator.leaderElection.leaseDurationSeconds."""
HANDOVER_LIMIT = LEASE_DURATION + 2 * 2 + 6
"""Documented bound (docs/operations.md): lease duration + the standby's next look (2 s
retry period, twice for the noisy shared machine) + a few seconds to start kopf."""
KILL_AHEAD = dt.timedelta(seconds=4)
"""How long before a due slot the leader is SIGKILLed: too late for it to act on the
slot, and the standby takes over (~15 s later) only after the slot has passed."""


def election_args(lease: str, identity: str) -> list[str]:
    return ["--leader-elect", f"--leader-elect-namespace={OPERATOR_NAMESPACE}",
            f"--leader-elect-lease-name={lease}", f"--leader-elect-identity={identity}"]


@pytest.fixture(scope="module")
def lease_name(namespace: str) -> str:
    return f"ferry-{namespace}"


@pytest.fixture(scope="module")
def relay(operator_kubeconfig: str) -> Iterator[Relay]:
    running = Relay.to_server_of(operator_kubeconfig)
    yield running
    running.close()


Launch = Callable[[str, str], OperatorProcess]


@pytest.fixture(scope="module")
def launch(operator_kubeconfig: str, relay: Relay, namespace: str, lease_name: str,
           tmp_path_factory: pytest.TempPathFactory) -> Launch:
    """Start a replica (a log per start); replica-a talks to the API server through the
    relay, so that a test can cut it off, replica-b directly."""
    logs = tmp_path_factory.mktemp("replicas")
    relayed = str(relay.kubeconfig(operator_kubeconfig, logs / "relayed.kubeconfig"))

    def start(identity: str, log: str) -> OperatorProcess:
        kubeconfig = relayed if identity == "replica-a" else operator_kubeconfig
        return start_operator(kubeconfig, logs / f"{log}.log", namespace,
                              election_args(lease_name, identity))

    return start


@pytest.fixture(scope="module")
def replicas(launch: Launch, lease_name: str, relay: Relay,
             kubectl: Kubectl) -> Iterator[dict[str, OperatorProcess]]:
    """replica-a, then replica-b a moment later, so that a is (almost surely) first."""
    running: dict[str, OperatorProcess] = {}
    for identity in ("replica-a", "replica-b"):
        running[identity] = launch(identity, identity)
        time.sleep(1)
    yield running
    relay.thaw()
    for process in running.values():
        if process.process.poll() is None:
            process.process.terminate()
            try:
                process.process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
    kubectl("delete", "lease", lease_name, "-n", OPERATOR_NAMESPACE, "--ignore-not-found")


@pytest.fixture(scope="module")
def operator(replicas: dict[str, OperatorProcess]) -> OperatorProcess:
    """Replaces the suite's single operator, so that `wiring` comes up with the replicas
    (and its teardown deletes the ExportJobs while a leader still runs)."""
    return replicas["replica-a"]


@pytest.fixture(scope="module")
def source_table(pg_db: str) -> list[int]:
    """`interactions` and `throttled`, a view of it at ~50 ms a row (~15 s a batch of
    all rows), so that a run is still going when its operator is killed."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions (id bigint PRIMARY KEY, "
                     "created_at timestamptz NOT NULL, note text)")
        with conn.cursor().copy("COPY interactions FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row((i, START + dt.timedelta(minutes=i), f'row "{i}",\nnote'))
        conn.execute("CREATE FUNCTION nap(i bigint) RETURNS text STABLE LANGUAGE plpgsql "
                     "AS $$ BEGIN PERFORM pg_sleep(0.05); RETURN 'payload-' || i; END $$")
        conn.execute("CREATE VIEW throttled AS SELECT id, created_at, note, nap(id) AS payload "
                     "FROM interactions")
        return [r[0] for r in conn.execute("SELECT id FROM interactions ORDER BY id")]


def holder(kubectl: Kubectl, lease: str) -> str | None:
    found = kubectl("get", "lease", lease, "-n", OPERATOR_NAMESPACE, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    return json.loads(found.stdout)["spec"].get("holderIdentity")  # type: ignore[no-any-return]


def acted(log: Path) -> list[str]:
    """Lines an operator logs only when it acts: the controller's, kopf's per-object
    handler lines (not its webhook lines), and the watches of ExportJobs, JobGroups and
    Jobs. (A standby runs kopf too, for the admission webhook and liveness, but watches
    nothing of those.)"""
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        fields = line.split(maxsplit=4)
        logger = fields[3] if len(fields) > 3 else ""
        if (logger.startswith("ferry.controller")
                or (logger == "kopf.objects" and "Webhook '" not in line)
                or ("watch-stream for" in line and any(
                    kind in line for kind in ("exportjobs", "jobgroups", "jobs.v1.batch")))):
            lines.append(line)
    return lines


def status_of(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    return get(kubectl, ns, f"exportjob/{name}").get("status") or {}  # type: ignore[no-any-return]


def test_one_replica_acts_and_a_killed_leader_hands_over_without_a_second_run(
    kubectl: Kubectl, replicas: dict[str, OperatorProcess], wiring: Wiring, s3: S3Server,
    source_table: list[int], lease_name: str, launch: Launch,
) -> None:
    ns, name = wiring.namespace, "handover"
    leader = wait_until(lambda: holder(kubectl, lease_name), what="a replica to take the Lease")
    standby = next(identity for identity in replicas if identity != leader)
    manifest = export_job(name, wiring, s3, batching={"batches": 2, "parallelism": 1})
    manifest["spec"]["source"].update({"table": "throttled", "keyColumn": "id"})
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, name, ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: (status_of(kubectl, ns, name).get("currentRun") or {})
               .get("recordsProcessed"), timeout=90, what="the run to make progress")

    # Only the leader has run anything so far; the standby has only looked at the Lease.
    assert acted(replicas[leader].log), "the leader never ran"
    assert acted(replicas[standby].log) == []
    assert "standing by: waiting for Lease" in replicas[standby].logs()

    replicas[leader].kill()
    killed_at = time.monotonic()
    wait_until(lambda: holder(kubectl, lease_name) == standby, timeout=HANDOVER_LIMIT + 10,
               what="the standby to take the Lease", interval=0.2)
    handover = time.monotonic() - killed_at
    assert handover <= HANDOVER_LIMIT, f"handover took {handover:.1f}s"
    print(f"handover: {handover:.1f}s after SIGKILL")

    # The killed replica comes back (as its pod would) and only stands by.
    replicas[leader] = launch(leader, f"{leader}-restarted")

    entry = wait_until(lambda: status_of(kubectl, ns, name).get("lastRun"), timeout=180,
                       what="the run to end")
    assert (entry["id"], entry["phase"], entry["records"]) == (f"{name}.1", "Succeeded", ROWS)
    status = status_of(kubectl, ns, name)
    assert [h["id"] for h in status["history"]] == [f"{name}.1"]
    jobs = [j["metadata"]["name"] for j in run_jobs(kubectl, ns, name)]
    assert jobs == [f"{name}-1"]
    assert_exactly_once(s3, wiring.bucket, name, f"{name}.1", source_table)
    wait_until(lambda: "standing by: waiting for Lease" in replicas[leader].logs(),
               timeout=60, what="the restarted replica to stand by")
    time.sleep(3)  # a look or two at the Lease, which the new leader keeps renewing
    assert holder(kubectl, lease_name) == standby
    assert acted(replicas[leader].log) == []


def test_a_stopped_leader_hands_over_at_once_and_a_cut_off_one_exits_before_takeover(
    kubectl: Kubectl, replicas: dict[str, OperatorProcess], wiring: Wiring, s3: S3Server,
    source_table: list[int], lease_name: str, launch: Launch, relay: Relay,
) -> None:
    ns, name = wiring.namespace, "partition"
    # A clean stop (SIGTERM, as in a rollout) releases the Lease: the standby takes it
    # at its next look, not a lease duration later. Stop whoever is not replica-a, the
    # relayed one, so that replica-a leads.
    if holder(kubectl, lease_name) != "replica-a":
        other = replicas["replica-b"]
        other.process.terminate()
        stopped_at = time.monotonic()
        assert other.process.wait(30) == 0
        wait_until(lambda: holder(kubectl, lease_name) == "replica-a", timeout=15,
                   what="replica-a to take the released Lease", interval=0.2)
        released = time.monotonic() - stopped_at
        assert released <= 2 * 2 + 3, f"a released Lease was taken after {released:.1f}s"
        print(f"released Lease taken {released:.1f}s after SIGTERM")
        replicas["replica-b"] = launch("replica-b", "replica-b-again")
    wait_until(lambda: "standing by: waiting for Lease" in replicas["replica-b"].logs(),
               timeout=60, what="replica-b to stand by")

    # replica-a loses the API server (its connections black-holed). It must stop acting
    # (exit) when it could not renew for the renew deadline (10 s), before replica-b
    # may take the Lease (15 s after it last saw it renewed).
    relay.freeze()
    frozen_at = time.monotonic()
    assert replicas["replica-a"].process.wait(30) == 1
    exited = time.monotonic() - frozen_at
    assert holder(kubectl, lease_name) == "replica-a", "taken before the old leader exited"
    wait_until(lambda: holder(kubectl, lease_name) == "replica-b", timeout=HANDOVER_LIMIT,
               what="replica-b to take the Lease", interval=0.2)
    taken = time.monotonic() - frozen_at
    print(f"cut-off leader exited {exited:.1f}s after the freeze; Lease taken after "
          f"{taken:.1f}s")
    assert exited < taken
    assert "exiting: the Lease was not renewed in time" in replicas["replica-a"].logs()

    manifest = export_job(name, wiring, s3)
    manifest["spec"]["source"]["table"] = "interactions"
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, name, ANNOTATION_RUN_REQUESTED_AT)
    entry = wait_until(lambda: status_of(kubectl, ns, name).get("lastRun"), timeout=120,
                       what="the run to end")
    assert (entry["id"], entry["phase"], entry["records"]) == (f"{name}.1", "Succeeded", ROWS)
    assert_exactly_once(s3, wiring.bucket, name, f"{name}.1", source_table)


def admission_review(port: int, ca: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """POST a CREATE AdmissionReview to /validate-exportjob, as the API server would."""
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "standby-check", "operation": "CREATE", "userInfo": {"username": "alice"},
        "kind": {"group": "ferry.dev", "version": "v1alpha1", "kind": "ExportJob"},
        "resource": {"group": "ferry.dev", "version": "v1alpha1", "resource": "exportjobs"},
        "namespace": manifest["metadata"].get("namespace", "default"),
        "name": manifest["metadata"]["name"], "object": manifest}}
    call = urllib.request.Request(f"https://127.0.0.1:{port}/validate-exportjob",
                                  data=json.dumps(review).encode(), method="POST",
                                  headers={"Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(call, timeout=10, context=context) as answer:
        return json.loads(answer.read())["response"]  # type: ignore[no-any-return]


def test_a_standby_serves_the_admission_webhook_and_liveness_but_acts_on_nothing(
    kubectl: Kubectl, replicas: dict[str, OperatorProcess], wiring: Wiring, s3: S3Server,
    lease_name: str, pki: Path, tmp_path: Path, namespace: str, operator_kubeconfig: str,
) -> None:
    leader = holder(kubectl, lease_name)
    webhook, liveness, metrics = free_port(), free_port(), free_port()
    standby = start_operator(operator_kubeconfig, tmp_path / "replica-c.log", namespace, [
        *election_args(lease_name, "replica-c"), f"--liveness=http://127.0.0.1:{liveness}/healthz",
        f"--metrics-port={metrics}",
        f"--webhook-port={webhook}", "--webhook-host=127.0.0.1",
        f"--webhook-cert={pki / 'tls.crt'}", f"--webhook-key={pki / 'tls.key'}"])
    try:
        wait_until(lambda: serving(webhook, pki / "ca.crt"), timeout=60,
                   what="the standby's webhook server")
        bad = export_job("bad-cron", wiring, s3, schedule={"cron": {"expression": "61 * * * *"}})
        answer = admission_review(webhook, pki / "ca.crt", bad)
        assert answer["allowed"] is False
        assert "'61 * * * *' is not a valid five-field cron expression" in (
            answer["status"]["message"])
        assert admission_review(webhook, pki / "ca.crt", export_job("fine", wiring, s3))[
            "allowed"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=5) as live:
            assert live.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as page:
            lines = page.read().decode().splitlines()
        assert "ferry_leader 0.0" in lines  # an up target that says it stands by
        assert not [line for line in lines if line.startswith("ferry_data_lag_seconds{")]
        assert holder(kubectl, lease_name) == leader
        assert "standing by: waiting for Lease" in standby.logs()
        assert acted(standby.log) == []
    finally:
        standby.process.terminate()
        assert standby.process.wait(30) == 0


def test_a_leader_killed_just_before_a_due_slot_hands_over_and_the_slot_runs_once(
    kubectl: Kubectl, replicas: dict[str, OperatorProcess], wiring: Wiring, s3: S3Server,
    pg_db: str, lease_name: str, launch: Launch, relay: Relay,
) -> None:
    """The leader dies 4 s before an hourly slot; the standby, taking over ~15 s later,
    finds the slot due but not yet decided and runs it once, as the slot's run: same
    scheduledFor, same window (the hour before the slot, not before the takeover) as if
    nothing had happened (up to a minute to the slot, then the handover and the run)."""
    ns, name = wiring.namespace, "due-slot"
    # The tests before this one leave a cut-off replica exited and the relay frozen:
    # bring both replicas back, as their pods would be.
    relay.thaw()
    for identity, process in replicas.items():
        if process.process.poll() is not None:
            replicas[identity] = launch(identity, f"{identity}-due-slot")
    leader = wait_until(lambda: holder(kubectl, lease_name), what="a replica to take the Lease")
    standby = next(identity for identity in replicas if identity != leader)
    wait_until(lambda: "standing by: waiting for Lease" in replicas[standby].logs(),
               timeout=60, what="the standby to stand by")

    slot = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=80)).replace(second=0,
                                                                         microsecond=0)
    rows = recent_rows(pg_db, slot - dt.timedelta(hours=1, minutes=1),
                       slot + dt.timedelta(minutes=2))
    expected = sorted(i for i, at in rows.items() if slot - dt.timedelta(hours=1) <= at < slot)
    manifest = export_job(name, wiring, s3, schedule={"hourly": {"every": 1,
                                                                 "minute": slot.minute}},
                          timeframe={"relative": {"last": "1h"}})
    manifest["spec"]["source"]["table"] = "recent"
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    assert wait_until(lambda: status_of(kubectl, ns, name).get("nextRunAt"),
                      what="the leader to schedule the slot") == rfc3339(slot)

    time.sleep(max(0.0, (slot - KILL_AHEAD - dt.datetime.now(dt.UTC)).total_seconds()))
    replicas[leader].kill()
    killed_at = dt.datetime.now(dt.UTC)
    assert killed_at < slot, "the leader was killed after the slot"
    assert "lastScheduledSlot" not in status_of(kubectl, ns, name), "decided before the kill"
    wait_until(lambda: holder(kubectl, lease_name) == standby, timeout=HANDOVER_LIMIT + 10,
               what="the standby to take the Lease", interval=0.2)
    taken_at = dt.datetime.now(dt.UTC)

    def jobs() -> list[dict[str, Any]]:
        return run_jobs(kubectl, ns, name)

    job = wait_until(jobs, timeout=120, what="the slot's Job", interval=0.2)[0]
    seen_at = dt.datetime.now(dt.UTC)
    created_at = slot_time(job["metadata"]["creationTimestamp"])
    print(f"slot {rfc3339(slot)}: leader SIGKILLed {(slot - killed_at).total_seconds():.1f}s "
          f"before it; Lease taken {(taken_at - killed_at).total_seconds():.1f}s after the "
          f"kill; Job created {(created_at - slot).total_seconds():.0f}s after the slot "
          f"(creationTimestamp, 1 s resolution; first seen "
          f"{(seen_at - slot).total_seconds():.1f}s after it)")
    assert created_at >= slot, "a Job for the slot before the slot"

    entry = wait_until(lambda: status_of(kubectl, ns, name).get("lastRun"), timeout=180,
                       what="the run to end")
    assert (entry["id"], entry["trigger"], entry["phase"], entry["records"]) == (
        f"{name}.1", "schedule", "Succeeded", len(expected))
    assert entry["scheduledFor"] == rfc3339(slot)
    assert entry["window"] == {"from": rfc3339(slot - dt.timedelta(hours=1)),
                               "to": rfc3339(slot)}
    status = status_of(kubectl, ns, name)
    assert slot_time(status["lastScheduledSlot"]) == slot
    assert status["nextRunAt"] == rfc3339(slot + dt.timedelta(hours=1))
    assert (status["runCounter"], [h["id"] for h in status["history"]]) == (1, [f"{name}.1"])
    assert "missedRuns" not in status, "the slot that ran is recorded as missed"
    assert [j["metadata"]["name"] for j in jobs()] == [f"{name}-1"]
    assert_exactly_once(s3, wiring.bucket, name, f"{name}.1", expected)
