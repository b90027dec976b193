"""The cluster under test: KUBECONFIG's when it is set, else the local one from
`hack.cluster`, started if it is down (a no-op when it runs).

The API server's 429 counter is read here too: it is the cluster's own witness of
throttling, beside what the operator logs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hack import cluster
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from ferry.constants import EXPORTJOB_PLURAL, GROUP

CRDS = Path(__file__).resolve().parents[2] / "crds"


def kubeconfig() -> str:
    """The kubeconfig the benchmark and its operator use."""
    return os.environ.get("KUBECONFIG", str(cluster.ADMIN_KUBECONFIG))


def kubectl(*args: str) -> str:
    """Run the pinned kubectl (any on PATH when it is not built) and return its stdout."""
    pinned = cluster.bin_dir() / "kubectl"
    binary = str(pinned) if pinned.exists() else "kubectl"
    return subprocess.run([binary, f"--kubeconfig={kubeconfig()}", *args], check=True,
                          capture_output=True, text=True).stdout


def connect(pool_size: int) -> None:
    """Make the default client talk to the cluster with `pool_size` connections (the
    urllib3 default of 4 would queue the 64 clients of the floor), with the CRDs applied."""
    if "KUBECONFIG" not in os.environ:
        cluster.up()
    config.load_kube_config(kubeconfig())
    try:
        client.ApiextensionsV1Api().read_custom_resource_definition(
            f"{EXPORTJOB_PLURAL}.{GROUP}")
    except ApiException as e:
        if e.status != 404:
            raise
        kubectl("apply", "--server-side", "-f", str(CRDS))
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = pool_size
    client.Configuration.set_default(cfg)


def apiserver_429s() -> int:
    """Sum of apiserver_request_total{code="429"}: cluster-wide, so on a shared cluster it
    also counts other clients."""
    total = 0.0
    for line in kubectl("get", "--raw", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{") and 'code="429"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)
