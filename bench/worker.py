"""Worker benchmark: ferry-worker vs psql \\copy, pandas and Sling on one table.

Usage (``make bench-worker``)::

    python -m bench.worker [--rows 5000000] [--rss-rows 1000000] [--repeat 3]
                           [--skip-baselines]

Starts the local services (hack.services), creates ``bench_<rows>`` (12 columns: int,
bigint, 2x text, 2x timestamptz, 2x numeric, 2x boolean, jsonb, int) once in the
database ``ferry_bench``, then times each exporter as a separate process under
``/usr/bin/time`` (wall seconds, CPU seconds of the exporter's own process, peak RSS of
the largest process). The bucket is emptied first, every run writes keys of its own
(nothing is replaced, so the S3 server has no deletes to do while another run is timed)
and dirty pages are written back before each run. psql and the ferry formats run
``--repeat`` times in interleaved rounds and keep their fastest time (and their highest
peak RSS): even with nothing else running, this VM's CPU speed drifts by up to ~50 %
from minute to minute (a fixed pure-Python loop took 1.8-2.7 s), so a single run
measures the host as much as the exporter. The slow baselines, pandas and Sling, run
once. ``rows_per_s`` is the figure that matters; ``mb_per_s`` is the table's CSV size
(what psql produced) divided by the time, so all rows are comparable; ``ratio_to_psql``
compares rows/s with the ``psql \\copy ... TO '/dev/null' CSV`` extraction limit.
``upload only`` uploads psql's CSV of the table from a local file with the worker's own
S3 writer (bench/upload_only.py): the ceiling the S3 server on this machine puts on any
exporter. With ``--rss-rows`` every ferry format also runs on a smaller table to show
that memory does not grow with table size.
``ferry csv sftp`` exports CSV to a private sshd on loopback (hack/sshd.py: Debian's
openssh-server, chroot, key authentication) and ``scp (csv file)`` copies psql's CSV of
the table to the same server with OpenSSH's scp: the ceiling the SSH server puts on any
exporter; ``sftp_vs_scp`` in the JSON is the ratio of the two (rows/s). Both are
skipped, with the reason, where sshd cannot run (not root, not installed).
Results go to stdout and bench/results/worker.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from hack import services, sshd

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "worker.json"
BUCKET = "ferry-bench"
DATABASE = "ferry_bench"
VENV_BIN = Path(sys.executable).parent

FERRY_RUNS = [
    ("ferry csv", "csv", "none"),
    ("ferry csv gzip", "csv", "gzip"),
    ("ferry csv zstd", "csv", "zstd"),
    ("ferry jsonl", "jsonl", "none"),
    ("ferry parquet", "parquet", "none"),
    ("ferry parquet zstd", "parquet", "zstd"),
]


@dataclasses.dataclass
class Result:
    """One timed run."""

    name: str
    rows: int
    seconds: float
    peak_rss_mb: float
    cpu_s: float = 0.0
    rows_per_s: float = 0.0
    mb_per_s: float = 0.0
    ratio_to_psql: float = 0.0


def ensure_table(admin_dsn: str, dsn: str, rows: int) -> str:
    """Create bench_<rows> once (generate_series; ~12 s per million rows here)."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (DATABASE,)).fetchone():
            conn.execute(f"CREATE DATABASE {DATABASE}")
    table = f"bench_{rows}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if exists and exists[0]:
            return table
        print(f"creating {table} ...", flush=True)
        conn.execute(f"""
            CREATE UNLOGGED TABLE {table} (
              id integer PRIMARY KEY, account_id bigint NOT NULL, name text NOT NULL,
              email text, created_at timestamptz NOT NULL, updated_at timestamptz,
              amount numeric(12,2) NOT NULL, balance numeric(20,6), active boolean NOT NULL,
              verified boolean, payload jsonb, score integer)""")
        conn.execute(f"""
            INSERT INTO {table}
            SELECT g, (g::bigint * 7919) % 100000007, 'name ' || md5(g::text),
              CASE WHEN g % 10 = 0 THEN NULL ELSE 'user' || g || '@example.com' END,
              timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
              CASE WHEN g % 7 = 0 THEN NULL
                   ELSE timestamptz '2024-06-01 00:00:00+00' + g * interval '3 seconds' END,
              (g % 100000) / 100.0, (g * 12.345678)::numeric(20,6), g % 2 = 0,
              CASE WHEN g % 5 = 0 THEN NULL ELSE g % 3 = 0 END,
              jsonb_build_object('k', g % 100, 'tags', jsonb_build_array('a', 'b'),
                                 's', 'x' || g),
              g % 1000
            FROM generate_series(1, {rows}) g""")
        conn.execute(f"VACUUM ANALYZE {table}")
    return table


class RunFailedError(Exception):
    """A timed command exited non-zero."""


def timed(name: str, rows: int, cmd: list[str], env: dict[str, str]) -> Result:
    """Run under /usr/bin/time; raise RunFailedError with the stderr tail on failure."""
    os.sync()  # the previous run's writeback (the S3 server's files) is not charged to this one
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        proc = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", out.name, *cmd],
                              env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RunFailedError(f"{name} failed ({proc.returncode}): {proc.stderr[-1500:]}")
        seconds, user, system, rss_kb = out.read().split()[-4:]
    result = Result(name, rows, float(seconds), round(int(rss_kb) / 1024, 1),
                    cpu_s=round(float(user) + float(system), 2))
    print(f"  {name:<22} {result.seconds:7.2f} s  {result.cpu_s:6.2f} cpu-s  "
          f"{result.peak_rss_mb:7.1f} MB  load {os.getloadavg()[0]:.1f}", flush=True)
    return result


def fastest(runs: list[Result]) -> Result:
    """The best of repeated runs (the one least disturbed by other load)."""
    return min(runs, key=lambda r: r.seconds)


def ferry_cmd(table: str, fmt: str, compression: str, run: str,
              s3: Any, bucket: str = BUCKET) -> tuple[list[str], dict[str, str]]:
    plan = {
        "job": "bench", "run": run, "source": {"table": table}, "format": fmt,
        "compression": compression,
        "destination": {"bucket": bucket, "prefix": "ferry", "endpoint": s3.s3_endpoint,
                        "region": s3.s3_region, "pathStyle": True},
    }
    env = {**os.environ, "FERRY_PLAN": json.dumps(plan), "FERRY_LOG_LEVEL": "WARNING",
           "AWS_ACCESS_KEY_ID": s3.s3_access_key, "AWS_SECRET_ACCESS_KEY": s3.s3_secret_key}
    return [str(VENV_BIN / "ferry-worker"), "export"], env


def ferry_sftp_cmd(table: str, run: str,
                   server: sshd.SftpServer) -> tuple[list[str], dict[str, str]]:
    """ferry-worker exporting CSV to the benchmark's sshd."""
    plan = {"job": "bench", "run": run, "source": {"table": table}, "format": "csv",
            "compression": "none",
            "destination": {"sftp": {"host": "127.0.0.1", "port": server.port,
                                     "directory": server.directory,
                                     "hostKey": server.host_key}}}
    env = {**os.environ, "FERRY_PLAN": json.dumps(plan), "FERRY_LOG_LEVEL": "WARNING",
           "FERRY_SFTP_USER": server.user, "FERRY_SFTP_PRIVATE_KEY": server.private_key}
    return [str(VENV_BIN / "ferry-worker"), "export"], env


def scp_cmd(local: str, remote: str, server: sshd.SftpServer) -> list[str]:
    """OpenSSH's scp of a local file to the benchmark's sshd, host key pinned."""
    known = server.folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{server.port} {server.host_key}\n")
    return ["scp", "-q", "-P", str(server.port), "-i", str(server.folder / "client_ed25519"),
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", local, f"{server.user}@127.0.0.1:{remote}"]


def sling_binary() -> str | None:
    """The binary shipped by the sling-linux-amd64 wheel (the wrapper would download)."""
    spec = importlib.util.find_spec("sling_linux_amd64")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "sling-linux-amd64"
    return str(path) if path.exists() else None


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    with psycopg.connect(services.endpoints().pg_dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1),
            "python": platform.python_version(),
            "postgresql": version[0] if version else "?",
            "s3": services.endpoints().s3_backend}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rss-rows", type=int, default=1_000_000,
                        help="also run the ferry formats on a table this big (0: skip)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of psql and ferry runs; each keeps its fastest")
    parser.add_argument("--skip-baselines", action="store_true",
                        help="only psql and ferry (no pandas, no Sling)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    ep = services.ensure_up()
    dsn = (f"postgresql://{ep.pg_user}:{ep.pg_password}@{ep.pg_host}:{ep.pg_port}/{DATABASE}")
    table = ensure_table(ep.pg_dsn, dsn, args.rows)
    small = ensure_table(ep.pg_dsn, dsn, args.rss_rows) if args.rss_rows else None

    import boto3  # noqa: PLC0415 - only the benchmark needs a client here

    s3 = boto3.client("s3", endpoint_url=ep.s3_endpoint, aws_access_key_id=ep.s3_access_key,
                      aws_secret_access_key=ep.s3_secret_key, region_name=ep.s3_region)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    services.empty_bucket(s3, BUCKET)  # so that no deferred delete lands in a timed run

    env = {**os.environ, "PGPASSWORD": ep.pg_password, "FERRY_SOURCE_DSN": dsn}
    results: list[Result] = []
    failures: list[str] = []
    print(f"table {table}: {args.rows} rows", flush=True)
    psql = ["psql", "-q", "-h", ep.pg_host, "-p", str(ep.pg_port), "-U", ep.pg_user, DATABASE,
            "-c", f"\\copy (SELECT * FROM {table}) TO '/dev/null' CSV"]
    load_start = os.getloadavg()
    rounds: dict[str, list[Result]] = {}
    server: sshd.SftpServer | None = None
    if sshd.available() is None:
        server = sshd.SftpServer("bench").prepare()
        server.start()
    else:
        failures.append(f"ferry csv sftp and scp: {sshd.available()}")
    with tempfile.NamedTemporaryFile(suffix=".csv") as sizing:
        subprocess.run(["psql", "-q", "-h", ep.pg_host, "-p", str(ep.pg_port), "-U", ep.pg_user,
                        DATABASE, "-c", f"\\copy (SELECT * FROM {table}) TO '{sizing.name}' CSV"],
                       env=env, check=True)
        csv_bytes = Path(sizing.name).stat().st_size
        upload = [sys.executable, "-P", str(REPO / "bench" / "upload_only.py"), sizing.name]
        upload_env = {**env, "BENCH_S3_ENDPOINT": ep.s3_endpoint, "BENCH_S3_REGION": ep.s3_region,
                      "BENCH_BUCKET": BUCKET, "AWS_ACCESS_KEY_ID": ep.s3_access_key,
                      "AWS_SECRET_ACCESS_KEY": ep.s3_secret_key}
        for n in range(args.repeat):
            print(f"round {n + 1} of {args.repeat}", flush=True)
            rounds.setdefault("psql csv", []).append(timed("psql csv", args.rows, psql, env))
            rounds.setdefault("upload only (csv file)", []).append(
                timed("upload only (csv file)", args.rows,
                      [*upload, f"upload-only/{table}-{n}.csv"], upload_env))
            for name, fmt, compression in FERRY_RUNS:
                cmd, ferry_env = ferry_cmd(table, fmt, compression, f"r{args.rows}-{n}", ep)
                rounds.setdefault(name, []).append(timed(name, args.rows, cmd,
                                                         {**env, **ferry_env}))
            if server is not None:
                rounds.setdefault("scp (csv file)", []).append(timed(
                    "scp (csv file)", args.rows,
                    scp_cmd(sizing.name, f"{server.directory}/scp-{n}.csv", server), env))
                cmd, ferry_env = ferry_sftp_cmd(table, f"r{args.rows}-{n}", server)
                rounds.setdefault("ferry csv sftp", []).append(timed(
                    "ferry csv sftp", args.rows, cmd, {**env, **ferry_env}))
                shutil.rmtree(server.upload / "bench", ignore_errors=True)  # GBs, not kept
                Path(server.upload / f"scp-{n}.csv").unlink(missing_ok=True)
    if server is not None:
        server.stop()
    for runs in rounds.values():
        best = fastest(runs)
        best.peak_rss_mb = max(r.peak_rss_mb for r in runs)  # memory: the worst round
        results.append(best)
    if not args.skip_baselines:
        pandas_script = str(REPO / "bench" / "pandas_export.py")
        for fmt in ("csv", "parquet"):
            cmd = [sys.executable, "-P", pandas_script, "--table", table, "--format", fmt,
                   "--bucket", BUCKET]
            try:
                results.append(timed(f"pandas {fmt}", args.rows, cmd, upload_env))
            except RunFailedError as exc:
                failures.append(str(exc))
        sling = sling_binary()
        if sling:
            sling_env = {
                **env, "SLING_DISABLE_TELEMETRY": "true",
                "BENCH_PG": f"{dsn}?sslmode=disable",
                "BENCH_S3": json.dumps({"type": "s3", "bucket": BUCKET,
                                        "endpoint": ep.s3_endpoint,
                                        "access_key_id": ep.s3_access_key,
                                        "secret_access_key": ep.s3_secret_key,
                                        "region": ep.s3_region}),
            }
            # Sling writes Parquet through a DuckDB binary it downloads at run time,
            # which cannot work offline, so only its CSV path is measured.
            cmd = [sling, "run", "--src-conn", "BENCH_PG", "--src-stream",
                   f"public.{table}", "--tgt-conn", "BENCH_S3", "--tgt-object",
                   f"s3://{BUCKET}/sling/{table}.csv"]
            try:
                results.append(timed("sling csv", args.rows, cmd, sling_env))
            except RunFailedError as exc:
                failures.append(str(exc))
        else:
            failures.append("sling: sling-linux-amd64 is not installed")
    rss_check: list[dict[str, Any]] = []
    if small:
        # As many rounds as on the big table, highest RSS of each: how full the upload
        # buffers get at the peak depends on the S3 server's pace, not the table's size.
        print(f"memory check on {small}:", flush=True)
        small_rss: dict[str, float] = {}
        for n in range(args.repeat):
            for name, fmt, compression in FERRY_RUNS:
                cmd, ferry_env = ferry_cmd(small, fmt, compression, f"r{args.rss_rows}-{n}", ep)
                small_run = timed(name, args.rss_rows, cmd, {**env, **ferry_env})
                small_rss[name] = max(small_rss.get(name, 0.0), small_run.peak_rss_mb)
        for name, small_peak in small_rss.items():
            big = next(r for r in results if r.name == name)
            rss_check.append({"name": name, f"peak_rss_mb_{args.rss_rows}": small_peak,
                              f"peak_rss_mb_{args.rows}": big.peak_rss_mb,
                              "ratio": round(big.peak_rss_mb / small_peak, 3)})

    psql_rate = results[0].rows / results[0].seconds
    for r in results:
        r.rows_per_s = round(r.rows / r.seconds)
        r.mb_per_s = round(csv_bytes / r.seconds / 1e6, 1)
        r.ratio_to_psql = round(r.rows_per_s / psql_rate, 3)
    print(f"\n{'name':<22} {'rows/s':>10} {'MB/s':>7} {'cpu-s':>7} {'RSS MB':>7} {'x psql':>7}")
    for r in results:
        print(f"{r.name:<22} {r.rows_per_s:>10} {r.mb_per_s:>7} {r.cpu_s:>7} {r.peak_rss_mb:>7} "
              f"{r.ratio_to_psql:>7}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "machine": machine(),
        "command": " ".join(["python", "-m", "bench.worker", *sys.argv[1:]]),
        "table": {"name": table, "rows": args.rows, "columns": 12, "csv_bytes": csv_bytes},
        "repeat": args.repeat,
        "load_average_1m": {"start": round(load_start[0], 2),
                            "end": round(os.getloadavg()[0], 2)},
        "all_runs": {name: [r.seconds for r in runs] for name, runs in rounds.items()},
        "results": [dataclasses.asdict(r) for r in results],
        "rss_flatness": rss_check,
        "sftp_vs_scp": _ratio(results, "ferry csv sftp", "scp (csv file)"),
        "failed_baselines": failures,
    }, indent=2) + "\n")
    services.empty_bucket(s3, BUCKET)  # gigabytes of results, not kept
    for failed in failures:
        print(f"baseline not measured: {failed[:300]}")
    print(f"\nwrote {args.output}")
    return 0


def _ratio(results: list[Result], name: str, ceiling: str) -> float | None:
    """rows/s of ``name`` over ``ceiling``'s (None where either was not measured)."""
    rates = {r.name: r.rows_per_s for r in results}
    if not rates.get(name) or not rates.get(ceiling):
        return None
    return round(rates[name] / rates[ceiling], 3)


if __name__ == "__main__":
    shutil.which("psql") or sys.exit("psql not found (apt-get install postgresql-client)")
    sys.exit(main())
