"""Entry point of `ferry-operator`."""

from __future__ import annotations

import argparse
import asyncio
import logging

import kopf

from ferry.controller import handlers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ferry-operator",
        description="Runs ExportJobs on schedule as batch/v1 Jobs and reports their progress.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch only this namespace (repeatable); default: all namespaces")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch all namespaces (the default)")
    parser.add_argument("--liveness", metavar="URL",
                        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve Prometheus metrics on this port (e.g. 8000)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if options.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not options.verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    assert handlers.exportjob_changed  # registered with kopf on import
    asyncio.run(kopf.operator(
        standalone=True,
        clusterwide=not options.namespace,
        namespaces=list(options.namespace),
        liveness_endpoint=options.liveness,
        memo=kopf.Memo(metrics_port=options.metrics_port),
    ))
    return 0
