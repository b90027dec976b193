"""One run per folder: an ExportJob deleted and created again under the same name
numbers its runs from 1 again and writes into the old job's run folders. Afterwards a
folder holds exactly the new run's manifests and files (docs/worker.md, "One run per
folder"), and `kubectl ferry download` / `errors` read only the run's batches.

The plans are the controller's own (`ferry.reconcile.jobspec.worker_plan` over
`plan_slices`), run by the real worker against PostgreSQL and MinIO, one completion
index at a time as the pods of an Indexed Job would.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ferry.api.exportjob import ExportJobSpec
from ferry.cli.errors import CliError
from ferry.cli.files import RunFolder, committed_files, error_records
from ferry.cli.model import RunRef
from ferry.cli.s3 import Bucket
from ferry.contract.layout import KEY_PLAN
from ferry.contract.plan import plan_document
from ferry.reconcile.batches import plan_slices, retry_slices
from ferry.reconcile.jobspec import Owner, worker_plan
from tests.fixtures.services import S3Server
from tests.integration.conftest import get_json, list_keys, read_files, run_worker

pytestmark = pytest.mark.integration

JOB = "items"
RUN = "items.1"
UNREACHABLE_DB = "postgresql://ferry@127.0.0.1:1/none?connect_timeout=2"


@pytest.fixture
def dsn(pg_db: str) -> str:
    """A fresh `items` table of 400 rows for each test."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items SELECT g, 'old ' || g FROM generate_series(1, 400) g")
    return pg_db


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A prefix of its own per test (and parameter: a name cut at 60 characters is no
    longer unique, hence the digest), so the module's bucket is shared safely."""
    name = request.node.name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"folders-{digest}-" + "".join(c if c.isalnum() else "-" for c in name)[:50]


def job_spec(s3: S3Server, bucket: str, prefix: str, batches: int) -> ExportJobSpec:
    return ExportJobSpec.model_validate({
        "title": "Items",
        "source": {"type": "postgres", "connectionSecretRef": {"name": "db", "key": "dsn"},
                   "table": "items", "keyColumn": "id"},
        "output": {"s3": {"bucket": bucket, "prefix": prefix, "endpoint": s3.endpoint_url,
                          "region": s3.region, "forcePathStyle": True},
                   "format": "jsonl"},
        "batching": {"batches": batches},
    })


def run_batches(s3: S3Server, bucket: str, prefix: str, tmp_path: Path, *, uid: str | None,
                batches: int, dsn: str, failing: dict[int, str] | None = None,
                only: list[int] | None = None) -> dict[int, int]:
    """Run one run of ExportJob `items` (uid ``uid``; None: a worker from before uids)
    with ``batches`` batches into folder items.1, each completion index as its pod would;
    ``failing`` gives some indexes an unreachable database, ``only`` makes it a retry of
    those indexes. Returns the exit code per batch index."""
    spec = job_spec(s3, bucket, prefix, batches)
    slices = plan_slices(spec, batches, None, None)
    if only is not None:
        slices = retry_slices(slices, only)
    owner = Owner(name=JOB, namespace="team-a", uid=uid or "")
    plan = plan_document(worker_plan(owner, spec, RUN, slices,
                                     reuse_committed_since=dt.datetime.now(dt.UTC)))
    codes = {}
    for position, piece in enumerate(slices):
        database = (failing or {}).get(piece.index, dsn)
        result = run_worker(plan, database, s3, tmp_path,
                            extra_env={"JOB_COMPLETION_INDEX": str(position)})
        codes[piece.index] = result.code
    return codes


def folder_keys(s3: S3Server, bucket: str, prefix: str) -> list[str]:
    return list_keys(s3.client(), bucket, f"{prefix}/{JOB}/{RUN}/")


def manifests(s3: S3Server, bucket: str, prefix: str) -> dict[int, dict[str, Any]]:
    found = {}
    for key in folder_keys(s3, bucket, prefix):
        if "/_manifests/" in key:
            document = get_json(s3.client(), bucket, key)
            found[int(document["batch"])] = document
    return found


def exported_ids(s3: S3Server, bucket: str, documents: list[dict[str, Any]]) -> Counter[int]:
    ids: Counter[int] = Counter()
    for document in documents:
        _, lines = read_files(s3.client(), bucket, document["files"], "jsonl", "none")
        ids.update(json.loads(line)["id"] for line in lines)
    return ids


def table_ids(dsn: str) -> Counter[int]:
    with psycopg.connect(dsn) as conn:
        return Counter(r[0] for r in conn.execute("SELECT id FROM items").fetchall())


def change_table(dsn: str) -> None:
    """The recreated job exports different data: some rows gone, some new."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM items WHERE id <= 50")
        conn.execute("INSERT INTO items SELECT g, 'new ' || g FROM generate_series(1001, 1100) g")


def cli_folder(s3: S3Server, bucket: str, prefix: str, uid: str) -> RunFolder:
    """What `kubectl ferry download/errors` opens for run items.1 of the job with ``uid``."""
    return RunFolder(Bucket(s3.client(), bucket), f"{prefix}/{JOB}/{RUN}/",
                     f"s3://{bucket}/{prefix}/{JOB}/{RUN}", uid)


REF = RunRef(id=RUN, folder=RUN, entry=None)


@pytest.mark.parametrize("old_uid", ["uid-old-job", None], ids=["old-job", "pre-uid-worker"])
def test_a_recreated_job_with_fewer_batches_leaves_only_its_own_run_in_the_folder(
        dsn: str, s3: S3Server, s3_bucket: str, prefix: str, tmp_path: Path,
        old_uid: str | None) -> None:
    # The old job: 4 batches, batch 3 failing once (an error report) before it commits.
    assert run_batches(s3, s3_bucket, prefix, tmp_path, uid=old_uid, batches=4, dsn=dsn,
                       failing={3: UNREACHABLE_DB}) == {0: 0, 1: 0, 2: 0, 3: 75}
    assert run_batches(s3, s3_bucket, prefix, tmp_path, uid=old_uid, batches=4, dsn=dsn,
                       only=[3]) == {3: 0}
    old = manifests(s3, s3_bucket, prefix)
    assert sorted(old) == [0, 1, 2, 3]
    assert f"{prefix}/{JOB}/{RUN}/_errors/batch-3.jsonl" in folder_keys(s3, s3_bucket, prefix)

    # Deleted and created again (a new uid), over changed data, with 2 batches.
    change_table(dsn)
    assert run_batches(s3, s3_bucket, prefix, tmp_path, uid="uid-new-job", batches=2,
                       dsn=dsn) == {0: 0, 1: 0}

    new = manifests(s3, s3_bucket, prefix)
    assert sorted(new) == [0, 1]
    assert {(m["jobUid"], m["batchCount"]) for m in new.values()} == {("uid-new-job", 2)}
    files = sorted(f["key"] for m in new.values() for f in m["files"])
    assert folder_keys(s3, s3_bucket, prefix) == sorted(
        [f"{prefix}/{JOB}/{RUN}/_manifests/batch-{i}.json" for i in (0, 1)] + files +
        [f"{prefix}/{JOB}/{RUN}/{KEY_PLAN}"]), "the new job's key plan replaced the old one's"
    assert exported_ids(s3, s3_bucket, list(new.values())) == table_ids(dsn)

    folder = cli_folder(s3, s3_bucket, prefix, "uid-new-job")
    assert [f.key for f in committed_files(folder, REF, None)] == files
    assert error_records(folder) == []


def test_a_batch_the_new_run_failed_shows_no_old_data_and_its_retry_completes_the_run(
        dsn: str, s3: S3Server, s3_bucket: str, prefix: str, tmp_path: Path) -> None:
    assert run_batches(s3, s3_bucket, prefix, tmp_path, uid="uid-old-job", batches=2,
                       dsn=dsn) == {0: 0, 1: 0}
    change_table(dsn)
    assert run_batches(s3, s3_bucket, prefix, tmp_path, uid="uid-new-job", batches=2, dsn=dsn,
                       failing={1: UNREACHABLE_DB}) == {0: 0, 1: 75}

    after_failure = manifests(s3, s3_bucket, prefix)
    assert sorted(after_failure) == [0]
    assert after_failure[0]["jobUid"] == "uid-new-job"
    folder = cli_folder(s3, s3_bucket, prefix, "uid-new-job")
    assert {f.batch for f in committed_files(folder, REF, None)} == {0}
    with pytest.raises(CliError) as raised:
        committed_files(folder, REF, 1)
    assert str(raised.value) == ("batch 1 of run items.1 has no manifest: it did not commit "
                                 "any files (see kubectl ferry errors ... --run)")
    records = error_records(folder)
    assert [(r["batch"], r["jobUid"], r["kind"]) for r in records] == \
        [(1, "uid-new-job", "transient")]

    # The retry of the same job writes batch 1 into the same folder and keeps batch 0.
    assert run_batches(s3, s3_bucket, prefix, tmp_path, uid="uid-new-job", batches=2, dsn=dsn,
                       only=[1]) == {1: 0}
    final = manifests(s3, s3_bucket, prefix)
    assert final[0] == after_failure[0]
    assert exported_ids(s3, s3_bucket, list(final.values())) == table_ids(dsn)
    assert len(error_records(folder)) == 1


def test_readers_skip_an_earlier_jobs_batches_before_the_workers_remove_them(
        dsn: str, s3: S3Server, s3_bucket: str, prefix: str, tmp_path: Path) -> None:
    """Batch 1 of the new run has committed, batch 0 (which removes indexes >= 2) has
    not started: download lists batch 1 only, not the old job's batches 0, 2 and 3."""
    assert run_batches(s3, s3_bucket, prefix, tmp_path, uid="uid-old-job", batches=4,
                       dsn=dsn) == {0: 0, 1: 0, 2: 0, 3: 0}
    spec = job_spec(s3, s3_bucket, prefix, 2)
    plan = plan_document(worker_plan(Owner(JOB, "team-a", "uid-new-job"), spec, RUN,
                                     plan_slices(spec, 2, None, None), dt.datetime.now(dt.UTC)))
    assert run_worker(plan, dsn, s3, tmp_path, extra_env={"JOB_COMPLETION_INDEX": "1"}).code == 0

    assert sorted(manifests(s3, s3_bucket, prefix)) == [0, 1, 2, 3]
    listed = committed_files(cli_folder(s3, s3_bucket, prefix, "uid-new-job"), REF, None)
    assert {f.batch for f in listed} == {1}
    assert {f.batch for f in committed_files(cli_folder(s3, s3_bucket, prefix, "uid-old-job"),
                                             REF, None)} == {0, 2, 3}


def test_an_earlier_jobs_run_marker_is_removed_before_the_new_run_commits(
        dsn: str, s3: S3Server, s3_bucket: str, prefix: str, tmp_path: Path) -> None:
    """A reader waits for _run.json: the old job's "complete" must not stand for the new
    run, which has not been sealed yet."""
    marker = f"{prefix}/{JOB}/{RUN}/_run.json"
    s3.client().put_object(Bucket=s3_bucket, Key=marker, Body=json.dumps(
        {"version": 1, "job": JOB, "jobUid": "uid-old-job", "run": RUN, "complete": True}))
    assert run_batches(s3, s3_bucket, prefix, tmp_path, uid="uid-new-job", batches=2,
                       dsn=dsn) == {0: 0, 1: 0}
    assert marker not in folder_keys(s3, s3_bucket, prefix)

    s3.client().put_object(Bucket=s3_bucket, Key=marker, Body=json.dumps(
        {"version": 1, "job": JOB, "jobUid": "uid-new-job", "run": RUN, "complete": False}))
    assert run_batches(s3, s3_bucket, prefix, tmp_path, uid="uid-new-job", batches=2,
                       dsn=dsn, only=[0]) == {0: 0}
    assert marker in folder_keys(s3, s3_bucket, prefix), "the job's own marker stays"
