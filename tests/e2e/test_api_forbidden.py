"""The operator's permissions taken away for longer than kopf's own retries, then given
back: it recovers by itself (issue 8; the 403s of scenario 3, docs/reliability.md).

A restarting kube-apiserver drops every connection and then, until its RBAC cache is
warm, answers 403 for a while. kopf 1.45 retries a failed watch or list request after
each of ``settings.networking.error_backoffs`` (by default 1, 1, 2, 3, 5, 8, 13, 21 s:
54 s in all) and then escalates anything but a refused connection or a 429. A watcher
that escalates is not restarted: it stops kopf's whole operator. Run with kopf's
default backoffs, this test saw the process exit (status 1) once, and once stay alive
with no watch and its liveness endpoint gone, both about 55 s into the 403s. While the
403s last, the API server still answers GET /version, so the liveness probe
(docs/operations.md) stays green: the operator has to outlast the 403s by itself,
which is what ``API_ERROR_BACKOFFS`` (controller/main.py, ~5 min) is for.

The test reproduces that: the operator runs as a ServiceAccount of its own with the
chart's default (cluster-wide) RBAC under a release name of its own (not the shared
``ferry-operator`` identity, whose ClusterRoleBinding other test modules use at the same
time) and reaches the API server through a relay. The test deletes the operator's
bindings, cuts every connection as a restarting API server would (so kopf's watches
reconnect into 403s), keeps the permissions away for ``WINDOW`` (longer than kopf's
default retries, well within ``API_ERROR_BACKOFFS``), gives them back, and checks what
a user sees: the same process, live all along, acts on a run-now request made
afterwards, and the run succeeds with every row once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import kopf
import pytest
import yaml

from ferry.controller.main import API_ERROR_BACKOFFS
from tests.fixtures.services import S3Server

from .operator_fixtures import (
    OperatorProcess,
    Wiring,
    export_job,
    helm_template,
    run_jobs,
    start_operator,
)
from .relay import Relay
from .support import Kubectl, wait_until
from .test_faults import assert_exactly_once
from .test_watch_health import health, health_url, history, run_now, tiny_table

__all__ = ["health_url", "tiny_table"]

pytestmark = pytest.mark.timeout(900)


def kopf_default_backoffs() -> tuple[float, ...]:
    """kopf's own error_backoffs (1, 1, 2, 3, 5, 8, 13, 21 s in kopf 1.45): what the
    operator would retry with if main.py did not set ``API_ERROR_BACKOFFS``."""
    backoffs = kopf.OperatorSettings().networking.error_backoffs
    return tuple(backoffs) if isinstance(backoffs, Iterable) else (backoffs,)


KOPF_DEFAULT_RETRIES = sum(kopf_default_backoffs())
"""Seconds kopf retries a request by default before escalating (54 in kopf 1.45)."""
WINDOW = KOPF_DEFAULT_RETRIES + 21.0
"""How long the permissions stay away (75 s): past kopf's default retries by more than
the load on the test machine delays them, and far within ``API_ERROR_BACKOFFS``."""
ACT_WITHIN = max(API_ERROR_BACKOFFS) + 60.0
"""From the restore to the operator creating the Job of a run-now request: kopf's next
retry of the forbidden watch (at most the longest backoff), the watch resuming from its
resourceVersion, a reconcile, and slack for a loaded machine."""
FORBIDDEN = re.compile(r"^(\S+ \S+) ERROR \S+ Request attempt #(\d+)/\d+ failed; "
                       r"(?:will retry|escalating): GET ([^?\s]+)\S* -> APIForbiddenError",
                       re.MULTILINE)
"""kopf's log line for a request the API server refused with 403 (operator log format:
``%(asctime)s %(levelname)s %(name)s %(message)s``)."""
KOPF_FAILED = re.compile(r"^\S+ \S+ ERROR kopf\S* (.* has failed: .{0,120})", re.MULTILINE)
"""kopf's log line for one of its tasks (a watcher, the orchestrator) that failed."""


@dataclass(frozen=True)
class Identity:
    """The chart's operator ServiceAccount and RBAC for this test alone."""

    service_account: str
    namespace: str
    bindings: str
    """The RoleBindings and ClusterRoleBinding that grant the operator anything, as YAML."""
    kubeconfig: Path


def can_i(kubectl: Kubectl, identity: Identity, verb: str, resource: str) -> bool:
    """Whether the API server's authorizer now allows ``identity`` this request."""
    result = kubectl("auth", "can-i", verb, resource, "-n", identity.namespace,
                     f"--as=system:serviceaccount:{identity.namespace}:"
                     f"{identity.service_account}", check=False)
    return result.stdout.strip() == "yes"


def authorized(kubectl: Kubectl, identity: Identity) -> tuple[bool, bool]:
    """Can the operator watch its ExportJobs, and the CRDs kopf discovers them by?"""
    return (can_i(kubectl, identity, "watch", "exportjobs.ferry.dev"),
            can_i(kubectl, identity, "watch", "customresourcedefinitions.apiextensions.k8s.io"))


@pytest.fixture(scope="module")
def identity(crds: None, kubectl: Kubectl, namespace: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Identity]:
    """The chart's ServiceAccount and RBAC as installed by default (cluster-wide), under
    a release name of this test's namespace, so that nothing the test deletes is shared
    with another test; and a kubeconfig with a token of it.

    Not the chart's namespaced mode (watchNamespaces): its RBAC does not let kopf list
    namespaces, and kopf retries that list for all of ``API_ERROR_BACKOFFS`` before it
    falls back to the namespaces it was given, so the operator would act on nothing for
    its first ~5 min."""
    rendered = helm_template(
        "--namespace", namespace, "--set", f"fullnameOverride=ferry-{namespace}",
        "--show-only", "templates/serviceaccount.yaml",
        "--show-only", "templates/rbac-operator.yaml")
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kubectl("apply", "-f", "-", input=rendered)
    account = next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount")
    token = kubectl("create", "token", account, "-n", namespace,
                    "--duration=2h").stdout.strip()
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster_entry = admin["clusters"][0]
    path = tmp_path_factory.mktemp("forbidden-identity") / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster_entry],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster_entry["name"],
                                                      "user": account}}],
        "current-context": "operator",
    }))
    bindings = yaml.safe_dump_all(
        [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")])
    yield Identity(account, namespace, bindings, path)
    # The namespaced objects go with the test's namespace; the cluster-scoped ones not.
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"],
                    "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def relay(identity: Identity) -> Iterator[Relay]:
    running = Relay.to_server_of(str(identity.kubeconfig))
    yield running
    running.close()


@pytest.fixture(scope="module")
def operator(identity: Identity, relay: Relay, namespace: str, health_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator as this test's own ServiceAccount, talking to the API server through
    the relay, with its liveness endpoint."""
    directory = tmp_path_factory.mktemp("forbidden")
    kubeconfig = relay.kubeconfig(str(identity.kubeconfig), directory / "kubeconfig")
    running = start_operator(str(kubeconfig), directory / "operator.log", namespace,
                             [f"--liveness={health_url}"])
    yield running
    if running.process.poll() is None:
        running.process.terminate()
        try:
            running.process.wait(20)
        except subprocess.TimeoutExpired:
            running.kill()


@contextlib.contextmanager
def permissions_revoked(kubectl: Kubectl, identity: Identity) -> Iterator[None]:
    """The operator's bindings deleted until the block ends, then applied again; both
    waited on through the authorizer itself. Given back even when the block fails, so
    that the operator can release its finalizers at teardown."""
    kubectl("delete", "-f", "-", input=identity.bindings)
    try:
        wait_until(lambda: authorized(kubectl, identity) == (False, False), timeout=60,
                   what="the authorizer to refuse the operator")
        yield
    finally:
        kubectl("apply", "-f", "-", input=identity.bindings)
        wait_until(lambda: authorized(kubectl, identity) == (True, True), timeout=60,
                   what="the authorizer to allow the operator again")


@dataclass(frozen=True)
class Forbidden:
    """What kopf logged of the 403s: when the first came (epoch seconds), and for each
    API path the highest attempt that failed with 403."""

    first: float
    attempts: dict[str, int]


def forbidden(log: str) -> Forbidden | None:
    found = FORBIDDEN.findall(log)
    if not found:
        return None
    attempts: dict[str, int] = {}
    for _, attempt, url in found:
        path = url.split("/", 3)[-1]
        attempts[path] = max(attempts.get(path, 0), int(attempt))
    first = min(dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                for stamp, _, _ in found)
    return Forbidden(first, attempts)


def kopf_failures(operator: OperatorProcess) -> list[str]:
    """What kopf said failed, for an assertion message."""
    return KOPF_FAILED.findall(operator.logs())


def test_operator_outlasts_forbidden_api_and_recovers_by_itself(
    kubectl: Kubectl, operator: OperatorProcess, relay: Relay, identity: Identity,
    wiring: Wiring, s3: S3Server, tiny_table: list[int], health_url: str,
) -> None:
    ns, name = wiring.namespace, "forbidden"
    wait_until(lambda: health(health_url) == 200, timeout=60, what="the operator to be live")
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(export_job(name, wiring, s3)))
    run_now(kubectl, ns, name, 1, act_within=60)

    with permissions_revoked(kubectl, identity):
        log_before = len(operator.logs())
        relay.cut()  # as a restarting API server: every watch reconnects, into 403s
        cut_at = time.monotonic()
        liveness: list[int] = []
        while (elapsed := time.monotonic() - cut_at) < WINDOW:
            exited = operator.process.poll()
            assert exited is None, (f"the operator exited (status {exited}) {elapsed:.0f}s "
                                    f"into the 403s: {kopf_failures(operator)}")
            liveness.append(health(health_url))
            time.sleep(1)
        restoring_at = time.time()
        refused = forbidden(operator.logs()[log_before:])
    restored_after = time.monotonic() - cut_at

    # The fault reached kopf's watches, and lasted longer than kopf's default retries
    # (with which the 403 after the last backoff escalates).
    assert refused is not None, "kopf never got a 403: the fault did not reach its watches"
    assert restoring_at - refused.first > KOPF_DEFAULT_RETRIES, (
        f"403s for only {restoring_at - refused.first:.0f}s: {refused}")
    # The API server stays reachable, so liveness stays green (docs/operations.md):
    # no kubelet restart would rescue an operator that gave its watches up.
    assert set(liveness) == {200}, (f"liveness during the 403s (0: no answer): {liveness}; "
                                    f"{kopf_failures(operator)}")

    recovered = run_now(kubectl, ns, name, 2, act_within=ACT_WITHIN)
    assert not kopf_failures(operator)
    print(f"permissions away for {restored_after:.0f}s, kopf's 403s for "
          f"{restoring_at - refused.first:.0f}s until the restore (kopf's default retries: "
          f"{KOPF_DEFAULT_RETRIES:.0f}s); highest attempt refused per path: "
          f"{refused.attempts}; "
          f"{len(liveness)} liveness checks, all 200; a run requested after the restore "
          f"started {recovered:.1f}s later")

    assert [h["id"] for h in history(kubectl, ns, name)] == [f"{name}.2", f"{name}.1"]
    assert {h["phase"] for h in history(kubectl, ns, name)} == {"Succeeded"}
    jobs = [j["metadata"]["name"] for j in run_jobs(kubectl, ns, name)]
    assert jobs == [f"{name}-2"]
    for run in (1, 2):
        assert_exactly_once(s3, wiring.bucket, name, f"{name}.{run}", tiny_table)
    assert health(health_url) == 200
    assert operator.process.poll() is None, "the operator exited instead of recovering"
