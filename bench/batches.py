"""Batches benchmark: what N batches split by key cost the database, hash vs key ranges.

Usage (``make bench-worker-batches``; ``make bench-worker`` runs it after the formats)::

    python -m bench.batches [--rows 3000000] [--parallelism 2]

Creates ``bench_keys_<rows>`` once in ``ferry_bench``: ``id`` bigint primary key (in
table order), ``k`` bigint with a b-tree index and skewed 90/10 (90 % of the rows hold
10 % of the key space), a timestamp and a 40-byte text. Then exports it as CSV with
``ferry-worker export`` (``totals: none``, so only the export reads the table):

* 1 batch;
* 16 batches as hash partitions of ``id`` (``keyPartition``: what the operator sent
  before key ranges, and still sends for a ``query`` source);
* 16 and 8 batches as key ranges of ``id`` (``keySplit``: the first batch samples and
  commits the plan, ferry.worker.keyranges);
* 8 batches as key ranges of the skewed ``k``.

Batches run ``--parallelism`` at a time, each its own process, as an Indexed Job's pods
would. For each case: wall seconds; the rows and heap blocks the database read from the
table (``pg_stat_user_tables.seq_tup_read + idx_tup_fetch`` and
``pg_statio_user_tables.heap_blks_read + heap_blks_hit``, deltas: they count only this
table, whatever else the shared server is doing); the PostgreSQL server's CPU seconds
(every process of the instance, so other agents' queries on a shared machine land in it
too: read it beside the load average printed); the rows of the smallest and largest
batch; and that the batches together hold every row exactly once (ids compared).
Results go to stdout and bench/results/worker-batches.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from hack import services

from bench.worker import DATABASE, VENV_BIN, machine

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "worker-batches.json"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BUCKET = "ferry-bench-batches"
"""Not bench.worker's bucket, which that benchmark empties when it starts."""


def ensure_table(admin_dsn: str, dsn: str, rows: int) -> str:
    """Create bench_keys_<rows> once."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (DATABASE,)).fetchone():
            conn.execute(f"CREATE DATABASE {DATABASE}")
    table = f"bench_keys_{rows}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if exists and exists[0]:
            return table
        print(f"creating {table} ...", flush=True)
        conn.execute(f"""CREATE UNLOGGED TABLE {table} (
            id bigint PRIMARY KEY, k bigint, ts timestamptz NOT NULL, note text NOT NULL)""")
        conn.execute(f"""
            INSERT INTO {table}
            SELECT g, CASE WHEN g % 10 < 9 THEN (g * 7919) % 100000
                           ELSE 100000 + (g * 7919) % 900000 END,
                   timestamptz '2025-01-01' + g * interval '1 second', md5(g::text) || 'pad!pad!'
            FROM generate_series(1, {rows}::bigint) g""")
        conn.execute(f"CREATE INDEX ON {table} (k)")
        conn.execute(f"VACUUM ANALYZE {table}")
    return table


def postgres_cpu_s(postmaster: int) -> float:
    """CPU seconds of the instance: the postmaster, its live children, and (through the
    postmaster's cutime/cstime) the children it has reaped."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def table_reads(dsn: str, table: str) -> tuple[int, int]:
    """(rows read, heap blocks accessed) of ``table`` so far."""
    time.sleep(1.5)  # backends flush their table counters at most once a second
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT coalesce(t.seq_tup_read, 0) + coalesce(t.idx_tup_fetch, 0), "
            "coalesce(s.heap_blks_read, 0) + coalesce(s.heap_blks_hit, 0) "
            "FROM pg_stat_user_tables t JOIN pg_statio_user_tables s USING (relid) "
            "WHERE t.relname = %s", (table,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def run_case(name: str, table: str, count: int, split: dict[str, Any] | None, mode: str,
             dsn: str, ep: Any, s3: Any, parallelism: int, postmaster: int) -> dict[str, Any]:
    run = f"{name.replace(' ', '-')}-{int(time.time())}"
    base = {"job": "bench", "run": run, "source": {"table": table}, "format": "csv",
            "columns": ["id", "k", "ts", "note"], "totals": "none", "batchCount": count,
            "jobUid": "bench-uid",
            "destination": {"bucket": BUCKET, "prefix": "batches", "endpoint": ep.s3_endpoint,
                            "region": ep.s3_region, "pathStyle": True}}
    env = {**os.environ, "FERRY_SOURCE_DSN": dsn, "FERRY_LOG_LEVEL": "WARNING",
           "AWS_ACCESS_KEY_ID": ep.s3_access_key, "AWS_SECRET_ACCESS_KEY": ep.s3_secret_key}

    def batch(index: int) -> None:
        plan = dict(base, batchIndex=index)
        if split is not None:
            plan[mode] = dict(split, index=index, count=count)
        proc = subprocess.run([str(VENV_BIN / "ferry-worker"), "export"],
                              env={**env, "FERRY_PLAN": json.dumps(plan)},
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} batch {index} failed: {proc.stderr[-1500:]}")

    rows_before, blocks_before = table_reads(dsn, table)
    cpu_before, started = postgres_cpu_s(postmaster), time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(parallelism) as pool:
        list(pool.map(batch, range(count)))
    wall = time.monotonic() - started
    cpu = postgres_cpu_s(postmaster) - cpu_before
    rows_after, blocks_after = table_reads(dsn, table)
    sizes, ids = batch_rows(s3, base, count)
    result = {"case": name, "batches": count, "split": mode if split else "none",
              "wall_s": round(wall, 2), "db_cpu_s": round(cpu, 2),
              "rows_read": rows_after - rows_before,
              "heap_blocks": blocks_after - blocks_before,
              "min_batch_rows": min(sizes), "max_batch_rows": max(sizes),
              "rows_exported": len(ids), "distinct_ids": len(set(ids)),
              "load_1m": round(os.getloadavg()[0], 1)}
    print(f"  {name:<24} {wall:7.2f} s  db {cpu:6.2f} cpu-s  read {result['rows_read']:>11,} "
          f"rows {result['heap_blocks']:>9,} blocks  batches {min(sizes):,}-{max(sizes):,} "
          f"rows  load {result['load_1m']}", flush=True)
    return result


def batch_rows(s3: Any, plan: dict[str, Any], count: int) -> tuple[list[int], list[str]]:
    """Rows of each committed batch and every exported id (the CSV's first field)."""
    sizes: list[int] = []
    ids: list[str] = []
    for index in range(count):
        key = f"batches/bench/{plan['run']}/_manifests/batch-{index}.json"
        manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        sizes.append(manifest["records"])
        for entry in manifest["files"]:
            body = s3.get_object(Bucket=BUCKET, Key=entry["key"])["Body"].read()
            ids.extend(line.split(b",", 1)[0].decode() for line in body.splitlines()[1:])
    return sizes, ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    ep = services.ensure_up()
    dsn = f"postgresql://{ep.pg_user}:{ep.pg_password}@{ep.pg_host}:{ep.pg_port}/{DATABASE}"
    table = ensure_table(ep.pg_dsn, dsn, args.rows)
    with psycopg.connect(dsn) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert backend is not None
    postmaster = int(Path(f"/proc/{backend[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])

    import boto3  # noqa: PLC0415 - only the benchmark needs a client here

    s3 = boto3.client("s3", endpoint_url=ep.s3_endpoint, aws_access_key_id=ep.s3_access_key,
                      aws_secret_access_key=ep.s3_secret_key, region_name=ep.s3_region)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    services.empty_bucket(s3, BUCKET)
    cases = [("1 batch", 1, None, "keySplit"),
             ("16 hash id", 16, {"column": "id"}, "keyPartition"),
             ("16 ranges id", 16, {"column": "id"}, "keySplit"),
             ("8 ranges id", 8, {"column": "id"}, "keySplit"),
             ("8 ranges skewed k", 8, {"column": "k"}, "keySplit")]
    print(f"{args.rows:,} rows, parallelism {args.parallelism}", flush=True)
    results = [run_case(name, table, count, split, mode, dsn, ep, s3, args.parallelism,
                        postmaster) for name, count, split, mode in cases]
    services.empty_bucket(s3, BUCKET)
    one = results[0]
    for result in results:
        result["db_cpu_ratio"] = round(result["db_cpu_s"] / one["db_cpu_s"], 2) if one[
            "db_cpu_s"] else None
        result["rows_read_ratio"] = round(result["rows_read"] / one["rows_read"], 2)
        if result["rows_exported"] != args.rows or result["distinct_ids"] != args.rows:
            print(f"{result['case']}: {result['rows_exported']} rows, {result['distinct_ids']} "
                  f"distinct, expected {args.rows} each", file=sys.stderr)
            return 1
    document = {"rows": args.rows, "parallelism": args.parallelism, "machine": machine(),
                "command": f"python -m bench.batches --rows {args.rows} "
                           f"--parallelism {args.parallelism}", "results": results}
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    print(f"every row exactly once in every case; wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
