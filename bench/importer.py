"""Import benchmark: ``ferry-worker import`` vs psql \\copy, a hand-written merge, Sling, pandas.

Usage (``make bench-import``)::

    python -m bench.importer [--rows 5000000] [--rss-rows 1000000] [--repeat 1]
                             [--skip-baselines] [--output bench/results/import.json]

The source rows are bench.worker's table ``bench_<rows>`` (12 columns, generated once in
the database ``ferry_bench``). psql writes it as one CSV file with a header to local disk,
which is uploaded to the bucket as it is (the file every CSV run reads); the Parquet and
JSON Lines files are the export worker's (``ferry-worker export``), read through
``fromExport`` as an ImportJob of an export's run would. Every run loads into
``import_target``: the source's columns, a primary key on ``id`` and one secondary index
on ``account_id``, a logged table as a user's would be. Before each run (not timed) the
table is truncated; for a merge it is then filled with the even ids, so the file's rows
are half updates and half new rows, spread over the whole file.

Timed like bench.worker (its ``timed``: a separate process under ``/usr/bin/time``, wall
seconds, CPU seconds, peak RSS of the largest process). The baselines, all from the same
CSV: ``psql \\copy FROM`` the local file (the ceiling: no network, no S3), the DBA's
merge (``\\copy`` into a temporary table, then ``INSERT ... ON CONFLICT DO UPDATE``, in
one transaction), Sling (file in S3 to PostgreSQL, mode truncate) and pandas
(bench/pandas_import.py: ``read_csv`` in chunks, ``to_sql``). psql and ferry runs repeat
``--repeat`` times in interleaved rounds and keep their fastest; pandas and Sling run
once. ``ratio_to_psql`` is rows/s against psql's append; ``ratio_to_baseline`` (merges)
against the hand-written merge. With ``--rss-rows`` the ferry runs repeat on a smaller
table to show that the worker's memory does not grow with the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from hack import services

from bench.worker import (
    BUCKET,
    DATABASE,
    VENV_BIN,
    RunFailedError,
    ensure_table,
    ferry_cmd,
    machine,
    sling_binary,
    timed,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "import.json"
PREFIX = "import"

FERRY_RUNS = [
    # name, format, mode
    ("ferry csv append", "csv", "Append"),
    ("ferry parquet append", "parquet", "Append"),
    ("ferry jsonl append", "jsonl", "Append"),
    ("ferry csv merge", "csv", "Merge"),
    ("ferry parquet merge", "parquet", "Merge"),
]


@dataclasses.dataclass
class Run:
    """One timed import: what bench/results/import.json lists under ``results``."""

    name: str
    format: str
    mode: str
    rows: int
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    rows_per_s: float = 0.0
    ratio_to_psql: float = 0.0
    ratio_to_baseline: float | None = None


class Bench:
    """The services, the source files and the target table of one benchmark run."""

    def __init__(self, ep: services.Endpoints, workdir: Path, bucket: str, target: str) -> None:
        self.ep = ep
        self.workdir = workdir
        self.bucket = bucket
        self.target = target
        self.dsn = f"postgresql://{ep.pg_user}:{ep.pg_password}@{ep.pg_host}:{ep.pg_port}/{DATABASE}"
        self.env = {**os.environ, "PGPASSWORD": ep.pg_password}
        import boto3  # noqa: PLC0415 - only the benchmark needs a client here

        self.s3 = boto3.client("s3", endpoint_url=ep.s3_endpoint,
                               aws_access_key_id=ep.s3_access_key,
                               aws_secret_access_key=ep.s3_secret_key,
                               region_name=ep.s3_region)
        self.counter = 0

    def psql(self, *args: str) -> list[str]:
        return ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.ep.pg_host, "-p",
                str(self.ep.pg_port), "-U", self.ep.pg_user, DATABASE, *args]

    def sql(self, statement: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(statement)

    def prepare_files(self, table: str, rows: int) -> Path:
        """The local CSV (uploaded as the CSV runs' file) and the Parquet and JSON Lines
        exports of ``table``; returns the local CSV's path."""
        csv = self.workdir / f"{table}.csv"
        if not csv.exists():
            subprocess.run(self.psql("-c", f"\\copy {table} TO '{csv}' CSV HEADER"),
                           env=self.env, check=True)
        self.s3.upload_file(str(csv), self.bucket, f"{PREFIX}/{table}/csv/{table}.csv")
        for fmt in ("parquet", "jsonl"):
            cmd, ferry_env = ferry_cmd(table, fmt, "none", self.export_run(table, fmt), self.ep,
                                       bucket=self.bucket)
            subprocess.run(cmd, env={**self.env, **ferry_env, "FERRY_SOURCE_DSN": self.dsn},
                           check=True)
        print(f"files of {table}: {rows} rows, CSV {csv.stat().st_size / 1e6:.0f} MB",
              flush=True)
        return csv

    @staticmethod
    def export_run(table: str, fmt: str) -> str:
        return f"src-{table.replace('_', '-')}-{fmt}"

    def reset_target(self, source: str, mode: str) -> None:
        """Empty ``import_target`` (for a merge: then the even ids), written to disk."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass(%s)", (self.target,)).fetchone()
            if found and found[0] is not None and self.columns(self.target) != self.columns(source):
                conn.execute(f"DROP TABLE {self.target}")  # a baseline changed its shape
                found = None
            if not found or found[0] is None:
                conn.execute(f"CREATE TABLE {self.target} (LIKE {source})")
                conn.execute(f"ALTER TABLE {self.target} ADD PRIMARY KEY (id)")
                conn.execute(f"CREATE INDEX {self.target}_account ON {self.target} (account_id)")
        self.sql(f"TRUNCATE {self.target}")
        if mode == "Merge":
            self.sql(f"INSERT INTO {self.target} SELECT * FROM {source} WHERE id % 2 = 0")
        self.sql(f"VACUUM ANALYZE {self.target}")
        self.sql("CHECKPOINT")

    def check_loaded(self, name: str, source: str, rows: int) -> None:
        """Every run must leave the source's rows in the table (a benchmark of a load
        that loaded nothing would measure nothing)."""
        with psycopg.connect(self.dsn) as conn:
            check = "SELECT count(*), sum(score), max(email) FROM {}"
            row = conn.execute(check.format(self.target)).fetchone()
            want = conn.execute(check.format(source)).fetchone()
        if row != want or not row or row[0] != rows:
            raise RunFailedError(f"{name}: the table has {row}, the source {want}")

    def ferry(self, table: str, fmt: str, mode: str) -> tuple[list[str], dict[str, str]]:
        self.counter += 1
        source: dict[str, Any] = {"endpoint": self.ep.s3_endpoint,
                                  "region": self.ep.s3_region, "pathStyle": True}
        if fmt == "csv":
            source["s3"] = {"bucket": self.bucket, "prefix": f"{PREFIX}/{table}/csv"}
        else:
            source["fromExport"] = {"bucket": self.bucket, "prefix": "ferry",
                                    "runFolder": f"bench/{self.export_run(table, fmt)}"}
        plan: dict[str, Any] = {
            "job": "bench", "namespace": "bench", "run": f"bench.{os.getpid()}{self.counter}",
            "source": source, "format": fmt, "destination": {"table": self.target},
            "mode": mode, "errors": {"bucket": self.bucket, "prefix": "audit"},
        }
        if mode == "Merge":
            plan["keyColumns"] = ["id"]
        env = {**self.env, "FERRY_PLAN": json.dumps(plan), "FERRY_DESTINATION_DSN": self.dsn,
               "FERRY_LOG_LEVEL": "WARNING", "FERRY_MAX_ATTEMPTS": "1",
               "AWS_ACCESS_KEY_ID": self.ep.s3_access_key,
               "AWS_SECRET_ACCESS_KEY": self.ep.s3_secret_key}
        return [str(VENV_BIN / "ferry-worker"), "import"], env

    def hand_merge(self, csv: Path, columns: list[str]) -> list[str]:
        """The DBA's merge: a temporary table, ``\\copy``, ``INSERT ... ON CONFLICT``."""
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "id")
        script = self.workdir / "merge.sql"
        script.write_text(
            f"CREATE TEMPORARY TABLE stage (LIKE {self.target}) ON COMMIT DROP;\n"
            f"\\copy stage FROM '{csv}' CSV HEADER\n"
            f"INSERT INTO {self.target} SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET "
            f"{updates};\n")
        return self.psql("-1", "-f", str(script))

    def columns(self, table: str) -> list[str]:
        with psycopg.connect(self.dsn) as conn:
            return [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum", (table,)).fetchall()]

    def timed_run(self, name: str, fmt: str, mode: str, source: str, rows: int,
                  cmd: list[str], env: dict[str, str]) -> Run:
        self.reset_target(source, mode)
        result = timed(name, rows, cmd, env)
        self.check_loaded(name, source, rows)
        return Run(name, fmt, mode, rows, result.seconds, result.cpu_s, result.peak_rss_mb)


def sling_cmd(bench: Bench, table: str) -> tuple[list[str], dict[str, str]] | None:
    """Sling reading the CSV from the bucket into the table (mode truncate keeps the table,
    its key and index; full-refresh would recreate it from the file's inferred types)."""
    sling = sling_binary()
    if sling is None:
        return None
    ep = bench.ep
    env = {**bench.env, "SLING_DISABLE_TELEMETRY": "true", "SLING_LOADED_AT_COLUMN": "false",
           "BENCH_PG": f"{bench.dsn}?sslmode=disable",
           "BENCH_S3": json.dumps({"type": "s3", "bucket": bench.bucket, "endpoint": ep.s3_endpoint,
                                   "access_key_id": ep.s3_access_key,
                                   "secret_access_key": ep.s3_secret_key,
                                   "region": ep.s3_region})}
    return [sling, "run", "--src-conn", "BENCH_S3", "--src-stream",
            f"s3://{bench.bucket}/{PREFIX}/{table}/csv/{table}.csv", "--tgt-conn", "BENCH_PG",
            "--tgt-object", f"public.{bench.target}", "--mode", "truncate"], env


def run_all(bench: Bench, table: str, rows: int, repeat: int,
            baselines: bool, failures: list[str]) -> tuple[list[Run], dict[str, list[float]]]:
    """Every run on one table: psql and ferry in ``repeat`` interleaved rounds (fastest
    kept, highest RSS kept), then the baselines that run once."""
    csv = bench.prepare_files(table, rows)
    columns = bench.columns(table)
    rounds: dict[str, list[Run]] = {}
    psql_append = bench.psql("-c", f"\\copy {bench.target} FROM '{csv}' CSV HEADER")
    for n in range(repeat):
        print(f"{table}: round {n + 1} of {repeat}", flush=True)
        plan: list[tuple[str, str, str, list[str], dict[str, str]]] = [
            ("psql append", "csv", "Append", psql_append, bench.env),
            ("hand-written merge", "csv", "Merge", bench.hand_merge(csv, columns), bench.env)]
        plan += [(name, fmt, mode, *bench.ferry(table, fmt, mode))
                 for name, fmt, mode in FERRY_RUNS]
        for name, fmt, mode, cmd, env in plan:
            try:
                run = bench.timed_run(name, fmt, mode, table, rows, cmd, env)
            except RunFailedError as exc:
                failures.append(str(exc))
                print(f"  {name} failed: {str(exc)[:300]}", flush=True)
            else:
                rounds.setdefault(name, []).append(run)
    results = []
    for runs in rounds.values():
        best = min(runs, key=lambda r: r.seconds)
        best.peak_rss_mb = max(r.peak_rss_mb for r in runs)
        results.append(best)
    if baselines:
        pandas = [sys.executable, "-P", str(REPO / "bench" / "pandas_import.py"), "--bucket",
                  bench.bucket, "--key", f"{PREFIX}/{table}/csv/{table}.csv",
                  "--table", bench.target]
        pandas_env = {**bench.env, "BENCH_DSN": bench.dsn,
                      "BENCH_S3_ENDPOINT": bench.ep.s3_endpoint,
                      "BENCH_S3_REGION": bench.ep.s3_region,
                      "AWS_ACCESS_KEY_ID": bench.ep.s3_access_key,
                      "AWS_SECRET_ACCESS_KEY": bench.ep.s3_secret_key}
        sling = sling_cmd(bench, table)
        others: list[tuple[str, list[str], dict[str, str]]] = [("pandas to_sql", pandas,
                                                               pandas_env)]
        if sling is None:
            failures.append("sling: sling-linux-amd64 is not installed (make bench-import "
                            "installs the bench extra)")
        else:
            others.append(("sling", *sling))
        for name, cmd, env in others:
            try:
                results.append(bench.timed_run(name, "csv", "Append", table, rows, cmd, env))
            except RunFailedError as exc:
                failures.append(str(exc))
                print(f"  {name} failed: {str(exc)[:300]}", flush=True)
    return results, {name: [r.seconds for r in runs] for name, runs in rounds.items()}


def rate(results: list[Run], name: str) -> float | None:
    run = next((r for r in results if r.name == name), None)
    return run.rows / run.seconds if run else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rss-rows", type=int, default=1_000_000,
                        help="also run ferry on a table this big (0: skip)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of psql and ferry runs; each keeps its fastest")
    parser.add_argument("--skip-baselines", action="store_true",
                        help="no pandas, no Sling")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--bucket", default=f"{BUCKET}-import",
                        help="emptied before and after (not bench.worker's, which other "
                        "benchmarks empty)")
    parser.add_argument("--target", default="import_target",
                        help="the table every run loads (created, truncated)")
    args = parser.parse_args(argv)

    ep = services.ensure_up()
    admin = ep.pg_dsn
    dsn = f"postgresql://{ep.pg_user}:{ep.pg_password}@{ep.pg_host}:{ep.pg_port}/{DATABASE}"
    table = ensure_table(admin, dsn, args.rows)
    small = ensure_table(admin, dsn, args.rss_rows) if args.rss_rows else None
    load_start = os.getloadavg()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ferry-bench-import-") as tmp:
        bench = Bench(ep, Path(tmp), args.bucket, args.target)
        if bench.bucket not in [b["Name"] for b in bench.s3.list_buckets()["Buckets"]]:
            bench.s3.create_bucket(Bucket=bench.bucket)
        services.empty_bucket(bench.s3, bench.bucket)
        results, all_runs = run_all(bench, table, args.rows, args.repeat,
                                    not args.skip_baselines, failures)
        psql_rate = rate(results, "psql append")
        merge_rate = rate(results, "hand-written merge")
        for r in results:
            r.rows_per_s = round(r.rows / r.seconds)
            r.ratio_to_psql = round(r.rows_per_s / psql_rate, 3) if psql_rate else 0.0
            if r.mode == "Merge" and merge_rate:
                r.ratio_to_baseline = round(r.rows_per_s / merge_rate, 3)
        flatness: list[dict[str, Any]] = []
        small_results: list[Run] = []
        if small and small != table:
            small_results, _ = run_all(bench, small, args.rss_rows, args.repeat, False,
                                       failures)
            small_psql = rate(small_results, "psql append")
            small_merge = rate(small_results, "hand-written merge")
            for s in small_results:
                s.rows_per_s = round(s.rows / s.seconds)
                s.ratio_to_psql = round(s.rows_per_s / small_psql, 3) if small_psql else 0.0
                if s.mode == "Merge" and small_merge:
                    s.ratio_to_baseline = round(s.rows_per_s / small_merge, 3)
                big = next((r for r in results if r.name == s.name), None)
                if big and s.name.startswith("ferry"):
                    flatness.append({"name": s.name, f"peak_rss_mb_{args.rss_rows}": s.peak_rss_mb,
                                     f"peak_rss_mb_{args.rows}": big.peak_rss_mb,
                                     "ratio": round(big.peak_rss_mb / s.peak_rss_mb, 3)})
        services.empty_bucket(bench.s3, bench.bucket)
    print(f"\n{'name':<22} {'rows/s':>9} {'cpu-s':>7} {'RSS MB':>7} {'x psql':>7} {'x merge':>7}")
    for r in results:
        print(f"{r.name:<22} {r.rows_per_s:>9} {r.cpu_s:>7} {r.peak_rss_mb:>7} "
              f"{r.ratio_to_psql:>7} {r.ratio_to_baseline or '':>7}")
    for f in flatness:
        print(f"RSS flatness {f['name']}: {f['ratio']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "machine": machine(),
        "command": " ".join(["python", "-m", "bench.importer", *(sys.argv[1:] if argv is None
                                                                 else argv)]),
        "table": {"source": table, "target": bench.target, "rows": args.rows, "columns": 12,
                  "indexes": ["primary key (id)", "account_id"]},
        "repeat": args.repeat,
        "load_average_1m": {"start": round(load_start[0], 2),
                            "end": round(os.getloadavg()[0], 2)},
        "all_runs": all_runs,
        "results": [dataclasses.asdict(r) for r in results],
        "rss_flatness": flatness,
        "results_rss_rows": [dataclasses.asdict(r) for r in small_results],
        "failed_baselines": failures,
    }, indent=2) + "\n")
    for failed in failures:
        print(f"not measured: {failed[:400]}")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    shutil.which("psql") or sys.exit("psql not found (apt-get install postgresql-client)")
    sys.exit(main())
