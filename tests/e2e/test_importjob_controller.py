"""The ImportJob controller on the real cluster, with the real worker, PostgreSQL and S3.

Each test reads back what a user looks at: the status (phase, history, records, the
audit log's URL), the child Jobs, and the table's rows compared with the files loaded.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT, LABEL_IMPORTJOB, LABEL_RUN
from tests.fixtures.services import S3Server

from .operator_fixtures import (
    PREFIX,
    OperatorProcess,
    Wiring,
    export_job,
    get,
    import_job,
    plugin,
    put_csv,
)
from .support import Kubectl, wait_until


@pytest.fixture(scope="module")
def imports(kubectl: Kubectl, wiring: Wiring) -> Iterator[Wiring]:
    """The wiring, and every ImportJob of the module deleted while the operator runs."""
    yield wiring
    kubectl("delete", "importjobs", "--all", "-n", wiring.namespace, "--timeout=100s",
            check=False)


def table(pg_db: str, name: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, name text, score int)")
        conn.execute(f"CREATE INDEX ON {name} (score)")
        for row in rows or []:
            conn.execute(f"INSERT INTO {name} VALUES (%s, %s, %s)", row)


def rows_of(pg_db: str, name: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        return conn.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()


def apply(kubectl: Kubectl, namespace: str, manifest: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))


def run_now(kubectl: Kubectl, namespace: str, resource: str) -> None:
    kubectl("annotate", "-n", namespace, resource,
            f"{ANNOTATION_RUN_REQUESTED_AT}={time.time():.6f}", "--overwrite")


def finished_run(kubectl: Kubectl, namespace: str, name: str, number: int,
                 kind: str = "importjob") -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        last = (get(kubectl, namespace, f"{kind}/{name}").get("status") or {}).get("lastRun")
        return last if last and last["number"] == number else None
    return wait_until(probe, timeout=180, what=f"run {name}.{number} to end")  # type: ignore[no-any-return]


def test_run_now_loads_every_file_once_in_batches_and_new_files_only_skips_them_after(
    kubectl: Kubectl, operator: OperatorProcess, imports: Wiring, s3: S3Server, pg_db: str,
) -> None:
    ns, bucket = imports.namespace, imports.bucket
    files = {f"{PREFIX}/lists/part-{i}.csv": [(i * 100 + j, f"name {i}-{j}", j)
                                              for j in range(100)] for i in range(3)}
    for key, rows in files.items():
        put_csv(s3, bucket, key, rows)
    table(pg_db, "lists")
    apply(kubectl, ns, import_job("lists", imports, s3, "lists", newFilesOnly=True,
                                  batching={"batches": 2, "parallelism": 2}))
    run_now(kubectl, ns, "importjob/lists")

    entry = finished_run(kubectl, ns, "lists", 1)

    assert (entry["id"], entry["phase"], entry["trigger"]) == ("lists.1", "Succeeded", "manual")
    assert (entry["records"], entry["files"], entry["batchesPlanned"]) == (300, 3, 2)
    assert rows_of(pg_db, "lists") == sorted(r for rows in files.values() for r in rows)
    jobs = [j for j in get(kubectl, ns, "jobs")["items"]
            if j["metadata"]["labels"].get(LABEL_IMPORTJOB) == "lists"]
    assert [(j["metadata"]["name"], j["metadata"]["labels"][LABEL_RUN],
             j["spec"]["completions"]) for j in jobs] == [("lists-import-1", "1", 2)]
    status = get(kubectl, ns, "importjob/lists")["status"]
    assert status["phase"] == "Succeeded"
    assert status["history"] == [entry]
    assert "manifest" not in entry and "sealed" not in entry

    put_csv(s3, bucket, f"{PREFIX}/lists/part-3.csv", [(900, "late", 1)])
    run_now(kubectl, ns, "importjob/lists")
    second = finished_run(kubectl, ns, "lists", 2)

    assert (second["phase"], second["records"], second["files"]) == ("Succeeded", 1, 1)
    assert len(rows_of(pg_db, "lists")) == 301, "the files of run 1 are not loaded again"


def test_rows_under_max_errors_are_rejected_into_the_audit_log(
    kubectl: Kubectl, operator: OperatorProcess, imports: Wiring, s3: S3Server, pg_db: str,
) -> None:
    ns, bucket = imports.namespace, imports.bucket
    put_csv(s3, bucket, f"{PREFIX}/scores/a.csv",
            [(1, "ok", 10), (2, "bad", "ten"), (3, "ok", 30)])
    table(pg_db, "scores")
    apply(kubectl, ns, import_job("scores", imports, s3, "scores", maxErrors=1))
    run_now(kubectl, ns, "importjob/scores")

    entry = finished_run(kubectl, ns, "scores", 1)

    assert entry["phase"] == "SucceededWithErrors"
    assert (entry["records"], entry["recordsRejected"]) == (2, 1)
    assert rows_of(pg_db, "scores") == [(1, "ok", 10), (3, "ok", 30)]
    audit = f"s3://{bucket}/{PREFIX}/scores/scores/scores.1/_rejects/"
    assert entry["auditLog"] == audit
    key = audit.removeprefix(f"s3://{bucket}/") + "batch-0.jsonl.gz"
    body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    [line] = [json.loads(x) for x in gzip.decompress(body).decode().splitlines()]
    assert (line["file"], line["line"], line["column"]) == (f"{PREFIX}/scores/a.csv", 3, "score")
    phase = get(kubectl, ns, "importjob/scores")["status"]["phase"]
    assert phase == "SucceededWithErrors"


def test_merge_updates_matching_rows_and_inserts_the_rest(
    kubectl: Kubectl, operator: OperatorProcess, imports: Wiring, s3: S3Server, pg_db: str,
) -> None:
    ns, bucket = imports.namespace, imports.bucket
    table(pg_db, "profiles", [(1, "old one", 1), (2, "old two", 2)])
    put_csv(s3, bucket, f"{PREFIX}/profiles/p.csv", [(2, "new two", 20), (3, "new three", 30)])
    apply(kubectl, ns, import_job("profiles", imports, s3, "profiles", mode="Merge",
                                  keyColumns=["id"]))
    run_now(kubectl, ns, "importjob/profiles")

    assert finished_run(kubectl, ns, "profiles", 1)["phase"] == "Succeeded"
    assert rows_of(pg_db, "profiles") == [(1, "old one", 1), (2, "new two", 20),
                                          (3, "new three", 30)]


def test_overwrite_that_fails_leaves_the_table_as_it_was(
    kubectl: Kubectl, operator: OperatorProcess, imports: Wiring, s3: S3Server, pg_db: str,
) -> None:
    ns, bucket = imports.namespace, imports.bucket
    before = [(1, "kept", 1), (2, "kept", 2)]
    table(pg_db, "snapshot", before)
    put_csv(s3, bucket, f"{PREFIX}/snapshot/good.csv", [(7, "new", 7)])
    put_csv(s3, bucket, f"{PREFIX}/snapshot/wrong.csv", [(8, "x", 8)], header="id,nom,score")
    apply(kubectl, ns, import_job("snapshot", imports, s3, "snapshot", mode="Overwrite",
                                  batching={"retriesPerBatch": 0}))
    run_now(kubectl, ns, "importjob/snapshot")

    entry = finished_run(kubectl, ns, "snapshot", 1)

    assert entry["phase"] == "Failed"
    assert "wrong.csv" in entry["message"] and "nom" in entry["message"]
    assert rows_of(pg_db, "snapshot") == before
    ready = next(c for c in get(kubectl, ns, "importjob/snapshot")["status"]["conditions"]
                 if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ConfigurationError")

    s3.client().delete_object(Bucket=bucket, Key=f"{PREFIX}/snapshot/wrong.csv")
    run_now(kubectl, ns, "importjob/snapshot")
    assert finished_run(kubectl, ns, "snapshot", 2)["phase"] == "Succeeded"
    assert rows_of(pg_db, "snapshot") == [(7, "new", 7)]


def test_from_export_loads_the_exports_latest_run_beside_an_export_of_the_same_name(
    kubectl: Kubectl, operator: OperatorProcess, imports: Wiring, s3: S3Server, pg_db: str,
) -> None:
    ns = imports.namespace
    table(pg_db, "contacts")
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("INSERT INTO contacts SELECT i, 'contact ' || i, i % 5 "
                     "FROM generate_series(1, 250) AS i")
        conn.execute("CREATE TABLE contacts_copy (LIKE contacts INCLUDING ALL)")
    source = {"type": "postgres", "connectionSecretRef": {"name": imports.db_secret,
                                                          "key": "dsn"},
              "table": "contacts", "keyColumn": "id"}
    apply(kubectl, ns, export_job("contacts", imports, s3, source=source,
                                  batching={"batches": 2, "parallelism": 2}))
    importer = import_job("contacts", imports, s3, "contacts_copy")
    importer["spec"]["source"] = {"fromExport": {"name": "contacts"}}
    apply(kubectl, ns, importer)

    run_now(kubectl, ns, "importjob/contacts")
    refused = finished_run(kubectl, ns, "contacts", 1)
    assert refused["phase"] == "Failed"
    assert refused["message"] == (
        "spec.source.fromExport: ExportJob contacts has no Succeeded run yet: run it first "
        "(kubectl ferry run contacts --wait), or name a run in spec.source.fromExport.run")

    run_now(kubectl, ns, "exportjob/contacts")
    assert finished_run(kubectl, ns, "contacts", 1, kind="exportjob")["phase"] == "Succeeded"
    run_now(kubectl, ns, "importjob/contacts")
    entry = finished_run(kubectl, ns, "contacts", 2)

    assert (entry["phase"], entry["sourceRun"], entry["records"]) == (
        "Succeeded", "contacts.1", 250)
    assert rows_of(pg_db, "contacts_copy") == rows_of(pg_db, "contacts")
    names = sorted(j["metadata"]["name"] for j in get(kubectl, ns, "jobs")["items"]
                   if "contacts" in j["metadata"]["name"])
    assert "contacts-1" in names and "contacts-import-2" in names
    ready = next(c for c in get(kubectl, ns, "importjob/contacts")["status"]["conditions"]
                 if c["type"] == "Ready")
    assert ready["status"] == "True", "a successful run clears the configuration error"


def test_a_group_runs_an_export_then_an_import_of_its_files_then_a_merge(
    kubectl: Kubectl, operator: OperatorProcess, imports: Wiring, s3: S3Server, pg_db: str,
) -> None:
    """The seeds' ordered imports: load the list table from the export's files, then merge
    the profile table; each member starts once the one before it succeeded."""
    ns, bucket = imports.namespace, imports.bucket
    table(pg_db, "accounts")
    table(pg_db, "accounts_list")
    table(pg_db, "account_profiles", [(1, "stale", 0)])
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts SELECT i, 'account ' || i, i "
                     "FROM generate_series(1, 120) AS i")
    put_csv(s3, bucket, f"{PREFIX}/account-profiles/p.csv", [(1, "fresh", 1), (2, "new", 2)])
    source = {"type": "postgres", "connectionSecretRef": {"name": imports.db_secret,
                                                          "key": "dsn"},
              "table": "accounts"}
    apply(kubectl, ns, export_job("accounts", imports, s3, source=source))
    loader = import_job("account-list", imports, s3, "accounts_list")
    loader["spec"]["source"] = {"fromExport": {"name": "accounts"}}
    apply(kubectl, ns, loader)
    apply(kubectl, ns, import_job("account-profiles", imports, s3, "account_profiles",
                                  mode="Merge", keyColumns=["id"]))
    apply(kubectl, ns, {"apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup",
                        "metadata": {"name": "accounts-nightly"},
                        "spec": {"title": "Accounts nightly",
                                 "members": ["accounts", "importjob/account-list",
                                             "importjob/account-profiles"]}})
    run_now(kubectl, ns, "jobgroup/accounts-nightly")

    def group_run() -> dict[str, Any] | None:
        status = get(kubectl, ns, "jobgroup/accounts-nightly").get("status") or {}
        return status.get("lastRun")
    run = wait_until(group_run, timeout=300, what="the group run to end")

    assert run["phase"] == "Succeeded", run
    assert [(m["name"], m["phase"], m["runId"]) for m in run["members"]] == [
        ("accounts", "Succeeded", "accounts.1"),
        ("importjob/account-list", "Succeeded", "account-list.1"),
        ("importjob/account-profiles", "Succeeded", "account-profiles.1")]
    started = [m["startedAt"] for m in run["members"]]
    assert started == sorted(started), "in order, one at a time"
    assert rows_of(pg_db, "accounts_list") == rows_of(pg_db, "accounts")
    assert rows_of(pg_db, "account_profiles") == [(1, "fresh", 1), (2, "new", 2)]
    loaded = get(kubectl, ns, "importjob/account-list")["status"]["lastRun"]
    assert (loaded["trigger"], loaded["sourceRun"]) == ("group:accounts-nightly.1",
                                                        "accounts.1")
    kubectl("delete", "-n", ns, "jobgroup/accounts-nightly")


def test_the_plugin_lists_runs_waits_for_and_describes_an_import(
    kubectl: Kubectl, kubeconfig: str, operator: OperatorProcess, imports: Wiring,
    s3: S3Server, pg_db: str,
) -> None:
    ns, bucket = imports.namespace, imports.bucket
    put_csv(s3, bucket, f"{PREFIX}/cli-lists/a.csv", [(1, "one", 1), (2, "two", 2)])
    table(pg_db, "cli_lists")
    apply(kubectl, ns, import_job("cli-lists", imports, s3, "cli_lists"))

    ran = plugin(kubeconfig, ns, "run", "importjob/cli-lists", "--wait", "--timeout", "3m")

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("importjob.ferry.dev/cli-lists run requested")
    assert rows_of(pg_db, "cli_lists") == [(1, "one", 1), (2, "two", 2)]
    listed = plugin(kubeconfig, ns, "list")
    row = next(line for line in listed.stdout.splitlines() if line.startswith("cli-lists "))
    assert row.split()[:3] == ["cli-lists", "Import", "e2e"]
    history = plugin(kubeconfig, ns, "history", "ij/cli-lists")
    assert "cli-lists.1" in history.stdout and "Succeeded" in history.stdout
    described = plugin(kubeconfig, ns, "describe", "importjob/cli-lists")
    assert "Type:" in described.stdout and "Import" in described.stdout
    assert "Destination:" in described.stdout and "table cli_lists" in described.stdout
    refused = plugin(kubeconfig, ns, "errors", "importjob/cli-lists")
    assert refused.returncode != 0
    assert "importjob.ferry.dev/cli-lists is an ImportJob: errors reads an ExportJob's" \
        in refused.stderr


def test_a_job_deleted_mid_load_is_replaced_and_the_rows_land_once(
    kubectl: Kubectl, operator: OperatorProcess, imports: Wiring, s3: S3Server, pg_db: str,
) -> None:
    """The pod is killed with its Job while it waits on the table (a lock the test holds):
    its transaction never commits; the operator creates the Job again under the same
    name, and the new pod loads each file once."""
    ns, bucket = imports.namespace, imports.bucket
    rows = [(i, f"row {i}", i) for i in range(50)]
    put_csv(s3, bucket, f"{PREFIX}/killed/a.csv", rows[:25])
    put_csv(s3, bucket, f"{PREFIX}/killed/b.csv", rows[25:])
    table(pg_db, "killed")
    apply(kubectl, ns, import_job("killed", imports, s3, "killed",
                                  batching={"retriesPerBatch": 0}))
    with psycopg.connect(pg_db) as lock:
        lock.execute("LOCK TABLE killed IN ACCESS EXCLUSIVE MODE")
        run_now(kubectl, ns, "importjob/killed")

        def running_pod() -> bool:
            pods = get(kubectl, ns, "pods")["items"]
            return any(p["metadata"]["labels"].get(LABEL_IMPORTJOB) == "killed" and
                       p["status"].get("phase") == "Running" for p in pods)
        wait_until(running_pod, timeout=120, what="the import's pod to wait on the lock")
        kubectl("delete", "-n", ns, "job/killed-import-1", "--wait=true", "--timeout=60s")
        wait_until(lambda: any(j["metadata"]["name"] == "killed-import-1"
                               for j in get(kubectl, ns, "jobs")["items"]),
                   timeout=60, what="the Job created again")

    entry = finished_run(kubectl, ns, "killed", 1)

    assert (entry["phase"], entry["records"]) == ("Succeeded", 50)
    assert rows_of(pg_db, "killed") == rows
    status = get(kubectl, ns, "importjob/killed")["status"]
    assert [h["id"] for h in status["history"]] == ["killed.1"], "one run, not two"
