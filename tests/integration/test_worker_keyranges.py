"""Batches split by keySplit: one committed key plan per run, every row exactly once."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ferry.contract.plan import KeySplit
from ferry.worker import keyranges
from ferry.worker.plan import load_plan
from tests.fixtures.services import S3Server
from tests.integration.conftest import PlanFactory, get_json, manifest_key, read_files, run_worker

pytestmark = pytest.mark.integration

ROWS = 300_000


@pytest.fixture(scope="module")
def dsn(pg_db: str) -> str:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        # 90% of the rows hold 0.1% of the key space, 1% have no key; ids in table order.
        # A 200-byte note: 8,600 pages, so 8 batches sample 3,200 of them.
        conn.execute("CREATE TABLE skewed (id int PRIMARY KEY, k bigint, ts timestamptz, "
                     "note text)")
        conn.execute(f"""
            INSERT INTO skewed
            SELECT g, CASE WHEN g % 100 = 0 THEN NULL
                           WHEN g % 10 < 9 THEN (g::bigint * 7919) % 1000
                           ELSE 1000 + (g::bigint * 7919) % 999000 END,
                   timestamptz '2026-01-01' + g * interval '1 second', repeat('n', 200)
            FROM generate_series(1, {ROWS}) g""")
        conn.execute("CREATE INDEX ON skewed (k)")
        conn.execute("ANALYZE skewed")
        conn.execute("CREATE TABLE small (id int, name text)")
        conn.execute("INSERT INTO small SELECT g, 'n' || lpad(g::text, 4, '0') "
                     "FROM generate_series(1, 500) g")
        conn.execute("INSERT INTO small VALUES (501, NULL), (502, NULL)")
        conn.execute("CREATE VIEW small_view AS SELECT * FROM small")
        conn.execute("CREATE TABLE docs (id int, j json)")
        conn.execute("""INSERT INTO docs SELECT g, json_build_object('n', g)
                        FROM generate_series(1, 50) g""")
    return pg_db


def export_all(make_plan: PlanFactory, dsn: str, s3: S3Server, tmp_path: Path, count: int,
               column: str = "k", **fields: Any
               ) -> tuple[dict[str, Any], list[list[Any]], list[str]]:
    """Run batches 0..count-1 of one run; (a plan, rows per batch, status text per batch)."""
    run = f"{make_plan()['run'][:30]}-{uuid.uuid4().hex[:8]}"  # parameters share a name
    per_batch: list[list[Any]] = []
    shown: list[str] = []
    plan: dict[str, Any] = {}
    for index in range(count):
        plan = make_plan(run=run, format="csv", batchIndex=index, batchCount=count,
                         jobUid="uid-1", **fields,
                         keySplit={"column": column, "index": index, "count": count})
        result = run_worker(plan, dsn, s3, tmp_path)
        assert result.code == 0, result.raw_message
        shown.append(result.message["keyRange"])
        bucket = plan["destination"]["bucket"]
        manifest = get_json(s3.client(), bucket, manifest_key(plan, index))
        _, rows = read_files(s3.client(), bucket, manifest["files"], "csv", "none")
        per_batch.append(rows)
    return plan, per_batch, shown


def key_plan(s3: S3Server, plan: dict[str, Any]) -> dict[str, Any]:
    return get_json(s3.client(), plan["destination"]["bucket"],
                    f"exports/{plan['job']}/{plan['run']}/_keyranges.json")


def source_rows(dsn: str, query: str) -> list[list[Any]]:
    with psycopg.connect(dsn) as conn:
        return [["" if v is None else str(v) for v in row] for row in conn.execute(query)]


def normal(rows: list[list[Any]]) -> list[tuple[str, ...]]:
    return sorted(tuple("" if v is None else str(v) for v in row) for row in rows)


def test_skewed_keys_give_even_batches_read_from_a_sample(
        dsn: str, s3: S3Server, make_plan: PlanFactory, tmp_path: Path) -> None:
    plan, per_batch, shown = export_all(make_plan, dsn, s3, tmp_path, 8,
                                        source={"table": "skewed"}, columns=["id", "k"])
    exported = [row for rows in per_batch for row in rows]
    assert normal(exported) == normal(source_rows(dsn, "SELECT id, k FROM skewed"))
    assert len({row[0] for row in exported}) == ROWS
    sizes = [len(rows) for rows in per_batch]
    assert max(sizes) <= 1.25 * min(sizes), sizes
    committed = key_plan(s3, plan)
    assert committed["method"] == "ranges"
    assert committed["sample"].startswith("TABLESAMPLE SYSTEM")
    assert 50_000 < committed["sampledRows"] < ROWS
    bounds = committed["bounds"]
    assert len(bounds) == 7 and all(isinstance(b, int) for b in bounds)
    assert shown[0] == f"k < {bounds[0]}, and NULL k"
    assert shown[3] == f"{bounds[2]} <= k < {bounds[3]}"
    assert shown[7] == f"k >= {bounds[6]}"


def test_null_keys_text_keys_and_a_small_table_read_whole(
        dsn: str, s3: S3Server, make_plan: PlanFactory, tmp_path: Path) -> None:
    plan, per_batch, shown = export_all(make_plan, dsn, s3, tmp_path, 4, column="name",
                                        source={"table": "small"})
    assert normal([r for rows in per_batch for r in rows]) == normal(
        source_rows(dsn, "SELECT id, name FROM small"))
    assert [len(rows) for rows in per_batch] == [126, 125, 125, 126]
    assert key_plan(s3, plan)["bounds"] == ["n0125", "n0250", "n0375"]
    assert key_plan(s3, plan)["sample"] == "every row"
    assert shown[0] == "name < n0125, and NULL name"


def test_an_empty_window_plans_no_bounds_and_exports_nothing_twice(
        dsn: str, s3: S3Server, make_plan: PlanFactory, tmp_path: Path) -> None:
    window = {"column": "ts", "from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00Z"}
    plan, per_batch, shown = export_all(make_plan, dsn, s3, tmp_path, 3,
                                        source={"table": "skewed"}, window=window)
    assert per_batch == [[], [], []]
    assert key_plan(s3, plan)["bounds"] == []
    assert key_plan(s3, plan)["sample"] == "every row"
    assert shown[0] == "every k, and NULL k"
    assert shown[1].startswith("no keys")


def test_a_narrow_window_samples_more_until_it_has_rows(
        dsn: str, s3: S3Server, make_plan: PlanFactory, tmp_path: Path) -> None:
    window = {"column": "ts", "from": "2026-01-01T10:00:00Z", "to": "2026-01-01T14:00:00Z"}
    plan, per_batch, _ = export_all(make_plan, dsn, s3, tmp_path, 4,
                                    source={"table": "skewed"}, window=window, columns=["id"])
    expected = source_rows(dsn, "SELECT id FROM skewed WHERE ts >= '2026-01-01T10:00:00Z' "
                           "AND ts < '2026-01-01T14:00:00Z'")
    assert normal([r for rows in per_batch for r in rows]) == normal(expected)
    assert len(key_plan(s3, plan)["bounds"]) == 3


def test_every_batch_and_retry_reads_the_committed_plan(
        dsn: str, s3: S3Server, make_plan: PlanFactory, tmp_path: Path) -> None:
    """A plan already in the run folder is used as it is, not sampled again."""
    first = make_plan(source={"table": "small"}, jobUid="uid-1",
                      keySplit={"column": "id", "index": 0, "count": 3})
    body = {"version": 1, "jobUid": "uid-1", "column": "id", "count": 3, "method": "ranges",
            "bounds": [10, 20]}
    s3.client().put_object(Bucket=first["destination"]["bucket"],
                           Key=f"exports/items/{first['run']}/_keyranges.json",
                           Body=json.dumps(body).encode())
    counts = []
    for index in (0, 1, 2, 1):  # batch 1 twice: a retry
        plan = dict(first, batchIndex=index, batchCount=3,
                    keySplit={"column": "id", "index": index, "count": 3})
        result = run_worker(plan, dsn, s3, tmp_path)
        assert result.code == 0, result.raw_message
        counts.append((result.message["records"], result.message["keyRange"]))
    assert counts == [(9, "id < 10, and NULL id"), (10, "10 <= id < 20"),
                      (483, "id >= 20"), (10, "10 <= id < 20")]


def test_a_plan_for_another_split_is_refused(
        dsn: str, s3: S3Server, make_plan: PlanFactory, tmp_path: Path) -> None:
    plan = make_plan(source={"table": "small"}, jobUid="uid-1", batchCount=2,
                     keySplit={"column": "id", "index": 0, "count": 2})
    body = {"jobUid": "uid-1", "column": "id", "count": 3, "method": "ranges", "bounds": [1]}
    s3.client().put_object(Bucket=plan["destination"]["bucket"],
                           Key=f"exports/items/{plan['run']}/_keyranges.json",
                           Body=json.dumps(body).encode())
    result = run_worker(plan, dsn, s3, tmp_path)
    assert result.code != 0
    assert result.message["reason"] == (
        f"exports/items/{plan['run']}/_keyranges.json splits 'id' into 3 batches, this "
        "batch asks for 'id' into 2: the run's batches must share one split (run the job "
        "again for a new one)")


def test_an_earlier_jobs_plan_is_replaced(
        dsn: str, s3: S3Server, make_plan: PlanFactory, tmp_path: Path) -> None:
    plan = make_plan(source={"table": "small"}, jobUid="uid-2", batchCount=2,
                     keySplit={"column": "id", "index": 1, "count": 2})
    key = f"exports/items/{plan['run']}/_keyranges.json"
    s3.client().put_object(Bucket=plan["destination"]["bucket"], Key=key, Body=json.dumps(
        {"jobUid": "uid-1", "column": "id", "count": 2, "method": "ranges", "bounds": [2]}))
    result = run_worker(plan, dsn, s3, tmp_path)
    assert result.code == 0, result.raw_message
    assert result.message["keyRange"] == "id >= 251"
    assert key_plan(s3, plan)["jobUid"] == "uid-2"


@pytest.mark.parametrize(("source", "reason"), [
    ({"query": "SELECT * FROM small"}, "source.query has no table to sample"),
    ({"table": "small_view"}, "source.table is a view, which cannot be sampled"),
])
def test_no_range_falls_back_to_hash_partitions_for_the_whole_run(
        dsn: str, s3: S3Server, make_plan: PlanFactory, tmp_path: Path,
        source: dict[str, str], reason: str) -> None:
    plan, per_batch, shown = export_all(make_plan, dsn, s3, tmp_path, 3, column="id",
                                        source=source)
    assert normal([r for rows in per_batch for r in rows]) == normal(
        source_rows(dsn, "SELECT id, name FROM small"))
    assert key_plan(s3, plan)["method"] == "hash"
    assert shown[2] == f"hash(id) mod 3 = 2 (no key ranges: {reason})"


def test_a_key_without_a_sort_order_is_hashed(
        dsn: str, s3: S3Server, make_plan: PlanFactory, tmp_path: Path) -> None:
    _, per_batch, shown = export_all(make_plan, dsn, s3, tmp_path, 2, column="j",
                                     source={"table": "docs"}, columns=["id"])
    assert normal([r for rows in per_batch for r in rows]) == normal(
        source_rows(dsn, "SELECT id FROM docs"))
    assert shown[0] == ("hash(j) mod 2 = 0 (no key ranges: j has no sort order (could not "
                        "identify an ordering operator for type json))")


def test_two_batches_racing_to_commit_the_plan_both_use_the_winners(
        dsn: str, s3: S3Server, make_plan: PlanFactory, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """Both sample (held at a barrier until both have), both write if absent: one wins."""
    base = make_plan(source={"table": "skewed"}, jobUid="uid-1", batchCount=4,
                     keySplit={"column": "k", "index": 0, "count": 4})
    bucket = base["destination"]["bucket"]
    key = f"exports/items/{base['run']}/_keyranges.json"
    barrier = threading.Barrier(2, timeout=60)
    sample = keyranges.sample_plan

    def sample_then_wait(conn: Any, plan: Any) -> keyranges.KeyPlan:
        ours = sample(conn, plan)
        barrier.wait()
        # Each racer's own plan differs, so which one each returns is visible.
        return keyranges.KeyPlan(ours.column, ours.count, ours.method,
                                 (plan.key_split.index * 1000,), sample=ours.sample)

    monkeypatch.setattr(keyranges, "sample_plan", sample_then_wait)
    client = s3.client()

    def read() -> tuple[bytes, str] | None:
        try:
            response = client.get_object(Bucket=bucket, Key=key)
        except client.exceptions.NoSuchKey:
            return None
        return response["Body"].read(), response["ETag"]

    def create(body: bytes, tag: str | None) -> bool:
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        except client.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] == "PreconditionFailed"
            return False
        return True

    results: dict[int, keyranges.KeyPlan] = {}

    def racer(index: int) -> None:
        plan = load_plan({"FERRY_PLAN": json.dumps(dict(
            base, batchIndex=index, keySplit={"column": "k", "index": index, "count": 4}))})
        assert plan.key_split == KeySplit("k", index, 4)
        results[index] = keyranges.committed_plan(read, create, dsn, plan, f"racer {index}")

    threads = [threading.Thread(target=racer, args=(i,)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) == {1, 2}
    assert results[1].bounds == results[2].bounds
    winner = get_json(client, bucket, key)
    assert winner["bounds"] == list(results[1].bounds)
    assert winner["plannedBy"] == f"racer {int(results[1].bounds[0]) // 1000}"
