"""The ExportJob controller on the real cluster, with the real worker, PostgreSQL and S3.

Each test reads back what a user would look at: the status fields, the child Jobs,
and the exported rows compared with the source table.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import (
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
    LABEL_JOB,
    LABEL_RUN,
)
from tests.fixtures.services import S3Server

from .operator_fixtures import (
    OperatorProcess,
    Wiring,
    export_job,
    get,
    request,
    run_jobs,
    start_operator,
)
from .support import Kubectl, wait_until

ROWS = 500
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def source_table(pg_db: str) -> list[tuple[Any, ...]]:
    """`interactions`: one row a minute from START, some NULLs and awkward text."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions (id bigint PRIMARY KEY, "
                     "created_at timestamptz NOT NULL, media_type text, note text)")
        with conn.cursor().copy("COPY interactions FROM STDIN") as copy:
            for i in range(ROWS):
                note = None if i % 7 == 0 else f'line "{i}"\nwith, comma'
                copy.write_row((i, START + dt.timedelta(minutes=i),
                                ("chat", "email", "voice")[i % 3], note))
        conn.execute("CREATE TABLE slow (id bigint)")
        conn.execute("CREATE VIEW slow_view AS SELECT id, now() AS created_at, "
                     "pg_sleep(0.05)::text AS nap FROM generate_series(1, 100000) AS id")
        return conn.execute("SELECT id, created_at, media_type, note FROM interactions "
                            "ORDER BY id").fetchall()


def run_files(s3: S3Server, bucket: str, job: str, run_id: str) -> list[str]:
    """Keys of a run's committed files: those its batch manifests list."""
    client = s3.client()
    prefix = f"e2e/{job}/{run_id}/_manifests/"
    keys = []
    for obj in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        manifest = json.loads(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        keys += [f["key"] for f in manifest["files"]]
    return sorted(keys)


def exported_ids(s3: S3Server, bucket: str, keys: list[str]) -> list[int]:
    client = s3.client()
    ids = []
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        ids += [int(row["id"]) for row in csv.DictReader(io.StringIO(body))]
    return ids


def last_run(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    status = get(kubectl, namespace, f"exportjob/{name}").get("status") or {}
    return status.get("lastRun")  # type: ignore[no-any-return]


def test_run_now_exports_the_window_in_batches_exactly_once(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source_table: list[tuple[Any, ...]],
) -> None:
    ns = wiring.namespace
    window = {"fixed": {"start": "2026-11-01T01:00:00Z", "end": "2026-11-01T05:00:00Z"}}
    manifest = export_job("fixed-window", wiring, s3, timeframe=window,
                          batching={"batches": 3, "parallelism": 3})
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "fixed-window", ANNOTATION_RUN_REQUESTED_AT)

    entry = wait_until(lambda: last_run(kubectl, ns, "fixed-window"), what="the run to end")

    assert (entry["id"], entry["phase"], entry["trigger"]) == (
        "fixed-window.1", "Succeeded", "manual")
    assert entry["records"] == 240
    assert entry["window"] == {"from": "2026-11-01T01:00:00Z", "to": "2026-11-01T05:00:00Z"}
    keys = run_files(s3, wiring.bucket, "fixed-window", "fixed-window.1")
    expected = [r[0] for r in source_table if START + dt.timedelta(hours=1) <= r[1]
                < START + dt.timedelta(hours=5)]
    assert sorted(exported_ids(s3, wiring.bucket, keys)) == expected
    jobs = run_jobs(kubectl, ns)
    assert [(j["metadata"]["name"], j["spec"]["completions"]) for j in jobs] == [
        ("fixed-window-1", 3)]
    status = get(kubectl, ns, "exportjob/fixed-window")["status"]
    assert status["phase"] == "Succeeded"
    assert status["history"] == [entry]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"


def test_the_same_request_twice_runs_once(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source_table: list[tuple[Any, ...]],
) -> None:
    ns = wiring.namespace
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(export_job("twice", wiring, s3)))
    value = request(kubectl, ns, "twice", ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: last_run(kubectl, ns, "twice"), what="the first run")
    kubectl("annotate", "-n", ns, "exportjob/twice", f"{ANNOTATION_RUN_REQUESTED_AT}={value}",
            "--overwrite")
    kubectl("label", "-n", ns, "exportjob/twice", "touched=yes")
    wait_until(lambda: get(kubectl, ns, "exportjob/twice")["status"]["observedGeneration"],
               what="a reconcile")
    status = get(kubectl, ns, "exportjob/twice")["status"]
    assert [h["id"] for h in status["history"]] == ["twice.1"]
    assert status["lastHandled"]["runRequestedAt"] == value
    assert sorted(exported_ids(s3, wiring.bucket, run_files(
        s3, wiring.bucket, "twice", "twice.1"))) == [r[0] for r in source_table]


def test_stop_cancels_a_running_export_and_its_pods(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source_table: list[tuple[Any, ...]],
) -> None:
    ns = wiring.namespace
    manifest = export_job("slow", wiring, s3)
    manifest["spec"]["source"]["table"] = "slow_view"
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "slow", ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: any(p["status"].get("phase") == "Running" for p in get(
        kubectl, ns, "pods")["items"] if p["metadata"]["labels"].get(LABEL_JOB) == "slow"),
        what="the worker pod to run")

    request(kubectl, ns, "slow", ANNOTATION_STOP_REQUESTED_AT)

    entry = wait_until(lambda: last_run(kubectl, ns, "slow"), what="the run to be canceled")
    assert entry["phase"] == "Canceled"
    wait_until(lambda: not [p for p in get(kubectl, ns, "pods")["items"]
                            if p["metadata"]["labels"].get(LABEL_JOB) == "slow"],
               what="the worker pods to go", timeout=60)
    assert run_files(s3, wiring.bucket, "slow", "slow.1") == []


def test_retry_reexports_only_the_failed_batch(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source_table: list[tuple[Any, ...]], pg_db: str,
) -> None:
    """Batch 1's slice hits a row the worker cannot read until it is fixed."""
    ns = wiring.namespace
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE fragile AS SELECT id, created_at, "
                     "(id::text)::text AS payload FROM interactions")
        conn.execute("CREATE TABLE fixed (ok boolean)")
        conn.execute("CREATE VIEW fragile_view AS SELECT id, created_at, "
                     "CASE WHEN id = 150 AND NOT EXISTS (SELECT 1 FROM fixed) "
                     "THEN (1 / (id - 150))::text ELSE payload END AS payload FROM fragile")
    window = {"fixed": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T06:00:00Z"}}
    manifest = export_job("fragile", wiring, s3, timeframe=window,
                          batching={"batches": 3, "parallelism": 3, "retriesPerBatch": 0})
    manifest["spec"]["source"]["table"] = "fragile_view"
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "fragile", ANNOTATION_RUN_REQUESTED_AT)
    first = wait_until(lambda: last_run(kubectl, ns, "fragile"), what="the first run")
    assert (first["phase"], first["failedBatches"]) == ("PartiallySucceeded", [1])
    assert "division by zero" in first["message"]

    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("INSERT INTO fixed VALUES (true)")
    request(kubectl, ns, "fragile", ANNOTATION_RETRY_REQUESTED_AT)
    retry = wait_until(lambda: (r := last_run(kubectl, ns, "fragile")) and
                       r["id"] == "fragile.2" and r, what="the retry")

    assert (retry["phase"], retry["trigger"], retry["retryOf"]) == (
        "Succeeded", "retry", "fragile.1")
    ids = exported_ids(s3, wiring.bucket, run_files(s3, wiring.bucket, "fragile", "fragile.1"))
    assert sorted(ids) == [r[0] for r in source_table if r[1] < START + dt.timedelta(hours=6)]


def test_operator_killed_mid_run_converges_without_a_second_job(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source_table: list[tuple[Any, ...]], operator_kubeconfig: str,
) -> None:
    ns = wiring.namespace
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(export_job("restart", wiring,
                                                                          s3)))
    request(kubectl, ns, "restart", ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: (get(kubectl, ns, "exportjob/restart").get("status") or {})
               .get("currentRun"), what="the run to start")
    operator.kill()
    replacement = start_operator(operator_kubeconfig, operator.log, ns)
    try:
        entry = wait_until(lambda: last_run(kubectl, ns, "restart"), what="the run to end")
        assert entry["phase"] == "Succeeded"
        status = get(kubectl, ns, "exportjob/restart")["status"]
        assert [h["id"] for h in status["history"]] == ["restart.1"]
        jobs = [j["metadata"]["name"] for j in run_jobs(kubectl, ns, "restart")]
        assert jobs == ["restart-1"]
    finally:
        operator.process = replacement.process


@pytest.fixture(scope="module")
def throttled_view(pg_db: str, source_table: list[tuple[Any, ...]]) -> str:
    """`throttled`: the interactions at ~30 ms a row when exported, while COUNT(*) stays
    instant (a STABLE function the planner drops when the column is not read)."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION slow_text(i bigint) RETURNS text STABLE LANGUAGE plpgsql "
                     "AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN repeat(i::text, 2000); END $$")
        conn.execute("CREATE VIEW throttled AS SELECT id, created_at, slow_text(id) AS payload "
                     "FROM interactions")
    return "throttled"


def printer_columns(kubectl: Kubectl, namespace: str, name: str) -> dict[str, str]:
    lines = kubectl("get", "exportjob", name, "-n", namespace).stdout.splitlines()
    header = lines[0]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    bounds = [*starts[1:], None]
    return {header[s:e].strip(): lines[1][s:e].strip() for s, e in zip(starts, bounds,
                                                                        strict=True)}


def test_progress_and_eta_show_in_kubectl_get_while_running(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    throttled_view: str,
) -> None:
    ns = wiring.namespace
    manifest = export_job("progress", wiring, s3)
    manifest["spec"]["source"]["table"] = throttled_view
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "progress", ANNOTATION_RUN_REQUESTED_AT)

    columns = wait_until(
        lambda: (c := printer_columns(kubectl, ns, "progress"))["PHASE"] == "InProgress"
        and "%" in c["PROGRESS"] and c["ETA"] and c, what="progress with a percent and ETA")

    percent = int(columns["PROGRESS"].split("%")[0])
    assert 0 <= percent < 100
    assert columns["PROGRESS"].endswith("/500")
    entry = wait_until(lambda: last_run(kubectl, ns, "progress"), what="the run to end")
    assert (entry["phase"], entry["records"]) == ("Succeeded", ROWS)


def test_runs_on_one_source_queue_one_after_the_other(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    throttled_view: str,
) -> None:
    ns = wiring.namespace
    for name in ("first", "second"):
        manifest = export_job(name, wiring, s3)
        manifest["spec"]["source"]["table"] = throttled_view
        kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "first", ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: ((get(kubectl, ns, "exportjob/first").get("status") or {})
                        .get("currentRun") or {}).get("phase") == "InProgress",
               what="the first run to start")
    request(kubectl, ns, "second", ANNOTATION_RUN_REQUESTED_AT)

    queued = wait_until(lambda: (get(kubectl, ns, "exportjob/second").get("status") or {})
                        .get("currentRun"), what="the second run to be recorded")
    assert (queued["phase"], queued["blockedBy"], queued["queuePosition"]) == (
        "Queued", "first.1", 1)
    assert queued["message"] == "waiting for run first.1 on the same data source"
    assert get(kubectl, ns, "exportjob/second")["status"]["phase"] == "Queued"

    second = wait_until(lambda: last_run(kubectl, ns, "second"), what="the second run",
                        timeout=180)
    first = last_run(kubectl, ns, "first")
    assert first is not None
    assert (first["phase"], second["phase"]) == ("Succeeded", "Succeeded")
    assert second["startedAt"] >= first["finishedAt"]


def test_deleting_waits_for_the_run_in_progress(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    throttled_view: str,
) -> None:
    ns = wiring.namespace
    manifest = export_job("doomed", wiring, s3)
    manifest["spec"]["source"]["table"] = throttled_view
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "doomed", ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: ((get(kubectl, ns, "exportjob/doomed").get("status") or {})
                        .get("currentRun") or {}).get("phase") == "InProgress",
               what="the run to start")

    kubectl("delete", "exportjob/doomed", "-n", ns, "--wait=false")

    blocked = wait_until(lambda: [e for e in get(kubectl, ns, "events")["items"]
                                  if e["reason"] == "DeletionBlocked"], what="the event")
    assert blocked[0]["message"] == (
        "deletion waits for run doomed.1 to end; to delete now, stop it: "
        "kubectl ferry stop doomed")
    still = get(kubectl, ns, "exportjob/doomed")
    assert still["metadata"]["deletionTimestamp"]
    wait_until(lambda: kubectl("get", "exportjob/doomed", "-n", ns, check=False).returncode,
               what="the ExportJob to go once its run ended", timeout=180)
    wait_until(lambda: not [j for j in get(kubectl, ns, "jobs")["items"]
                            if j["metadata"]["labels"][LABEL_JOB] == "doomed"],
               what="its Job to be garbage-collected", timeout=60)


def test_an_expired_job_deletes_itself(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
) -> None:
    ns = wiring.namespace
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)).isoformat()
    manifest = export_job("ephemeral", wiring, s3, expiresAt=expires)
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    wait_until(lambda: kubectl("get", "exportjob/ephemeral", "-n", ns, check=False).returncode,
               what="the ExportJob to delete itself", timeout=60)
    events = [e["reason"] for e in get(kubectl, ns, "events")["items"]
              if e["involvedObject"]["name"] == "ephemeral"]
    assert "Expired" in events


def test_a_cron_schedule_runs_on_its_slot_with_its_window(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source_table: list[tuple[Any, ...]],
) -> None:
    ns = wiring.namespace
    manifest = export_job("every-minute", wiring, s3,
                          schedule={"cron": {"expression": "* * * * *"}},
                          timeframe={"relative": {"last": "1h"}})
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    status = wait_until(lambda: get(kubectl, ns, "exportjob/every-minute").get("status"),
                        what="the first reconcile")
    assert status["scheduleSummary"] == "cron * * * * * UTC"
    assert len(status["upcomingRuns"]) == 3

    entry = wait_until(lambda: last_run(kubectl, ns, "every-minute"), timeout=150,
                       what="the scheduled run")

    slot = dt.datetime.fromisoformat(entry["scheduledFor"].replace("Z", "+00:00"))
    assert (slot.second, slot.microsecond) == (0, 0)
    assert entry["trigger"] == "schedule"
    assert entry["window"] == {
        "from": (slot - dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "to": entry["scheduledFor"]}
    assert entry["phase"] == "Succeeded"


def condition(kubectl: Kubectl, namespace: str, name: str, type_: str) -> dict[str, Any]:
    status = get(kubectl, namespace, f"exportjob/{name}").get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def test_a_missing_secret_is_reported_and_recovers_once_created(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source_table: list[tuple[Any, ...]], pg_db: str,
) -> None:
    ns = wiring.namespace
    manifest = export_job("no-secret", wiring, s3)
    manifest["spec"]["source"]["connectionSecretRef"] = {"name": "not-yet", "key": "dsn"}
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "no-secret", ANNOTATION_RUN_REQUESTED_AT)

    ready = wait_until(lambda: (c := condition(kubectl, ns, "no-secret", "Ready"))
                       .get("status") == "False" and c, what="Ready=False")
    assert ready["reason"] == "SecretNotFound"
    assert ready["message"] == (
        'batch 0 cannot start: CreateContainerConfigError: secret "not-yet" not found; '
        f"create it in namespace {ns} (or fix the reference in the spec): the pods start "
        "once it exists")
    stalled = condition(kubectl, ns, "no-secret", "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "SecretNotFound")
    pods = [p for p in get(kubectl, ns, "pods")["items"]
            if p["metadata"]["labels"].get(LABEL_JOB) == "no-secret"]
    assert len(pods) == 1, "a pod that cannot start is not retried in a storm"

    kubectl("create", "secret", "generic", "not-yet", "-n", ns, f"--from-literal=dsn={pg_db}")

    entry = wait_until(lambda: last_run(kubectl, ns, "no-secret"), what="the run to end")
    assert (entry["phase"], entry["records"]) == ("Succeeded", ROWS)
    assert condition(kubectl, ns, "no-secret", "Ready")["status"] == "True"
    assert condition(kubectl, ns, "no-secret", "Stalled")["status"] == "False"


def test_a_wrong_password_fails_the_run_once_and_says_so(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source_table: list[tuple[Any, ...]], pg_db: str,
) -> None:
    ns = wiring.namespace
    wrong = psycopg.conninfo.make_conninfo(pg_db, password="not-the-password")
    kubectl("create", "secret", "generic", "wrong-db", "-n", ns, f"--from-literal=dsn={wrong}")
    manifest = export_job("wrong-password", wiring, s3)
    manifest["spec"]["source"]["connectionSecretRef"] = {"name": "wrong-db", "key": "dsn"}
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "wrong-password", ANNOTATION_RUN_REQUESTED_AT)

    entry = wait_until(lambda: last_run(kubectl, ns, "wrong-password"), what="the run to end")

    assert entry["phase"] == "Failed"
    ready = condition(kubectl, ns, "wrong-password", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ConfigurationError")
    assert "password authentication failed" in ready["message"]
    assert "not-the-password" not in json.dumps(get(kubectl, ns, "exportjob/wrong-password"))
    pods = [p for p in get(kubectl, ns, "pods")["items"]
            if p["metadata"]["labels"].get(LABEL_JOB) == "wrong-password" and
            LABEL_RUN in p["metadata"]["labels"]]
    assert len(pods) == 1, "a configuration error is not retried (podFailurePolicy FailIndex)"
