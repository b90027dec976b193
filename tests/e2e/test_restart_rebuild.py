"""After an operator restart the run state is rebuilt from the child Job and the S3
manifests, on the real cluster with the real worker, PostgreSQL and S3.

The hard case: the run's Job ended and was deleted while the operator was down, so
the operator never saw how the run ended. The run must not stay InProgress without a
Job, and must not fail for that: the operator creates the Job again, and its pods
report the batches the run already committed from their manifests.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT
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

ROWS = 300
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def slow_rows(pg_db: str) -> str:
    """`slow_rows`: ROWS rows, one a minute from START, read at ~40 ms a row, so a
    batch of 100 takes seconds (COUNT(*) stays instant: the planner drops the call)."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions AS SELECT i::bigint AS id, "
                     "%s::timestamptz + i * interval '1 minute' AS created_at "
                     "FROM generate_series(0, %s) AS i", (START, ROWS - 1))
        conn.execute("CREATE FUNCTION nap(i bigint) RETURNS text STABLE LANGUAGE plpgsql "
                      "AS $$ BEGIN PERFORM pg_sleep(0.04); RETURN i::text; END $$")
        conn.execute("CREATE VIEW slow_rows AS SELECT id, created_at, nap(id) AS payload "
                     "FROM interactions")
    return "slow_rows"


def manifests(s3: S3Server, bucket: str, job: str, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's committed batch manifests by key."""
    client = s3.client()
    prefix = f"e2e/{job}/{run_id}/_manifests/"
    return {obj["Key"]: json.loads(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
                                   .read())
            for obj in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}


def job_names(kubectl: Kubectl, namespace: str, job: str) -> list[str]:
    return [j["metadata"]["name"] for j in run_jobs(kubectl, namespace, job)]


def test_a_job_that_ended_and_vanished_while_the_operator_was_down_is_rebuilt_from_s3(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server, slow_rows: str,
    operator_kubeconfig: str,
) -> None:
    ns = wiring.namespace
    window = {"fixed": {"start": START.isoformat(), "end": "2026-11-02T00:00:00Z"}}
    manifest = export_job("lost", wiring, s3, timeframe=window,
                          batching={"batches": 3, "parallelism": 3})
    manifest["spec"]["source"]["table"] = slow_rows
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "lost", ANNOTATION_RUN_REQUESTED_AT)
    seen = wait_until(lambda: ((get(kubectl, ns, "exportjob/lost").get("status") or {})
                               .get("currentRun") or {}).get("batches"),
                      what="the operator to see the run's Job")
    assert seen["succeeded"] < 3, "the run must still be going when the operator stops"

    operator.kill()
    try:
        wait_until(lambda: any(c["type"] == "Complete" and c["status"] == "True" for c in
                               get(kubectl, ns, "job/lost-1")["status"].get("conditions", [])),
                   what="the Job to complete with nobody watching", timeout=60)
        committed = manifests(s3, wiring.bucket, "lost", "lost.1")
        assert len(committed) == 3
        kubectl("delete", "job/lost-1", "-n", ns, "--wait=true", "--timeout=60s")
        stale = get(kubectl, ns, "exportjob/lost")["status"]
        assert stale["currentRun"]["phase"] == "InProgress"
    finally:
        replacement = start_operator(operator_kubeconfig, operator.log, ns)
        operator.process = replacement.process

    entry = wait_until(lambda: (get(kubectl, ns, "exportjob/lost").get("status") or {})
                       .get("lastRun"), what="the run to end", timeout=90)

    assert (entry["id"], entry["phase"], entry["records"], entry["files"]) == (
        "lost.1", "Succeeded", ROWS, 3)
    assert entry["message"] == "3 of 3 batches succeeded"
    status = get(kubectl, ns, "exportjob/lost")["status"]
    assert [h["id"] for h in status["history"]] == ["lost.1"]
    assert "currentRun" not in status
    assert job_names(kubectl, ns, "lost") == ["lost-1"], "created again, under its name"
    assert manifests(s3, wiring.bucket, "lost", "lost.1") == committed, \
        "no batch was exported again: the manifests (attempts, files) are the same"
    uid = get(kubectl, ns, "job/lost-1")["metadata"]["uid"]
    pods = [p for p in get(kubectl, ns, "pods")["items"]
            if [o["uid"] for o in p["metadata"].get("ownerReferences", [])] == [uid]]
    notes = sorted(json.loads(p["status"]["containerStatuses"][0]["state"]["terminated"]
                              ["message"]).get("note", "") for p in pods)
    assert len(notes) == 3
    assert all("not exported again" in n for n in notes), notes
    replaced = [e["message"] for e in get(kubectl, ns, "events")["items"]
                if e["reason"] == "JobReplaced"]
    assert len(replaced) == 1
    assert replaced[0].startswith("run lost.1: Job lost-1 was gone while the run was in "
                                  "progress; created it again")
