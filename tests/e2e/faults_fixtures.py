"""Private, disposable servers for the fault suite: things it may stop and restart.

The main cluster, PostgreSQL and MinIO are shared with other suites (and other
engineers) and are never stopped. Scenarios that take a server down use their own:
a MinIO started here on a free port, or a second control plane (`hack/cluster.py`
with FERRY_CLUSTER_DIR / FERRY_CLUSTER_PORT_OFFSET) with its own operator.

A pytest killed with SIGKILL runs no teardown, and these servers run in their own
sessions, so they would outlive it (and the private cluster's fixed ports would stay
taken). Each fixture therefore records what it started under `.cache/faults/`, and
the first private server of a later session kills what sessions no longer alive left.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
import yaml
from hack import services

from tests.fixtures.services import S3Server

from .operator_fixtures import (
    OPERATOR_NAMESPACE,
    ROOT,
    OperatorProcess,
    _secret,
    helm_template,
    start_operator,
    write_operator_kubeconfig,
)
from .support import Kubectl, wait_until

CLUSTER_COMMAND = (sys.executable, "-m", "hack.cluster")
"""Run from ROOT (cwd), where `hack` is a package."""
PRIVATE_PORT_OFFSET = 200
STRAYS = ROOT / ".cache" / "faults" / "private-servers"
"""One JSON record per running set of private servers: the pytest that owns them and
each process with a marker (a path of its own) that its command line or environment
holds, so that a recycled pid is never mistaken for it."""
CLUSTER_COMPONENTS = ("node-agent", "kube-scheduler", "kube-controller-manager",
                      "kube-apiserver", "etcd")
"""Stop order: the node agent first, so that it stops its pods' processes."""


@dataclass(frozen=True)
class Stray:
    pid: int
    marker: str


def _proc(pid: int, what: str) -> str:
    try:
        return Path(f"/proc/{pid}/{what}").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def is_running(stray: Stray) -> bool:
    return any(stray.marker in _proc(stray.pid, what) for what in ("cmdline", "environ"))


def record_servers(name: str, processes: list[Stray]) -> Path:
    """Write (or rewrite) this session's record of one set of private servers."""
    STRAYS.mkdir(parents=True, exist_ok=True)
    path = STRAYS / f"{os.getpid()}-{name}.json"
    path.write_text(json.dumps({"owner": os.getpid(),
                                "processes": [asdict(p) for p in processes]}))
    return path


def _terminate(stray: Stray, grace: float = 10.0) -> None:
    """SIGTERM to the process group (each server leads its own), then SIGKILL. Gone
    means no longer running as itself: a zombie nobody reaps has an empty cmdline."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(stray.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and is_running(stray):
            time.sleep(0.1)
        if is_running(stray):
            os.killpg(stray.pid, signal.SIGKILL)


def sweep_strays() -> list[str]:
    """Kill the private servers of sessions that are gone; returns what was killed.
    Records of live sessions (another suite running beside this one) are left alone."""
    swept: list[str] = []
    for path in sorted(STRAYS.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if "pytest" in _proc(int(record["owner"]), "cmdline"):
            continue
        for stray in (Stray(**p) for p in record["processes"]):
            if is_running(stray):
                _terminate(stray)
                swept.append(f"pid {stray.pid} ({stray.marker})")
        path.unlink(missing_ok=True)
    if swept:
        warnings.warn(f"killed private servers an earlier, killed test session left "
                      f"running: {', '.join(swept)}", stacklevel=2)
    return swept


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
    env: dict[str, str] = field(default_factory=dict)
    """Extra MinIO settings, e.g. MINIO_API_STALE_UPLOADS_EXPIRY."""

    @property
    def server(self) -> S3Server:
        return S3Server(endpoint_url=f"http://127.0.0.1:{self.port}", access_key=self.access_key,
                        secret_key=self.secret_key, region="us-east-1", backend="minio")

    def start(self) -> None:
        env = {**os.environ, "MINIO_ROOT_USER": self.access_key,
               "MINIO_ROOT_PASSWORD": self.secret_key, "MINIO_BROWSER": "off",
               "MINIO_UPDATE": "off", "MINIO_REGION": "us-east-1", **self.env}
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
        record_servers(f"minio-{self.port}", [Stray(self.process.pid, str(self.data))])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None


@contextlib.contextmanager
def running_private_minio(tmp_path_factory: pytest.TempPathFactory,
                          env: dict[str, str] | None = None) -> Iterator[PrivateMinio]:
    """A private MinIO on a free port and a fresh data directory, stopped on exit."""
    binary = services.minio_binary()
    if not binary.exists():
        pytest.skip(f"MinIO is not built ({binary}): run `make minio`")
    sweep_strays()
    base = tmp_path_factory.mktemp("private-minio")
    server = PrivateMinio(binary=binary, data=base / "data", port=free_port(),
                          access_key="fault-" + secrets.token_hex(4),
                          secret_key="faultsecret-" + secrets.token_hex(12),
                          log=base / "minio.log", env=env or {})
    server.data.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        (STRAYS / f"{os.getpid()}-minio-{server.port}.json").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def private_minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMinio]:
    with running_private_minio(tmp_path_factory) as server:
        yield server


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
        return subprocess.run([*CLUSTER_COMMAND, command], env=self.env, cwd=ROOT,
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
        record_cluster(self.directory, self.operator)


def record_cluster(directory: Path, operator: OperatorProcess | None) -> Path:
    """The private cluster's components (as its pid files name them) and operator (its
    marker: the kubeconfig in its environment)."""
    pids = {c: directory / "pids" / f"{c}.pid" for c in CLUSTER_COMPONENTS}
    processes = [Stray(int(f.read_text()), str(directory)) for f in pids.values() if f.exists()]
    if operator is not None:
        processes.insert(1, Stray(operator.process.pid,
                                  str(directory.parent / "operator.kubeconfig")))
    return record_servers("cluster", processes)


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
    sweep_strays()
    directory = tmp_path_factory.mktemp("private-cluster") / "c"
    env = {**os.environ, "FERRY_CLUSTER_DIR": str(directory),
           "FERRY_CLUSTER_PORT_OFFSET": str(PRIVATE_PORT_OFFSET)}
    up = subprocess.run([*CLUSTER_COMMAND, "up"], env=env, cwd=ROOT, text=True,
                        capture_output=True, timeout=300, check=False)
    operator: OperatorProcess | None = None
    record = record_cluster(directory, None)
    try:
        assert up.returncode == 0, up.stderr
        kubectl = _private_kubectl(kubectl_binary, str(directory / "admin.kubeconfig"))
        kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl("wait", "--for=condition=Established", "crd/exportjobs.ferry.dev",
                "--timeout=60s")
        operator_kubeconfig = write_operator_kubeconfig(
            kubectl, directory.parent / "operator.kubeconfig")
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
        record_cluster(directory, operator)
        yield PrivateCluster(directory=directory, env=env, kubectl=kubectl,
                             namespace=namespace, operator=operator,
                             operator_kubeconfig=str(operator_kubeconfig))
    finally:
        if operator is not None and operator.process.poll() is None:
            operator.kill()
        subprocess.run([*CLUSTER_COMMAND, "down"], env=env, cwd=ROOT, text=True,
                       capture_output=True, timeout=300, check=False)
        record.unlink(missing_ok=True)
