"""The operator's connection to the API server frozen, then cut (issue 8, scenario 14).

The operator reaches the API server only through a TCP relay the test controls:
``freeze`` black-holes every connection (open, nothing passes, nothing is closed: a
dropped NAT entry or a firewall that starts dropping packets), and the connections
frozen stay dead for good, as after a real network fault, while new ones pass again
after ``thaw``; ``cut`` closes every connection at once. The operator must notice by
itself (kopf's watch inactivity timeout, request deadlines), act on a run-now request
made after the fault, and its liveness endpoint must fail while it cannot reach the
API server and recover afterwards.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT
from tests.fixtures.services import S3Server

from .operator_fixtures import (
    OperatorProcess,
    Wiring,
    export_job,
    get,
    request,
    run_jobs,
    start_operator,
)
from .relay import Relay
from .support import Kubectl, wait_until
from .test_faults import assert_exactly_once

pytestmark = pytest.mark.timeout(600)  # a slow worker pod start on a loaded machine

INACTIVITY = 10.0
"""--watch-inactivity-timeout for this test (the default, 70 s, would make it slow)."""
UNHEALTHY_WITHIN = 20.0
"""The probe's 3 s API round trip + kopf's 10 s cache of a good result + slack."""
ACT_WITHIN = INACTIVITY + 20.0
"""From thaw to the operator creating the Job of a run-now request: the frozen watch's
inactivity timeout, a reconnect, and a reconcile (slack for the loaded machine)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def relay(operator_kubeconfig: str) -> Iterator[Relay]:
    running = Relay.to_server_of(operator_kubeconfig)
    yield running
    running.close()


@pytest.fixture(scope="module")
def health_url() -> str:
    return f"http://127.0.0.1:{free_port()}/healthz"


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: str, relay: Relay, namespace: str, health_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator with the chart's identity, talking to the API server via the relay."""
    directory = tmp_path_factory.mktemp("relayed")
    kubeconfig = relay.kubeconfig(operator_kubeconfig, directory / "kubeconfig")
    running = start_operator(str(kubeconfig), directory / "operator.log", namespace,
                             [f"--liveness={health_url}",
                              f"--watch-inactivity-timeout={INACTIVITY}"])
    yield running
    relay.thaw()
    relay.cut()
    if running.process.poll() is None:
        running.process.terminate()
        try:
            running.process.wait(20)
        except subprocess.TimeoutExpired:
            running.kill()


@pytest.fixture(scope="module")
def tiny_table(pg_db: str) -> list[int]:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions (id bigint PRIMARY KEY, "
                     "created_at timestamptz NOT NULL)")
        start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        for i in range(3):
            conn.execute("INSERT INTO interactions VALUES (%s, %s)",
                         (i, start + dt.timedelta(minutes=i)))
    return [0, 1, 2]


def health(url: str) -> int:
    """The liveness endpoint's HTTP status, as the kubelet would see it (5 s timeout)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def history(kubectl: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    status = get(kubectl, ns, f"exportjob/{name}").get("status") or {}
    return status.get("history") or []  # type: ignore[no-any-return]


def run_now(kubectl: Kubectl, ns: str, name: str, runs: int, act_within: float) -> float:
    """Request a run (through the admin's own connection, not the relay); return how
    long the operator took to act on it (its Job ``<name>-<runs>`` exists), which must
    be within ``act_within`` seconds, then wait for the run to end (the worker pod's
    start is slow on a loaded machine, and is not what this test measures)."""
    asked = time.monotonic()
    request(kubectl, ns, name, ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: kubectl("get", "job", f"{name}-{runs}", "-n", ns,
                               check=False).returncode == 0
               or len(history(kubectl, ns, name)) >= runs,
               timeout=act_within, what=f"the operator to start run {runs}")
    acted = time.monotonic() - asked
    wait_until(lambda: len(history(kubectl, ns, name)) >= runs, timeout=240,
               what=f"run {runs} to end")
    return acted


def test_frozen_then_cut_connection_recovers_by_itself_and_liveness_tells(
    kubectl: Kubectl, operator: OperatorProcess, relay: Relay, wiring: Wiring, s3: S3Server,
    tiny_table: list[int], health_url: str,
) -> None:
    ns, name = wiring.namespace, "relayed"
    wait_until(lambda: health(health_url) == 200, timeout=60, what="the operator to be live")
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(export_job(name, wiring, s3)))
    run_now(kubectl, ns, name, 1, act_within=60)

    relay.freeze()
    frozen_at = time.monotonic()
    wait_until(lambda: health(health_url) == 500, timeout=UNHEALTHY_WITHIN,
               what="liveness to fail while frozen")
    unhealthy_after = time.monotonic() - frozen_at
    # Frozen for longer than the watch inactivity timeout; liveness keeps failing.
    while time.monotonic() < frozen_at + INACTIVITY + 5:
        assert health(health_url) == 500
        time.sleep(1)

    relay.thaw()
    recovered = run_now(kubectl, ns, name, 2, act_within=ACT_WITHIN)
    assert health(health_url) == 200

    relay.cut()
    after_cut = run_now(kubectl, ns, name, 3, act_within=20)
    print(f"liveness failed {unhealthy_after:.1f}s into the freeze; a run requested after "
          f"the thaw started {recovered:.1f}s later, one after the cut {after_cut:.1f}s later")

    assert [h["id"] for h in history(kubectl, ns, name)] == [
        f"{name}.3", f"{name}.2", f"{name}.1"]
    assert {h["phase"] for h in history(kubectl, ns, name)} == {"Succeeded"}
    # One Job per run by name (<job>-<run>, created only if absent); a finished run's
    # Job is deleted when the next run starts, so only the last one is left.
    jobs = [j["metadata"]["name"] for j in run_jobs(kubectl, ns, name)]
    assert jobs == [f"{name}-3"]
    for run in (1, 2, 3):
        assert_exactly_once(s3, wiring.bucket, name, f"{name}.{run}", tiny_table)
    assert operator.process.poll() is None, "the operator exited instead of recovering"
