"""A stopped run, finished later, on the real cluster: its folder says it is incomplete,
history counts what committed, and `kubectl ferry retry` completes it exactly once.

The run exports 4 hash-partitioned batches one after another from a view that takes
~30 ms a row, and is stopped once a batch has committed. Then, as a downstream reader
would, the test reads the folder's `_run.json` (docs/worker.md, "The run marker") and
the files its manifests list, and compares them with the table.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT, ANNOTATION_STOP_REQUESTED_AT
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, plugin, request
from .support import Kubectl, wait_until

ROOT = Path(__file__).resolve().parents[2]
NAME = "halted"
ROWS = 160
FOLDER = f"e2e/{NAME}/{NAME}.1/"


@pytest.fixture(scope="module")
def slow_items(pg_db: str) -> list[int]:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, %s) g",
                      (ROWS,))
        conn.execute("CREATE FUNCTION nap(i bigint) RETURNS text STABLE LANGUAGE plpgsql "
                     "AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN i::text; END $$")
        conn.execute("CREATE VIEW slow_items AS SELECT id, note, nap(id) AS waited FROM items")
    return list(range(1, ROWS + 1))


def status(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    return get(kubectl, namespace, f"exportjob/{NAME}").get("status") or {}


def read(s3: S3Server, bucket: str, key: str) -> bytes:
    return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def committed_ids(s3: S3Server, bucket: str, marker: dict[str, Any]) -> Counter[int]:
    """The ids in the files of every batch the marker lists, read as a reader would."""
    ids: Counter[int] = Counter()
    for batch in marker["batches"]:
        manifest = json.loads(read(s3, bucket, batch["manifest"]))
        for file in manifest["files"]:
            rows = list(csv.DictReader(io.StringIO(read(s3, bucket, file["key"]).decode())))
            ids.update(int(r["id"]) for r in rows)
    return ids


def sealed_entry(kubectl: Kubectl, namespace: str, run_id: str) -> dict[str, Any]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (e := status(kubectl, namespace).get("lastRun")) and e["id"] == run_id and
        e.get("sealed") is True and e, what=f"run {run_id} to end and be sealed", timeout=240)


def test_a_stopped_run_is_marked_incomplete_and_retry_finishes_it_exactly_once(
    kubectl: Kubectl, kubeconfig: str, operator: OperatorProcess, wiring: Wiring,
    s3: S3Server, slow_items: list[int],
) -> None:
    ns, bucket = wiring.namespace, wiring.bucket
    manifest = export_job(NAME, wiring, s3, batching={"batches": 4, "parallelism": 1})
    manifest["spec"]["source"].update({"table": "slow_items", "keyColumn": "id"})
    del manifest["spec"]["source"]["timestampColumn"]
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, NAME, ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: ((status(kubectl, ns).get("currentRun") or {}).get("batches") or {})
               .get("succeeded", 0) >= 1, what="a first batch to commit", timeout=180,
               interval=0.3)
    request(kubectl, ns, NAME, ANNOTATION_STOP_REQUESTED_AT)

    stopped = sealed_entry(kubectl, ns, f"{NAME}.1")
    assert stopped["phase"] == "Canceled"
    assert stopped["runMarker"] == f"s3://{bucket}/{FOLDER}_run.json"
    marker = json.loads(read(s3, bucket, f"{FOLDER}_run.json"))
    assert (marker["runId"], marker["outcome"], marker["complete"]) == (
        f"{NAME}.1", "Canceled", False)
    committed = [b["batch"] for b in marker["batches"]]
    assert committed and sorted(committed + marker["missingBatches"]) == [0, 1, 2, 3]
    ids = committed_ids(s3, bucket, marker)
    assert max(ids.values()) == 1
    assert (stopped["records"], stopped["files"]) == (sum(ids.values()), marker["files"]), \
        "history counts what the manifests commit, including a batch that committed late"
    assert stopped["missingBatches"] == marker["missingBatches"]
    assert stopped["canceledBatches"] == sorted(
        set(stopped["canceledBatches"]) | set(marker["missingBatches"]))

    described = plugin(kubeconfig, ns, "describe", NAME, "--run", "1")
    assert described.returncode == 0, described.stderr
    table = described.stdout.split("Batches:\n", 1)[1].splitlines()
    assert [line.split()[:2] for line in table[1:]] == [
        [str(b), "Succeeded" if b in committed else "Canceled"] for b in range(4)]

    retried = plugin(kubeconfig, ns, "retry", NAME)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(
        f"exportjob.ferry.dev/{NAME} retry of run {NAME}.1 requested")

    finished = sealed_entry(kubectl, ns, f"{NAME}.2")
    assert (finished["phase"], finished["retryOf"], finished["complete"]) == (
        "Succeeded", f"{NAME}.1", True)
    marker = json.loads(read(s3, bucket, f"{FOLDER}_run.json"))
    assert (marker["runId"], marker["complete"], marker["missingBatches"]) == (
        f"{NAME}.2", True, [])
    assert committed_ids(s3, bucket, marker) == Counter(slow_items), \
        "every row of the table exactly once, in the one run folder"
    wait_until(lambda: not [j for j in get(kubectl, ns, "jobs")["items"]
                            if j["metadata"]["name"].endswith("-seal")],
               what="finished seal Jobs to be deleted", timeout=60)
