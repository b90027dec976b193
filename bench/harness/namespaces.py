"""One namespace per measurement, and its removal.

Removal waits until the namespace is gone: deleting a thousand Jobs and their pods keeps
the API server and the garbage collector busy for a while, and the next measurement (the
floor right after the operator's run) must not share the cluster with that.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client
from kubernetes.client.rest import ApiException

from bench.harness import exportjobs
from bench.harness.report import log
from bench.harness.settings import Settings
from ferry.constants import FINALIZER, GROUP

LABELS = {f"{GROUP}/bench": "operator"}
GONE_TIMEOUT = 900.0
"""Seconds to wait for a deleted namespace to go before measuring on regardless."""


def create(name: str) -> str:
    """Create the namespace `name`, labelled as the benchmark's; return its name."""
    client.CoreV1Api().create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name, labels=LABELS)))
    return name


def remove(namespace: str, settings: Settings) -> None:
    """Clean up after a measurement unless --keep; a failure keeps the figures taken and
    says how to finish the cleanup."""
    if settings.keep:
        log(f"{namespace}: kept")
        return
    try:
        cleanup(namespace, settings.threads)
    except Exception as e:  # a 504 deleting 10,000 Jobs must not lose an hour's figures
        log(f"cleanup of {namespace} failed ({e!r}); finish it with --cleanup {namespace}")


def cleanup(namespace: str, threads: int) -> None:
    """Delete the namespace, drop the ExportJobs' finalizers (the operator is stopped, so
    nothing else would) and wait until the namespace is gone."""
    try:
        client.CoreV1Api().delete_namespace(namespace)
    except ApiException as e:
        if e.status != 404:
            raise
    names = [o["metadata"]["name"] for o in exportjobs.list_all(namespace)
             if FINALIZER in (o["metadata"].get("finalizers") or [])]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda name: exportjobs.unfinalize(namespace, name), names))
    # The namespace controller backs off when a DELETE was refused (e.g. while a delete
    # guard webhook was registered and unreachable): delete them once more now.
    exportjobs.delete_all(namespace)
    log(f"{namespace}: finalizers dropped from {len(names)} ExportJobs, namespace deleting")
    waited = wait_gone(namespace, GONE_TIMEOUT)
    if waited is None:
        log(f"{namespace}: still there after {GONE_TIMEOUT:.0f}s; going on")
    else:
        log(f"{namespace}: gone after {waited:.0f}s")


def wait_gone(namespace: str, timeout: float) -> float | None:
    """Seconds until the namespace was gone, None if it was not within `timeout`."""
    core = client.CoreV1Api()
    started = time.time()
    while time.time() < started + timeout:
        try:
            core.read_namespace(namespace)
        except ApiException as e:
            if e.status == 404:
                return time.time() - started
        time.sleep(2)
    return None
