"""Operator scale benchmark (`make bench-operator`): N ExportJobs due in the same minute.

`python -m bench.operator_scale [--jobs 1000,10000]`, from the repo root. For each size,
each in a namespace of its own that is removed before the next measurement starts:

1. `scenarios.slot_burst`: the operator's cold start with N ExportJobs, its idle cost,
   and due-to-Job latency when all N are due at once;
2. `scenarios.floor`: the same N Jobs created with no operator, by as many clients as it
   has workers: the cluster's own limit, measured in the same run so that the ratio
   compares minutes of the same machine (issue 21). Each result gains `floor_p99_s` and
   `ratio_p99` (the operator's p99 over the floor's).

`--floor` measures only the floor (results under "floor"), `--soak-minutes M` runs
`scenarios.soak` instead (under "soak"). Results: a table and the ratio on stdout and
bench/results/operator.json; the targets are printed, not enforced (a shared 2-core
machine makes any run noisy). The method is in BENCHMARKS.md, "Operator scale".
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench.harness import cluster, namespaces, report
from bench.harness.report import log
from bench.harness.settings import Settings
from bench.scenarios import floor, slot_burst, soak

RSS_TARGETS_MB = {1000: 250, 10000: 400}
"""Issue 21's sizes, and the peak RSS target at each."""
RATIO_TARGET = 1.2
"""Issue 21, at its sizes: due-to-Job p99 at most this many times the floor's p99."""
COLUMNS = ["jobs", "idle_rss_mb", "peak_rss_mb", "idle_cpu_percent", "peak_cpu_percent",
           "due_to_job_p50_s", "due_to_job_p99_s", "floor_p99_s", "ratio_p99", "http_429",
           "http_429_crd_reinit", "cold_start_s"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--jobs", default="1000,10000",
                        help="comma-separated sizes (default 1000,10000; e.g. 50 for a smoke run)")
    parser.add_argument("--threads", type=int, default=16, help="client threads for create/cleanup")
    parser.add_argument("--lead", type=float, default=0,
                        help="seconds from start to the slot (default 60 + 0.08 s per job)")
    parser.add_argument("--idle", type=float, default=20, help="idle sampling window, seconds")
    parser.add_argument("--timeout", type=float, default=240,
                        help="give up on Jobs this many seconds after the slot")
    parser.add_argument("--workers", type=int, default=0,
                        help="FERRY_RECONCILE_WORKERS for the operator (default: its default)")
    parser.add_argument("--metrics-port", type=int, default=18321)
    parser.add_argument("--keep", action="store_true", help="keep the namespace afterwards")
    parser.add_argument("--cleanup", metavar="NAMESPACE",
                        help="only clean up a namespace a stopped run left behind")
    parser.add_argument("--no-write", action="store_true", help="do not write operator.json")
    parser.add_argument("--floor", action="store_true",
                        help="only the floor: the Jobs created directly, no operator")
    parser.add_argument("--soak-minutes", type=float, default=0, metavar="M",
                        help="soak: --jobs N (one size) cycling for M minutes")
    parser.add_argument("--soak-every", type=int, default=1, metavar="K",
                        help="soak: each job runs every K minutes, job i at minutes = i mod K "
                             "(default 1: every job every minute)")
    return parser.parse_args(argv)


def with_floor(result: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """The operator's result with the floor of the same size beside it, and their ratio."""
    p99, floor_p99 = result.get("due_to_job_p99_s"), measured.get("start_to_job_p99_s")
    return {
        **result,
        "floor_clients": measured["clients"],
        "floor_jobs_created": measured.get("jobs_created"),
        "floor_p50_s": measured.get("start_to_job_p50_s"),
        "floor_p99_s": floor_p99,
        "floor_jobs_per_second": measured.get("jobs_per_second"),
        "ratio_p99": round(p99 / floor_p99, 2) if p99 and floor_p99 else None,
    }


def ratio_line(result: dict[str, Any]) -> str:
    return (f"{result['jobs']} ExportJobs: due->Job p99 {result['due_to_job_p99_s']} s, "
            f"floor p99 {result['floor_p99_s']} s ({result['floor_clients']} clients, "
            f"no operator): ratio {result['ratio_p99']}x (target at 1,000 and 10,000: "
            f"<= {RATIO_TARGET}x)")


def misses(result: dict[str, Any]) -> list[str]:
    """Issue 21's targets this result missed (printed, never the exit status): every
    Job and no 429 at any size, RSS and the ratio at the issue's sizes."""
    jobs, found = result["jobs"], []
    rss = RSS_TARGETS_MB.get(jobs)
    if rss is not None and result["peak_rss_mb"] >= rss:
        found.append(f"{jobs}: peak RSS {result['peak_rss_mb']} MB >= {rss}")
    if rss is not None and (result["ratio_p99"] is None or result["ratio_p99"] > RATIO_TARGET):
        found.append(f"{jobs}: p99 {result['ratio_p99']}x the floor > {RATIO_TARGET}x")
    if result["jobs_created"] < jobs:
        found.append(f"{jobs}: {result['jobs_created']} of {jobs} Jobs created")
    if result["http_429"]:
        found.append(f"{jobs}: {result['http_429']} HTTP 429s")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(threads=args.threads, lead=args.lead, idle=args.idle,
                        timeout=args.timeout, workers=args.workers,
                        metrics_port=args.metrics_port, keep=args.keep,
                        soak_minutes=args.soak_minutes, soak_every=args.soak_every)
    cluster.connect(pool_size=max(args.threads * 2, settings.clients, 8))
    if args.cleanup:
        namespaces.cleanup(args.cleanup, args.threads)
        return 0

    sizes = [int(j) for j in args.jobs.split(",")]
    if args.soak_minutes:
        result = soak.run(sizes[0], settings)
        print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
        if not args.no_write:
            report.write_results("soak", result)
        return 0
    if args.floor:
        floors = [floor.run(jobs, settings) for jobs in sizes]
        if not args.no_write:
            report.write_results("floor", floors)
        return 0
    results = []
    for jobs in sizes:
        burst = slot_burst.run(jobs, settings)
        results.append(with_floor(burst, floor.run(jobs, settings)))
        log(ratio_line(results[-1]))
        if not args.no_write:
            report.write_results("results", results)

    report.print_table(results, COLUMNS)
    for result in results:
        print(ratio_line(result))
        missed = misses(result)
        for miss in missed:
            print(f"target missed: {miss}")
        if not missed:
            print(f"{result['jobs']}: no target missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
