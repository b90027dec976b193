"""``ferry-worker seal`` against PostgreSQL and MinIO: real batches export into a run
folder, the seal writes ``_run.json`` from their manifests, and its termination message
carries what the operator records in the run's history.

A run of 3 batches of which only 0 and 2 commit (the run canceled) is sealed incomplete,
batch 1 missing, a manifest another ExportJob left at index 1 not counted; its retry
exports batch 1 into the same folder and the retry's seal rewrites the marker complete.
The record counts are checked three ways: the marker's, the manifests', and the rows
read back from the data files the manifests list.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ferry.worker.main import build_parser, seal_command
from tests.fixtures.services import S3Server
from tests.integration.conftest import (
    PlanFactory,
    WorkerRun,
    get_json,
    list_keys,
    manifest_key,
    read_files,
    run_worker,
)

pytestmark = pytest.mark.integration

ROWS = 300
BOUNDS = [(None, 101), (101, 201), (201, None)]  # batch i exports ids in [lo, hi)


@pytest.fixture
def dsn(pg_db: str) -> str:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, note text)")
        conn.execute(f"INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g")
    return pg_db


def slices(indexes: list[int]) -> list[dict[str, Any]]:
    """The controller's slices for these batches (a retry lists only the failed ones)."""
    return [{"batchIndex": i, "keyRange": {"column": "id", "lo": BOUNDS[i][0],
                                           "hi": BOUNDS[i][1], "includeNulls": i == 0}}
            for i in indexes]


def seal_env(plan: dict[str, Any], s3: S3Server, term: Path,
             seal: dict[str, str] | None) -> dict[str, str]:
    """What the seal pod gets: the run's plan plus ``seal``, S3 keys, no database."""
    return {"FERRY_PLAN": json.dumps({**plan, **({"seal": seal} if seal else {})}),
            "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "FERRY_TERMINATION_MESSAGE_PATH": str(term), "FERRY_MAX_ATTEMPTS": "1"}


def run_seal(plan: dict[str, Any], s3: S3Server, tmp_path: Path, seal: dict[str, str] | None,
             extra_env: dict[str, str] | None = None) -> WorkerRun:
    """``ferry-worker seal`` in-process, as run_worker runs ``export``."""
    term = tmp_path / f"seal-{len(list(tmp_path.iterdir()))}"
    env = {**seal_env(plan, s3, term, seal), **(extra_env or {})}
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = seal_command(build_parser().parse_args(["seal"]), env)
    finally:
        signal.signal(signal.SIGTERM, previous)
    raw = term.read_text() if term.exists() else ""
    return WorkerRun(code, json.loads(raw) if raw else {}, raw)


def marker_key(plan: dict[str, Any]) -> str:
    return f"exports/{plan['job']}/{plan['run']}/_run.json"


def rows_in(dsn: str, batches: list[int]) -> int:
    """Rows of the table in these batches' key ranges, counted by the database."""
    with psycopg.connect(dsn) as conn:
        return sum(conn.execute("SELECT count(*) FROM items WHERE id >= %s AND id < %s",
                                (BOUNDS[i][0] or 0, BOUNDS[i][1] or ROWS + 1)).fetchone()[0]
                   for i in batches)


def check_marker(s3: S3Server, bucket: str, plan: dict[str, Any], result: WorkerRun,
                 committed: list[int], seal: dict[str, str]) -> dict[str, Any]:
    """The marker lists exactly the ``committed`` batches' manifests, its sums are theirs
    and the data files' rows, and the termination message says the same."""
    client = s3.client()
    key = marker_key(plan)
    assert client.head_object(Bucket=bucket, Key=key)["ContentType"] == "application/json"
    marker = get_json(client, bucket, key)
    manifests = [get_json(client, bucket, manifest_key(plan, i)) for i in committed]
    read_back = sum(len(read_files(client, bucket, m["files"], "csv", "none")[1])
                    for m in manifests)
    missing = [i for i in range(3) if i not in committed]
    entries = [{"batch": m["batch"], "manifest": manifest_key(plan, m["batch"]),
                "records": m["records"], "files": len(m["files"]), "bytes": m["bytes"],
                "startedAt": m["startedAt"], "finishedAt": m["finishedAt"]} for m in manifests]
    assert marker == {
        "version": 1, "job": "items", "jobUid": "uid-a", "run": plan["run"],
        "runId": seal["runId"], "outcome": seal["outcome"], "complete": not missing,
        "batchCount": 3, "batches": entries, "missingBatches": missing,
        "records": sum(m["records"] for m in manifests),
        "files": sum(len(m["files"]) for m in manifests),
        "bytes": sum(m["bytes"] for m in manifests), "sealedAt": marker["sealedAt"],
    }
    assert marker["records"] == read_back
    assert result.code == 0
    assert result.raw_message.count("\n") == 1
    assert result.message == {
        "status": "Sealed", "complete": not missing, "records": read_back,
        "files": marker["files"], "bytes": marker["bytes"], "marker": key, "missing": missing,
        "batches": [[e["batch"], e["records"], e["files"], e["bytes"], e["startedAt"],
                     e["finishedAt"]] for e in entries],
    }
    return marker


def test_a_canceled_run_is_sealed_incomplete_and_its_retry_complete(
        dsn: str, s3: S3Server, s3_bucket: str, make_plan: PlanFactory, tmp_path: Path) -> None:
    plan = make_plan(jobUid="uid-a", batchCount=3, slices=slices([0, 1, 2]))
    for position in (0, 2):  # batch 1 never ran: the run was canceled
        assert run_worker(plan, dsn, s3, tmp_path,
                          extra_env={"JOB_COMPLETION_INDEX": str(position)}).code == 0
    # What an earlier ExportJob of the same name left at index 1: not this run's.
    client = s3.client()
    client.put_object(Bucket=s3_bucket, Key=manifest_key(plan, 1), Body=json.dumps(
        {"version": 1, "job": "items", "jobUid": "uid-old", "run": plan["run"], "batch": 1,
         "records": 999, "bytes": 1, "files": [{"key": "gone", "size": 1, "records": 999}]}))

    canceled = {"runId": "items.1", "outcome": "Canceled"}
    sealed = run_seal(plan, s3, tmp_path, canceled)
    marker = check_marker(s3, s3_bucket, plan, sealed, [0, 2], canceled)
    assert marker["records"] == rows_in(dsn, [0, 2]) == 200

    # The retry (run items.2) exports batch 1 into the same folder; its seal, run as the
    # pod runs it (the console script's module), rewrites the marker.
    retry = {**plan, "slices": slices([1])}
    assert run_worker(retry, dsn, s3, tmp_path, extra_env={"JOB_COMPLETION_INDEX": "0"}).code == 0
    retried = {"runId": "items.2", "outcome": "Succeeded"}
    term = tmp_path / "retry-seal"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "FERRY_")) and k != "JOB_COMPLETION_INDEX"}
    done = subprocess.run([sys.executable, "-m", "ferry.worker.main", "seal"],
                          env={**env, **seal_env(retry, s3, term, retried)},
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    raw = term.read_text()
    marker = check_marker(s3, s3_bucket, plan, WorkerRun(done.returncode, json.loads(raw), raw),
                          [0, 1, 2], retried)
    assert marker["records"] == rows_in(dsn, [0, 1, 2]) == ROWS


def test_every_page_of_manifests_is_read_and_only_indexes_below_the_batch_count(
        s3: S3Server, s3_bucket: str, make_plan: PlanFactory, tmp_path: Path) -> None:
    """1001 manifests need two listing pages (1000 keys each); batch-999 sorts last of
    all, so a seal reading only the first page would miss it. An index at or above
    batchCount, and a plan without jobUid (every manifest is the job's), are covered too."""
    count = 1001
    plan = make_plan(batchCount=count, slices=slices([0]))
    client = s3.client()

    def put(i: int) -> None:
        client.put_object(Bucket=s3_bucket, Key=manifest_key(plan, i), Body=json.dumps(
            {"batch": i, "records": i, "bytes": 2 * i, "files": [{"key": f"f{i}"}],
             "startedAt": None, "finishedAt": None, "jobUid": f"uid-{i}"}))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count + 1)))  # + batch-1001, beyond the count
    assert len(list_keys(client, s3_bucket, f"exports/items/{plan['run']}/_manifests/")) == 1002
    sealed = run_seal(plan, s3, tmp_path, {"runId": "items.3", "outcome": "Succeeded"})
    assert sealed.code == 0
    marker = get_json(client, s3_bucket, marker_key(plan))
    assert marker["complete"] and marker["missingBatches"] == []
    assert [b["batch"] for b in marker["batches"]] == list(range(count))
    assert marker["records"] == sum(range(count)) and marker["files"] == count
    assert "jobUid" not in marker
    assert sealed.message["batchesOmitted"] == count and "batches" not in sealed.message
    assert sealed.message["records"] == marker["records"] and sealed.message["missing"] == []


def test_an_empty_folder_is_sealed_with_every_batch_missing(
        s3: S3Server, s3_bucket: str, make_plan: PlanFactory, tmp_path: Path) -> None:
    plan = make_plan(jobUid="uid-a", batchCount=3, slices=slices([0, 1, 2]))
    sealed = run_seal(plan, s3, tmp_path, {"runId": "items.4", "outcome": "Failed"})
    assert sealed.code == 0
    assert sealed.message == {"status": "Sealed", "complete": False, "records": 0, "files": 0,
                              "bytes": 0, "marker": marker_key(plan), "missing": [0, 1, 2],
                              "batches": []}
    marker = get_json(s3.client(), s3_bucket, marker_key(plan))
    assert (marker["outcome"], marker["batches"], marker["missingBatches"]) == \
        ("Failed", [], [0, 1, 2])


def test_exit_codes(s3: S3Server, make_plan: PlanFactory, tmp_path: Path) -> None:
    """3 for a missing bucket (no retry helps), 75 for an S3 that stays unreachable past
    the retry budget; the failure message is the export's, with batch -1."""
    seal = {"runId": "items.5", "outcome": "Canceled"}
    missing = make_plan(destination={"bucket": "no-such-bucket-here", "endpoint": s3.endpoint_url,
                                     "region": s3.region, "pathStyle": True})
    result = run_seal(missing, s3, tmp_path, seal)
    assert result.code == 3
    assert (result.message["status"], result.message["batch"], result.message["kind"]) == \
        ("Failed", -1, "config")
    assert "NoSuchBucket" in result.message["reason"]

    down = make_plan(destination={"bucket": "exports", "endpoint": "http://127.0.0.1:1",
                                  "region": s3.region, "pathStyle": True})
    result = run_seal(down, s3, tmp_path, seal, extra_env={"FERRY_S3_RETRY_SECONDS": "1"})
    assert (result.code, result.message["kind"]) == (75, "transient")
    assert result.message["reason"].startswith("S3 ListObjectsV2 manifests still failing")
