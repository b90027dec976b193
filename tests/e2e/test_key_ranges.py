"""An ExportJob split by keyColumn through the operator: the batches are key ranges the
first batch's worker planned, status shows each batch's range, and the files hold every
row of the table exactly once."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, request
from .support import Kubectl, wait_until

ROWS = 60_000
BATCHES = 4


@pytest.fixture(scope="module")
def skewed(pg_db: str) -> list[int]:
    """`skewed_keys`: 90 % of the rows hold 1 % of the key space; some keys NULL."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE skewed_keys (id bigint, k bigint, created_at timestamptz, "
                     "note text)")
        conn.execute(f"""INSERT INTO skewed_keys
            SELECT g, CASE WHEN g % 50 = 0 THEN NULL WHEN g % 10 < 9 THEN g % 1000
                           ELSE 1000 + (g * 7919) % 99000 END,
                   timestamptz '2026-01-01' + g * interval '1 second', 'row ' || g
            FROM generate_series(1, {ROWS}) g""")
        conn.execute("ANALYZE skewed_keys")
    return list(range(1, ROWS + 1))


def test_batches_on_a_key_column_are_planned_ranges_shown_in_status(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    skewed: list[int],
) -> None:
    name = "key-ranges"
    manifest = export_job(name, wiring, s3, batching={"batches": BATCHES, "parallelism": 1})
    manifest["spec"]["source"].update({"table": "skewed_keys", "keyColumn": "k"})
    ns = wiring.namespace
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, name, ANNOTATION_RUN_REQUESTED_AT)
    seen: dict[int, set[str]] = {}

    def finished() -> dict[str, Any] | None:
        status = get(kubectl, ns, f"exportjob/{name}").get("status") or {}
        for batch in (status.get("currentRun") or {}).get("batchStatuses") or []:
            if batch.get("keyRange"):
                seen.setdefault(batch["index"], set()).add(batch["keyRange"])
        return status.get("lastRun")

    entry: dict[str, Any] = wait_until(finished, what=f"the run of {name} to end",
                                       timeout=240, interval=0.5)
    assert entry["phase"] == "Succeeded", entry

    client = s3.client()
    folder = f"e2e/{name}/{entry['id']}"
    plan = json.loads(client.get_object(Bucket=wiring.bucket,
                                        Key=f"{folder}/_keyranges.json")["Body"].read())
    assert (plan["method"], plan["column"], plan["count"]) == ("ranges", "k", BATCHES)
    bounds = plan["bounds"]
    assert len(bounds) == BATCHES - 1
    shown = {0: f"k < {bounds[0]}, and NULL k", 1: f"{bounds[0]} <= k < {bounds[1]}",
             2: f"{bounds[1]} <= k < {bounds[2]}", 3: f"k >= {bounds[2]}"}
    # Before its worker reads the plan a batch shows what it will get; after, its range.
    for index, texts in seen.items():
        assert texts <= {shown[index], f"range {index + 1} of {BATCHES} of k, planned by the "
                         "first batch"}, (index, texts)
    # Polled while the run goes: at least one batch is seen with its worker's own range
    # (a fast batch can end between two polls; its text then was never in status).
    assert {i for i, texts in seen.items() if shown[i] in texts}, seen

    ids: list[int] = []
    sizes = []
    for index in range(BATCHES):
        manifest_doc = json.loads(client.get_object(
            Bucket=wiring.bucket, Key=f"{folder}/_manifests/batch-{index}.json")["Body"].read())
        sizes.append(manifest_doc["records"])
        for file in manifest_doc["files"]:
            body = client.get_object(Bucket=wiring.bucket, Key=file["key"])["Body"].read()
            ids += [int(line.split(b",", 1)[0]) for line in body.splitlines()[1:]]
    assert sorted(ids) == skewed
    assert max(sizes) <= 1.25 * min(sizes), sizes
