"""`kubectl ferry` on status the operator wrote: one run, then history, errors, download
and clone, as a user would go through them after a partly failed export.

tests/e2e/test_cli.py checks each verb's output on hand-written status; this module
runs the real operator and worker, so the plugin reads what they really produce. The
source is 60 rows split into two time-slice batches; the second divides by zero from
its 16th row on (a fatal error: the batch fails without retries, nothing of it is
committed, the run ends PartiallySucceeded).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import psycopg
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, plugin, request
from .support import Kubectl, wait_until

ROOT = Path(__file__).resolve().parents[2]
NAME = "partly"
WINDOW = {"fixed": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"}}


@pytest.fixture(scope="module")
def half_broken(pg_db: str) -> list[int]:
    """ids 0-59, one a minute; reading a row from 00:45 on fails with division by zero."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE minutes AS SELECT id, timestamptz '2026-11-01 00:00Z' + "
                     "id * interval '1 minute' AS created_at FROM generate_series(0, 59) id")
        conn.execute("CREATE VIEW half_broken AS SELECT id, created_at, CASE WHEN created_at "
                     ">= timestamptz '2026-11-01 00:45Z' THEN (1 / (id - id))::text END AS note "
                     "FROM minutes")
    return list(range(30))


def test_history_errors_download_and_clone_of_a_run_the_operator_ran(
    kubectl: Kubectl, kubeconfig: str, operator: OperatorProcess, wiring: Wiring,
    s3: S3Server, half_broken: list[int], tmp_path: Path,
) -> None:
    ns = wiring.namespace
    manifest = export_job(NAME, wiring, s3, timeframe=WINDOW,
                          batching={"batches": 2, "retriesPerBatch": 0})
    manifest["spec"]["source"]["table"] = "half_broken"
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, NAME, ANNOTATION_RUN_REQUESTED_AT)
    entry = wait_until(lambda: (get(kubectl, ns, f"exportjob/{NAME}").get("status") or {})
                       .get("lastRun"), what="the run to end", timeout=180)
    assert (entry["phase"], entry["failedBatches"]) == ("PartiallySucceeded", [1])

    history = plugin(kubeconfig, ns, "history", NAME)
    assert history.returncode == 0, history.stderr
    header, row = history.stdout.splitlines()
    assert header.split() == ["RUN", "TRIGGER", "STARTED", "FINISHED", "DURATION", "RESULT",
                              "RECORDS", "FILES"]
    cells = row.split()
    assert (cells[0], cells[1], cells[5], cells[6], cells[7]) == (
        f"{NAME}.1", "manual", "PartiallySucceeded", "30", "1")

    errors = plugin(kubeconfig, ns, "errors", NAME, "-o", "json")
    assert errors.returncode == 0, errors.stderr
    [record] = json.loads(errors.stdout)
    assert record["batch"] == 1 and "division by zero" in record["reason"]
    # A class 22 error met before the first rows arrive counts as the plan's (a filter
    # value), so on a table this small it is config/3, else data/4 (docs/worker.md).
    assert (record["kind"], record["exitCode"]) in {("config", 3), ("data", 4)}
    table = plugin(kubeconfig, ns, "errors", NAME)
    assert table.stdout.splitlines()[0].split() == [
        "TIME", "BATCH", "ATTEMPT", "KIND", "EXIT", "REASON"]

    downloaded = plugin(kubeconfig, ns, "download", NAME, "-o", str(tmp_path))
    assert downloaded.returncode == 0, downloaded.stderr
    [file] = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert file.name.startswith(f"{NAME}-0-0-") and file.suffix == ".csv"
    with file.open(newline="") as handle:
        ids = [int(r["id"]) for r in csv.DictReader(handle)]
    assert sorted(ids) == half_broken, "the committed batch, every row once"

    cloned = plugin(kubeconfig, ns, "clone", NAME, f"{NAME}-copy")
    assert (cloned.returncode, cloned.stdout) == (
        0, f"exportjob.ferry.dev/{NAME}-copy created from {NAME} (suspended)\n")
    copy = get(kubectl, ns, f"exportjob/{NAME}-copy")
    original = get(kubectl, ns, f"exportjob/{NAME}")
    assert copy["spec"] == {**original["spec"], "suspend": True}
    assert "status" not in copy or not copy["status"].get("history")
