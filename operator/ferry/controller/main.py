"""Entry point of `ferry-operator`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging

import kopf

from ferry.controller import handlers
from ferry.controller.admission import NoWebhookServer


def webhook_server(options: argparse.Namespace) -> kopf.WebhookServerProtocol:
    """kopf's HTTPS server for the admission handlers, or none without --webhook-port."""
    if options.webhook_port is None:
        return NoWebhookServer()
    return kopf.WebhookServer(addr=options.webhook_host, port=options.webhook_port,
                              certfile=options.webhook_cert, pkeyfile=options.webhook_key)


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
    parser.add_argument("--stall-after", type=int, default=15, metavar="MINUTES",
                        help="a run whose progress has not moved for this long is reported "
                        "as condition Stalled=True, reason NoProgress (default 15)")
    webhook = parser.add_argument_group(
        "admission webhook", "validation, the delete guard and who-recording (docs/api.md); "
        "without --webhook-port no webhook is served")
    webhook.add_argument("--webhook-port", type=int, metavar="PORT",
                         help="serve the admission webhook over HTTPS on this port (e.g. 9443)")
    webhook.add_argument("--webhook-host", default="0.0.0.0", metavar="ADDR",
                         help="address to listen on (default: 0.0.0.0, all interfaces)")
    webhook.add_argument("--webhook-cert", metavar="FILE",
                         help="PEM serving certificate (chain); re-read when it changes")
    webhook.add_argument("--webhook-key", metavar="FILE", help="PEM private key of --webhook-cert")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    options = parser.parse_args(argv)
    if options.webhook_port is not None and not (options.webhook_cert and options.webhook_key):
        parser.error("--webhook-port needs --webhook-cert and --webhook-key (the API server "
                     "calls webhooks over HTTPS only)")
    if options.webhook_port is None and (options.webhook_cert or options.webhook_key):
        parser.error("--webhook-cert/--webhook-key need --webhook-port")
    logging.basicConfig(level=logging.DEBUG if options.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not options.verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    assert handlers.exportjob_changed  # registered with kopf on import
    settings = kopf.OperatorSettings()
    settings.admission.server = webhook_server(options)
    settings.admission.managed = None  # the chart owns the webhook configurations
    asyncio.run(kopf.operator(
        settings=settings,
        standalone=True,
        clusterwide=not options.namespace,
        namespaces=list(options.namespace),
        liveness_endpoint=options.liveness,
        memo=kopf.Memo(metrics_port=options.metrics_port,
                       stall_after=dt.timedelta(minutes=options.stall_after)),
    ))
    return 0
