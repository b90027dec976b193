"""Entry point of `ferry-operator`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import kopf

from ferry.controller import admission, handlers, health, metrics
from ferry.controller.admission import NoWebhookServer
from ferry.controller.kube import Kube, load_config
from ferry.controller.leader import LeaseElector, Timing

log = logging.getLogger("ferry.main")

API_ERROR_BACKOFFS = (1, 1, 2, 3, 5, 8, 13, 21, *[30] * 8)
"""Seconds between kopf's retries of a failed watch or list: about 5 min in all.
A restarting API server refuses connections, then answers 429/503 and, until its RBAC
cache is warm, 403 for a while. kopf restarts a watch after refused connections, but
escalates any other error once its retries run out, and a failed watcher stops kopf's
whole operator: with kopf's default (54 s in all), 75 s of 403s made the process exit
(status 1) once and, once, hang with no watch and no liveness endpoint
(tests/e2e/test_api_forbidden.py); the default also came within one retry of that in
the apiserver-restart fault test (docs/reliability.md, scenario 3). Past these ~5 min
the same happens, and the container's restart takes over."""


def webhook_server(options: argparse.Namespace) -> kopf.WebhookServerProtocol:
    """kopf's HTTPS server for the admission handlers, or none without --webhook-port."""
    if options.webhook_port is None:
        return NoWebhookServer()
    return kopf.WebhookServer(addr=options.webhook_host, port=options.webhook_port,
                              certfile=options.webhook_cert, pkeyfile=options.webhook_key)


def standby_registry() -> kopf.OperatorRegistry:
    """What a standby replica runs of the operator: kopf's login and the admission
    handlers (stateless checks of one request), nothing that watches or acts. So every
    replica serves the webhook and is Ready, and the webhook Service never depends on
    which one leads. Built with kopf's public decorators only: the login is the one
    kopf's default registry falls back to with the `kubernetes` client installed."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    admission.register(registry)
    return registry


async def run_elected(options: argparse.Namespace,
                      operator: Callable[..., Coroutine[Any, Any, None]]) -> int:
    """Stand by (admission webhook and liveness only) until this replica holds the
    Lease, then run the whole operator while renewing it. A leader that cannot renew
    within the renew deadline exits at once (os._exit, as a crash would): a standby
    takes the Lease only after the lease duration, so by then this replica has stopped
    acting. A clean exit (SIGTERM) releases the Lease."""
    await load_config()
    elector = LeaseElector(
        kube=Kube(), namespace=options.leader_elect_namespace,
        name=options.leader_elect_lease_name, identity=options.leader_elect_identity,
        timing=Timing(options.leader_elect_lease_duration, options.leader_elect_renew_deadline,
                      options.leader_elect_retry_period))
    standby = asyncio.create_task(operator(registry=standby_registry()))
    acquiring = asyncio.create_task(elector.acquire())
    await asyncio.wait({standby, acquiring}, return_when=asyncio.FIRST_COMPLETED)
    if not acquiring.done():  # stopped (SIGTERM) while standing by
        acquiring.cancel()
        await elector.kube.close()
        standby.result()
        return 0
    standby.cancel()
    await asyncio.gather(standby, return_exceptions=True)
    running = asyncio.create_task(operator())
    holding = asyncio.create_task(elector.hold())
    await asyncio.wait({running, holding}, return_when=asyncio.FIRST_COMPLETED)
    if holding.done():
        log.critical("exiting: the Lease was not renewed in time, another replica may "
                     "take over")
        logging.shutdown()
        os._exit(1)
    holding.cancel()
    await elector.release()
    await elector.kube.close()
    running.result()
    return 0


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
    parser.add_argument("--watch-inactivity-timeout", type=float, default=70.0,
                        metavar="SECONDS",
                        help="reconnect a watch that delivered nothing (not even a bookmark, "
                        "which the API server sends about every minute) for this long "
                        "(default 70: kopf's, just above the bookmark interval)")
    election = parser.add_argument_group(
        "leader election", "with several replicas, only the holder of a coordination.k8s.io "
        "Lease acts; the others stand by (docs/operations.md, High availability)")
    election.add_argument("--leader-elect", action="store_true",
                          help="act only while holding the Lease")
    election.add_argument("--leader-elect-namespace", default=os.environ.get("POD_NAMESPACE"),
                          metavar="NAMESPACE",
                          help="namespace of the Lease (default: env POD_NAMESPACE)")
    election.add_argument("--leader-elect-lease-name", default="ferry-operator", metavar="NAME",
                          help="name of the Lease (default: ferry-operator)")
    election.add_argument("--leader-elect-identity", metavar="ID",
                          default=os.environ.get("POD_NAME")
                          or f"{socket.gethostname()}-{os.getpid()}",
                          help="this replica's name in the Lease (default: env POD_NAME, "
                          "else host-pid)")
    election.add_argument("--leader-elect-lease-duration", type=float, default=15.0,
                          metavar="SECONDS",
                          help="a standby takes the Lease when it has not been renewed for "
                          "this long (default 15)")
    election.add_argument("--leader-elect-renew-deadline", type=float, default=10.0,
                          metavar="SECONDS",
                          help="the leader exits when it could not renew for this long "
                          "(default 10; less than the lease duration)")
    election.add_argument("--leader-elect-retry-period", type=float, default=2.0,
                          metavar="SECONDS",
                          help="how often the leader renews and a standby looks (default 2)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    options = parser.parse_args(argv)
    if options.leader_elect and not options.leader_elect_namespace:
        parser.error("--leader-elect needs --leader-elect-namespace (or env POD_NAMESPACE)")
    try:
        Timing(options.leader_elect_lease_duration, options.leader_elect_renew_deadline,
               options.leader_elect_retry_period)
    except ValueError as e:
        parser.error(f"--leader-elect-*: {e}")
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
    assert health.api_server_reachable  # the liveness probe, registered on import
    settings = kopf.OperatorSettings()
    settings.admission.server = webhook_server(options)
    settings.admission.managed = None  # the chart owns the webhook configurations
    settings.watching.inactivity_timeout = options.watch_inactivity_timeout
    settings.networking.error_backoffs = API_ERROR_BACKOFFS
    operator = functools.partial(
        kopf.operator,
        settings=settings,
        standalone=True,
        clusterwide=not options.namespace,
        namespaces=list(options.namespace),
        liveness_endpoint=options.liveness,
        memo=kopf.Memo(stall_after=dt.timedelta(minutes=options.stall_after)),
    )
    if options.metrics_port:
        metrics.start(options.metrics_port, leading=not options.leader_elect)
    if options.leader_elect:
        return asyncio.run(run_elected(options, operator))
    asyncio.run(operator())
    return 0
