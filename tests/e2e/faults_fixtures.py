"""Private, disposable servers for the fault suite: things it may stop and restart.

The main cluster, PostgreSQL and MinIO are shared with other suites (and other
engineers) and are never stopped. Scenarios that take a server down use their own:
a MinIO started here on a free port, or a second control plane (`hack/cluster.py`
with FERRY_CLUSTER_DIR / FERRY_CLUSTER_PORT_OFFSET) with its own operator.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.fixtures.services import S3Server, _load_services

from .operator_fixtures import (
    OPERATOR_NAMESPACE,
    ROOT,
    OperatorProcess,
    _secret,
    helm_template,
    start_operator,
)
from .support import Kubectl, wait_until

CLUSTER_SCRIPT = ROOT / "hack" / "cluster.py"
PRIVATE_PORT_OFFSET = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivateMinio:
    """A MinIO only this module uses: `stop()` and `start()` take it down and back."""

    binary: Path
    data: Path
    port: int
    access_key: str
    secret_key: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> S3Server:
        return S3Server(endpoint_url=f"http://127.0.0.1:{self.port}", access_key=self.access_key,
                        secret_key=self.secret_key, region="us-east-1", backend="minio")

    def start(self) -> None:
        env = {**os.environ, "MINIO_ROOT_USER": self.access_key,
               "MINIO_ROOT_PASSWORD": self.secret_key, "MINIO_BROWSER": "off",
               "MINIO_UPDATE": "off", "MINIO_REGION": "us-east-1"}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "server", "--quiet", "--address", f"127.0.0.1:{self.port}",
                 "--console-address", f"127.0.0.1:{free_port()}", str(self.data)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def live() -> bool:
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.port}/minio/health/live", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(live, timeout=60, what="the private MinIO to be live", interval=0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None


@pytest.fixture(scope="module")
def private_minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMinio]:
    binary = _load_services().minio_binary()
    if not binary.exists():
        pytest.skip(f"MinIO is not built ({binary}): run `make minio`")
    base = tmp_path_factory.mktemp("private-minio")
    server = PrivateMinio(binary=binary, data=base / "data", port=free_port(),
                          access_key="fault-" + secrets.token_hex(4),
                          secret_key="faultsecret-" + secrets.token_hex(12),
                          log=base / "minio.log")
    server.data.mkdir()
    server.start()
    yield server
    server.stop()


@dataclass
class PrivateCluster:
    """A second local control plane with its own operator, namespace and wiring."""

    directory: Path
    env: dict[str, str]
    kubectl: Kubectl
    namespace: str
    operator: OperatorProcess
    operator_kubeconfig: str

    def script(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(CLUSTER_SCRIPT), command], env=self.env,
                              text=True, capture_output=True, timeout=300, check=False)

    def apiserver_pid(self) -> int:
        return int((self.directory / "pids" / "kube-apiserver.pid").read_text())

    def stop_apiserver(self) -> None:
        """Stop only this cluster's kube-apiserver (SIGTERM to its process group)."""
        pid = self.apiserver_pid()
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        (self.directory / "pids" / "kube-apiserver.pid").unlink(missing_ok=True)

    def start_apiserver(self) -> None:
        """`cluster.py up` starts only the components that are not running."""
        result = self.script("up")
        assert result.returncode == 0, result.stderr


def _private_kubectl(binary: str, kubeconfig: str) -> Kubectl:
    def run(*args: str, input: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([binary, f"--kubeconfig={kubeconfig}", *args], input=input,
                                capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run  # type: ignore[return-value]


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory: pytest.TempPathFactory, kubectl_binary: str,
                    pg_db: str, s3: S3Server, s3_bucket: str) -> Iterator[PrivateCluster]:
    """Up in ~15 s; down (and wiped) at the end of the module."""
    if os.environ.get("KUBECONFIG"):
        pytest.skip("a private control plane needs the local cluster scripts")
    directory = tmp_path_factory.mktemp("private-cluster") / "c"
    env = {**os.environ, "FERRY_CLUSTER_DIR": str(directory),
           "FERRY_CLUSTER_PORT_OFFSET": str(PRIVATE_PORT_OFFSET)}
    up = subprocess.run([sys.executable, str(CLUSTER_SCRIPT), "up"], env=env, text=True,
                        capture_output=True, timeout=300, check=False)
    operator: OperatorProcess | None = None
    try:
        assert up.returncode == 0, up.stderr
        kubectl = _private_kubectl(kubectl_binary, str(directory / "admin.kubeconfig"))
        kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl("wait", "--for=condition=Established", "crd/exportjobs.ferry.dev",
                "--timeout=60s")
        kubectl("create", "namespace", OPERATOR_NAMESPACE)
        kubectl("apply", "-f", "-", input=helm_template(
            "--namespace", OPERATOR_NAMESPACE, "--show-only", "templates/serviceaccount.yaml",
            "--show-only", "templates/rbac-operator.yaml"))
        token = kubectl("create", "token", "ferry-operator", "-n", OPERATOR_NAMESPACE,
                        "--duration=24h").stdout.strip()
        admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
        entry = admin["clusters"][0]
        operator_kubeconfig = directory.parent / "operator.kubeconfig"
        operator_kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": [entry],
            "users": [{"name": "op", "user": {"token": token}}],
            "contexts": [{"name": "op", "context": {"cluster": entry["name"], "user": "op"}}],
            "current-context": "op"}))
        namespace = "faults"
        kubectl("create", "namespace", namespace)
        wait_until(lambda: kubectl("get", "sa/default", "-n", namespace,
                                   check=False).returncode == 0, what="the default SA")
        kubectl("apply", "-n", namespace, "-f", "-", input=helm_template(
            "--namespace", OPERATOR_NAMESPACE, "--show-only", "templates/worker.yaml",
            "--set", f"worker.namespaces={{{namespace}}}"))
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([
            _secret("warehouse-db", {"dsn": pg_db}),
            _secret("export-bucket", {"accessKeyId": s3.access_key,
                                      "secretAccessKey": s3.secret_key})]))
        operator = start_operator(str(operator_kubeconfig),
                                  directory.parent / "operator.log", namespace)
        yield PrivateCluster(directory=directory, env=env, kubectl=kubectl,
                             namespace=namespace, operator=operator,
                             operator_kubeconfig=str(operator_kubeconfig))
    finally:
        if operator is not None and operator.process.poll() is None:
            operator.kill()
        subprocess.run([sys.executable, str(CLUSTER_SCRIPT), "down"], env=env, text=True,
                       capture_output=True, timeout=300, check=False)
