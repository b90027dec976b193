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
)
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, request, start_operator
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
    jobs = get(kubectl, ns, "jobs")["items"]
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
        jobs = [j["metadata"]["name"] for j in get(kubectl, ns, "jobs")["items"]
                if j["metadata"]["labels"][LABEL_JOB] == "restart"]
        assert jobs == ["restart-1"]
    finally:
        operator.process = replacement.process
