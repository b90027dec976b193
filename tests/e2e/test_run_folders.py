"""An ExportJob deleted and created again under the same name, on the real cluster:
its run 1 writes into the old job's run-1 folder, and afterwards that folder holds
exactly the new run's batches (docs/worker.md, "One run per folder").

Two runs, a delete and an operator of its own (under a minute); the integration test
tests/integration/test_worker_run_folders.py covers the same rule at the worker level.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT
from ferry.contract.layout import KEY_PLAN, RUN_MARKER
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, request
from .support import Kubectl, wait_until

NAME = "reborn"
FOLDER = f"e2e/{NAME}/{NAME}.1/"


@pytest.fixture(scope="module")
def table(pg_db: str) -> list[int]:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items SELECT g, 'old ' || g FROM generate_series(1, 300) g")
    return list(range(1, 301))


def run_once(kubectl: Kubectl, wiring: Wiring, s3: S3Server, batches: int) -> dict[str, Any]:
    """Apply ExportJob `reborn` with ``batches`` batches, request a run, wait for it."""
    ns = wiring.namespace
    manifest = export_job(NAME, wiring, s3, batching={"batches": batches, "parallelism": 2})
    manifest["spec"]["source"].update({"table": "items", "keyColumn": "id"})
    del manifest["spec"]["source"]["timestampColumn"]
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, NAME, ANNOTATION_RUN_REQUESTED_AT)
    entry = wait_until(lambda: (e := (get(kubectl, ns, f"exportjob/{NAME}").get("status")
                                      or {}).get("lastRun")) and e.get("sealed") is True and e,
                       what="the run to end and be sealed (its _run.json written)", timeout=240)
    assert (entry["id"], entry["phase"]) == (f"{NAME}.1", "Succeeded"), entry
    return get(kubectl, ns, f"exportjob/{NAME}")


def folder(s3: S3Server, bucket: str) -> tuple[list[str], dict[int, dict[str, Any]]]:
    """Every key of the run-1 folder, and its manifests by batch index."""
    client = s3.client()
    keys = sorted(o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=FOLDER) for o in page.get("Contents", []))
    manifests = {}
    for key in keys:
        if "/_manifests/" in key:
            document = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            manifests[int(document["batch"])] = document
    return keys, manifests


def test_a_recreated_job_replaces_the_old_jobs_run_folder(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server, table: list[int],
    pg_db: str,
) -> None:
    old = run_once(kubectl, wiring, s3, batches=4)
    assert sorted(folder(s3, wiring.bucket)[1]) == [0, 1, 2, 3]
    kubectl("delete", f"exportjob/{NAME}", "-n", wiring.namespace, "--timeout=120s")
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("DELETE FROM items WHERE id <= 20")

    new = run_once(kubectl, wiring, s3, batches=2)

    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    keys, manifests = folder(s3, wiring.bucket)
    assert sorted(manifests) == [0, 1]
    assert {m["jobUid"] for m in manifests.values()} == {new["metadata"]["uid"]}
    files = sorted(f["key"] for m in manifests.values() for f in m["files"])
    assert keys == sorted([f"{FOLDER}_manifests/batch-0.json",
                           f"{FOLDER}_manifests/batch-1.json", f"{FOLDER}{RUN_MARKER}",
                           f"{FOLDER}{KEY_PLAN}", *files])
    # The old job's key plan (4 ranges) was replaced by the new job's (2), not reused.
    key_plan = json.loads(s3.client().get_object(
        Bucket=wiring.bucket, Key=f"{FOLDER}{KEY_PLAN}")["Body"].read())
    assert (key_plan["jobUid"], key_plan["count"], key_plan["method"]) == (
        new["metadata"]["uid"], 2, "ranges")
    marker = json.loads(s3.client().get_object(
        Bucket=wiring.bucket, Key=f"{FOLDER}{RUN_MARKER}")["Body"].read())
    assert (marker["run"], marker["jobUid"]) == (f"{NAME}.1", new["metadata"]["uid"])
    client = s3.client()
    ids = [int(row["id"]) for key in files for row in csv.DictReader(io.StringIO(
        client.get_object(Bucket=wiring.bucket, Key=key)["Body"].read().decode()))]
    assert sorted(ids) == table[20:]

