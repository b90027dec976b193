"""The e2e suite's cluster: the local control plane, or the one KUBECONFIG points at.

When KUBECONFIG is set the suite uses that cluster as it is (a kind cluster where
Docker exists); otherwise it brings the local control plane up once per test run
(`hack/cluster.py up` is a no-op when it is already running) and leaves it running
so that the next run starts in seconds.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hack import cluster
from kubernetes import client, config

from .operator_fixtures import crds, operator, operator_kubeconfig, wiring
from .support import Kubectl, wait_until

pytestmark = pytest.mark.e2e
__all__ = ["crds", "operator", "operator_kubeconfig", "wiring"]


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    external = os.environ.get("KUBECONFIG")
    if external:
        return external
    cluster.up()
    return str(cluster.ADMIN_KUBECONFIG)


@pytest.fixture(scope="session")
def kubectl_binary() -> str:
    built = cluster.bin_dir() / "kubectl"
    if built.exists():
        return str(built)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("no kubectl: run `make k8s` or put kubectl on PATH")
    return found


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str, kubectl_binary: str) -> Kubectl:
    def run(
        *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [kubectl_binary, f"--kubeconfig={kubeconfig}", *args],
            input=input, capture_output=True, text=True, timeout=120, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def api_client(kubeconfig: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="module")
def namespace(request: pytest.FixtureRequest, kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace per test module, deleted (without waiting) afterwards."""
    module = Path(str(request.node.path)).stem.removeprefix("test_").replace("_", "-")
    name = f"t-{module[:40]}-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    # `kubectl wait` fails at once on an object that does not exist yet, and the
    # ServiceAccount controller creates `default` a moment after the namespace.
    wait_until(lambda: kubectl("get", "serviceaccount", "default", "-n", name,
                               check=False).returncode == 0,
               timeout=60, what=f"serviceaccount default in {name}", interval=0.2)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def node_pod_logs() -> Callable[[str, str, str], str]:
    """The log of a pod's container as the local node agent kept it."""

    def read(namespace: str, pod: str, container: str) -> str:
        path = cluster.STATE / "pods" / f"{namespace}_{pod}" / f"{container}.log"
        return path.read_text() if path.exists() else ""

    return read
