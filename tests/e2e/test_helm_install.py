"""`helm install` of charts/ferry on the test cluster, as a user would run it.

Helm refuses a chart whose `kubeVersion` the cluster does not satisfy, so this fails
against Kubernetes binaries built without their version stamped (they report
v0.0.0-master+$Format:%H$; hack/build-kubernetes.sh stamps them). The release is
namespaced (`watchNamespaces` = its own namespace) with the webhook off, so the
operator it starts leaves every other test's namespace alone; its pod runs through
the local node agent with the chart's ServiceAccount and RBAC. It must reconcile an
ExportJob applied afterwards: proof that the installed chart works, not just renders.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from .support import Kubectl, wait_until
from .test_chart import CHART, kubernetes_version, tool

RELEASE = "ferry-it"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def helm_env(kubeconfig: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("helm")
    return {**os.environ, "KUBECONFIG": kubeconfig, "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}


def run_helm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("helm"), *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def release(helm_env: dict[str, str], namespace: str, crds: None) -> Iterator[str]:
    installed = run_helm(
        helm_env, "install", RELEASE, str(CHART), "--namespace", namespace,
        "--set", f"watchNamespaces={{{namespace}}}", "--set", f"worker.namespaces={{{namespace}}}",
        "--set", "webhook.enabled=false",
        "--set", f"operator.livenessProbe.port={free_port()}",
        "--set", f"metrics.port={free_port()}",
        "--wait", "--timeout", "180s")
    try:
        assert installed.returncode == 0, installed.stderr
        yield installed.stdout
    finally:
        run_helm(helm_env, "uninstall", RELEASE, "--namespace", namespace, "--wait",
                 "--timeout", "120s")


def test_the_cluster_reports_the_pinned_kubernetes_version(kubectl: Kubectl) -> None:
    server = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert server["gitVersion"] == f"v{kubernetes_version()}"


def test_helm_install_deploys_an_operator_that_reconciles(
    release: str, helm_env: dict[str, str], kubectl: Kubectl, namespace: str,
) -> None:
    assert "STATUS: deployed" in release
    status = json.loads(run_helm(helm_env, "status", RELEASE, "--namespace", namespace,
                                 "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    deployment = json.loads(kubectl("get", "deployment", "-n", namespace, "-o", "json").stdout)
    [operator] = deployment["items"]
    assert operator["status"].get("availableReplicas") == 1

    job = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob",
           "metadata": {"name": "installed", "namespace": namespace},
           "spec": {"title": "Reconciled by the installed chart",
                    "source": {"type": "postgres", "table": "orders",
                               "connectionSecretRef": {"name": "db", "key": "dsn"}},
                    "output": {"s3": {"bucket": "exports"}},
                    "schedule": {"daily": {"at": "02:00"}}}}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(job))
    seen = wait_until(
        lambda: (s := json.loads(kubectl("get", "exportjob", "installed", "-n", namespace,
                                         "-o", "json").stdout).get("status") or {})
        .get("observedGeneration") == 1 and s, what="the installed operator to reconcile",
        timeout=120)
    assert (seen["phase"], seen["scheduleSummary"]) == ("Scheduled", "daily at 02:00 UTC")
    kubectl("delete", "exportjob", "installed", "-n", namespace, "--timeout=60s")

