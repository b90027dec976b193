"""The chart installed with helm onto a real kubelet node, running the built images.

A second control plane (its own state directory and ports) runs with
`--node kubelet` (hack/realnode.py): containerd and runc run the pods, the CNI bridge
gives each an address on 10.88.0.0/24, kube-proxy's iptables rules implement Services.
`helm install` puts the operator into a namespace that enforces the `restricted` Pod
Security level, from the image `make images` built, with the chart's probes, read-only
root filesystem, non-root user and memory limit; the API server calls its admission
webhook through the webhook's Service (ClusterIP, so through kube-proxy's rules). An
export then runs as a real worker pod from the worker image and reaches PostgreSQL and
MinIO through relays on the bridge's gateway address (the services listen on loopback
only, which a pod cannot reach). The last test takes the cluster down and checks that
the host is as it was.

Skipped only when not root (the kubelet, containerd and iptables need it).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from hack import realnode
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ferry.constants import ANNOTATION_CREATED_BY, ANNOTATION_RUN_REQUESTED_AT
from tests.fixtures.services import S3Server

from .relay import Relay
from .support import Kubectl, wait_until
from .test_export_formats import committed_files

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ferry"
# Fixed (not a temporary directory) so that the images stay imported between runs.
STATE = ROOT / ".cache" / "cluster-node"
PORT_OFFSET = 300
OPERATOR_NS = "ferry-system"
WORK_NS = "ferry-work"
RELEASE = "ferry"
VERSION = "0.1.0"

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="a real kubelet node needs root (cgroups, iptables)")


@dataclass
class Node:
    kubectl: Kubectl
    kubeconfig: str
    env: dict[str, str]
    start_seconds: float


def _env() -> dict[str, str]:
    return {**os.environ, "FERRY_CLUSTER_DIR": str(STATE),
            "FERRY_CLUSTER_PORT_OFFSET": str(PORT_OFFSET)}


def _cluster(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "hack.cluster",
                           command, *args], env=_env(), cwd=ROOT, text=True,
                          capture_output=True, timeout=300, check=False)


def _log_tail(name: str) -> str:
    path = STATE / "logs" / f"{name}.log"
    return path.read_text()[-3000:] if path.exists() else f"(no {path})"


def _host() -> dict[str, object]:
    """What the node may change outside its state directory."""
    return {"sysctls": {name: realnode.read_sysctl(name) for name in realnode.SYSCTLS},
            "dirs": {str(d): d.exists() for d in realnode.DEFAULT_DIRS},
            "cgroups": sorted(str(p) for n in realnode.KUBEPODS_CGROUPS
                              for p in realnode.CGROUP_ROOT.glob(f"*/{n}")),
            "iptables": subprocess.run(["iptables-save"], capture_output=True, text=True,
                                       check=False).stdout.count("KUBE-"),
            "bridge": subprocess.run(["ip", "link", "show", realnode.BRIDGE],
                                     capture_output=True, check=False).returncode == 0}


@pytest.fixture(scope="module")
def host_before() -> dict[str, object]:
    return _host()


@pytest.fixture(scope="module")
def node(kubectl_binary: str, host_before: dict[str, object]) -> Iterator[Node]:
    if os.environ.get("KUBECONFIG"):
        pytest.skip("the real node is started by the local cluster scripts")
    _cluster("down")
    started = time.monotonic()
    up = _cluster("up", "--node", "kubelet")
    start_seconds = time.monotonic() - started
    kubeconfig = str(STATE / "admin.kubeconfig")

    def run(*args: str, input: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([kubectl_binary, f"--kubeconfig={kubeconfig}", *args],
                                input=input, capture_output=True, text=True, timeout=120,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    try:
        assert up.returncode == 0, f"{up.stderr}\nkubelet: {_log_tail('kubelet')}"
        yield Node(run, kubeconfig, _env(), start_seconds)
    finally:
        _cluster("down")


def _relay(port: int) -> Relay:
    """A relay on the bridge's gateway to a service that listens on loopback only."""
    relay = Relay(("127.0.0.1", port), server=socket.create_server((realnode.GATEWAY, 0)))
    relay.start()
    return relay


@dataclass
class Installed:
    pg_relay: Relay
    s3_relay: Relay
    helm_seconds: float


def _helm_binary() -> str:
    found = subprocess.run(["bash", str(ROOT / "hack" / "build-tools.sh"), "--path", "helm"],
                           capture_output=True, text=True, timeout=1800, check=False)
    assert found.returncode == 0, f"cannot build helm: {found.stderr[-2000:]}"
    return found.stdout.strip()


def _helm(node: Node, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": node.kubeconfig, "HELM_CACHE_HOME": str(tmp / "c"),
           "HELM_CONFIG_HOME": str(tmp / "g"), "HELM_DATA_HOME": str(tmp / "d")}
    return subprocess.run([_helm_binary(), *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def installed(node: Node, tmp_path_factory: pytest.TempPathFactory, pg_db: str,
              s3: S3Server, s3_bucket: str) -> Iterator[Installed]:
    kubectl = node.kubectl
    for ns in (OPERATOR_NS, WORK_NS):
        kubectl("create", "namespace", ns)
        kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
        wait_until(lambda ns=ns: kubectl("get", "sa/default", "-n", ns,  # type: ignore[misc]
                                         check=False).returncode == 0, what="the default SA")
    pg_relay = _relay(int(conninfo_to_dict(pg_db)["port"] or 5432))
    s3_relay = _relay(int(s3.endpoint_url.rsplit(":", 1)[1]))
    tmp = tmp_path_factory.mktemp("helm")
    started = time.monotonic()
    result = _helm(node, tmp, "install", RELEASE, str(CHART), "--namespace", OPERATOR_NS,
                   "--set", "operator.image.repository=localhost/ferry-operator",
                   "--set", f"operator.image.tag={VERSION}",
                   "--set", "worker.image.repository=localhost/ferry-worker",
                   "--set", f"worker.image.tag={VERSION}",
                   "--set", f"watchNamespaces={{{WORK_NS}}}",
                   "--set", f"worker.namespaces={{{WORK_NS}}}",
                   # The chart's probe, on a shorter clock so that a frozen operator
                   # is restarted within seconds.
                   "--set", "operator.livenessProbe.periodSeconds=5",
                   "--set", "operator.livenessProbe.timeoutSeconds=2",
                   "--set", "operator.livenessProbe.failureThreshold=2",
                   "--wait", "--timeout", "240s")
    helm_seconds = time.monotonic() - started
    try:
        assert result.returncode == 0, (
            f"{result.stderr}\n{kubectl('get', 'pods', '-A', '-o', 'wide', check=False).stdout}"
            f"\n{kubectl('describe', 'pods', '-n', OPERATOR_NS, check=False).stdout[-4000:]}"
            f"\n{_pod_logs(OPERATOR_NS)}")
        yield Installed(pg_relay, s3_relay, helm_seconds)
    finally:
        kubectl("delete", "exportjobs", "--all", "-n", WORK_NS, "--timeout=60s", check=False)
        _helm(node, tmp, "uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait",
              "--timeout", "120s")
        pg_relay.close()
        s3_relay.close()


def _pod_logs(namespace: str) -> str:
    """The kubelet's own log files of the namespace's containers (kept after a crash)."""
    logs = sorted((STATE / "node" / "pod-logs").glob(f"{namespace}_*/*/*.log"))
    return "\n".join(f"{p}:\n{p.read_text()[-3000:]}" for p in logs)


def _get(kubectl: Kubectl, ns: str, what: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(kubectl("get", what, "-n", ns, "-o", "json").stdout)
    return found


def _operator_pod(kubectl: Kubectl) -> dict[str, Any]:
    pods: list[dict[str, Any]] = _get(kubectl, OPERATOR_NS, "pods")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def test_the_operator_runs_as_a_real_pod_from_its_image(node: Node, installed: Installed
                                                        ) -> None:
    pod = _operator_pod(node.kubectl)
    [status] = pod["status"]["containerStatuses"]
    assert status["ready"] is True, status
    assert status["image"].endswith(f"localhost/ferry-operator:{VERSION}"), status
    # A real runtime's container ID, and a pod address on the cluster's bridge.
    assert status["containerID"].startswith("containerd://"), status
    assert pod["status"]["podIP"].startswith("10.88.0."), pod["status"]
    ns = _get(node.kubectl, "", f"namespace/{OPERATOR_NS}")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    name = pod["metadata"]["name"]
    uid = node.kubectl("exec", "-n", OPERATOR_NS, name, "--", "id", "-u").stdout.strip()
    assert uid == "65532"
    write = node.kubectl("exec", "-n", OPERATOR_NS, name, "--", "touch", "/probe",
                         check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write
    limit = node.kubectl("exec", "-n", OPERATOR_NS, name, "--", "cat",
                         "/sys/fs/cgroup/memory/memory.limit_in_bytes", check=False)
    assert limit.stdout.strip() == str(512 * 1024 * 1024), limit


def test_the_api_server_calls_the_webhook_through_its_service(
        node: Node, installed: Installed) -> None:
    kubectl = node.kubectl
    svc = [s for s in _get(kubectl, OPERATOR_NS, "services")["items"]
           if "webhook" in s["metadata"]["name"]]
    assert svc and svc[0]["spec"]["clusterIP"].startswith("10.0.0."), svc
    job = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob",
           "metadata": {"name": "hooked", "namespace": WORK_NS},
           "spec": {"title": "mutated by the webhook",
                    "source": {"type": "postgres", "table": "t",
                               "connectionSecretRef": {"name": "db", "key": "dsn"}},
                    "output": {"s3": {"bucket": "exports"}},
                    "schedule": {"daily": {"at": "02:00"}}}}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(job))
    annotations = _get(kubectl, WORK_NS, "exportjob/hooked")["metadata"]["annotations"]
    assert annotations[ANNOTATION_CREATED_BY] == "ferry-admin"
    kubectl("delete", "exportjob", "hooked", "-n", WORK_NS, "--timeout=60s")


@pytest.fixture(scope="module")
def source_rows(pg_db: str) -> list[tuple[int, str]]:
    rows = [(i, f"row {i}") for i in range(1, 501)]
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE shipments (id bigint PRIMARY KEY, note text NOT NULL, "
                     "created_at timestamptz NOT NULL DEFAULT now() - interval '1 minute')")
        with conn.cursor().copy("COPY shipments (id, note) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return rows


def test_a_worker_pod_exports_postgres_rows_to_minio(
        node: Node, installed: Installed, pg_db: str, s3: S3Server, s3_bucket: str,
        source_rows: list[tuple[int, str]]) -> None:
    kubectl = node.kubectl
    dsn = make_conninfo(pg_db, host=realnode.GATEWAY, port=str(installed.pg_relay.port))
    endpoint = f"http://{realnode.GATEWAY}:{installed.s3_relay.port}"
    secrets = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
         "stringData": {"dsn": dsn}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bucket"},
         "stringData": {"accessKeyId": s3.access_key, "secretAccessKey": s3.secret_key}},
    ]
    kubectl("apply", "-n", WORK_NS, "-f", "-", input=yaml.safe_dump_all(secrets))
    job = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob",
           "metadata": {"name": "real"},
           "spec": {"title": "real pods",
                    "source": {"type": "postgres", "table": "shipments",
                               "timestampColumn": "created_at",
                               "connectionSecretRef": {"name": "db", "key": "dsn"}},
                    "output": {"s3": {"bucket": s3_bucket, "prefix": "e2e",
                                      "endpoint": endpoint, "region": s3.region,
                                      "forcePathStyle": True,
                                      "credentialsSecretRef": {
                                          "name": "bucket", "accessKeyIdKey": "accessKeyId",
                                          "secretAccessKeyKey": "secretAccessKey"}},
                               "format": "csv"},
                    "worker": {"resources": {"limits": {"memory": "256Mi"}}}}}
    kubectl("apply", "-n", WORK_NS, "-f", "-", input=yaml.safe_dump(job))
    requested = time.monotonic()
    kubectl("annotate", "-n", WORK_NS, "exportjob/real",
            f"{ANNOTATION_RUN_REQUESTED_AT}={time.time():.6f}", "--overwrite")
    entry = wait_until(
        lambda: (_get(kubectl, WORK_NS, "exportjob/real").get("status") or {}).get("lastRun"),
        what="the run on the real node to end", timeout=240)
    run_seconds = time.monotonic() - requested
    pods = _get(kubectl, WORK_NS, "pods")["items"]
    assert entry["phase"] == "Succeeded", (entry, [p["status"] for p in pods],
                                           _pod_logs(WORK_NS))
    workers = [p for p in pods if p["spec"]["containers"][0]["image"].endswith(
        f"localhost/ferry-worker:{VERSION}")]
    assert workers, [p["spec"]["containers"][0]["image"] for p in pods]
    worker = workers[0]
    container = worker["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"] == "256Mi"
    [state] = worker["status"]["containerStatuses"]
    terminated = state["state"]["terminated"]
    # Written by the worker to /dev/termination-log, read back by the kubelet.
    assert terminated["exitCode"] == 0 and json.loads(terminated["message"]), terminated
    created = time.strptime(worker["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    started = time.strptime(terminated["startedAt"], "%Y-%m-%dT%H:%M:%SZ")
    exported = [(int(r["id"]), r["note"])
                for body in committed_files(s3, s3_bucket, "real", entry["id"])
                for r in csv.DictReader(io.StringIO(body.decode(), newline=""))]
    assert sorted(exported) == source_rows
    print(f"\nreal node: up {node.start_seconds:.1f} s, helm install --wait "
          f"{installed.helm_seconds:.1f} s, run {run_seconds:.1f} s, worker pod start "
          f"{time.mktime(started) - time.mktime(created):.0f} s after creation")


def test_the_liveness_probe_restarts_a_frozen_operator(node: Node, installed: Installed
                                                        ) -> None:
    """SIGSTOP from the host (a wedged process): the kubelet's probe times out and the
    kubelet restarts the container, which comes back Ready."""
    pod = _operator_pod(node.kubectl)
    [status] = pod["status"]["containerStatuses"]
    container_id = status["containerID"].removeprefix("containerd://")
    tasks = subprocess.run([str(realnode.node_bin_dir(ROOT) / "ctr"),
                            f"--address={STATE / 'node' / 'containerd' / 'containerd.sock'}",
                            "--namespace=k8s.io", "tasks", "ls"], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    [pid] = [int(line.split()[1]) for line in tasks if line.startswith(container_id)]
    os.kill(pid, signal.SIGSTOP)
    name = pod["metadata"]["name"]

    def restarted() -> dict[str, Any] | None:
        [s] = _get(node.kubectl, OPERATOR_NS, f"pod/{name}")["status"]["containerStatuses"]
        return s if s["restartCount"] > status["restartCount"] and s["ready"] else None

    after = wait_until(restarted, what="the kubelet to restart the frozen operator",
                       timeout=120)
    assert after["containerID"] != status["containerID"]
    events = node.kubectl("get", "events", "-n", OPERATOR_NS, "-o", "json").stdout
    assert "Liveness probe failed" in events


def test_cluster_down_puts_the_host_back(node: Node, host_before: dict[str, object]) -> None:
    during = _host()
    assert during["bridge"] and during["sysctls"] != host_before["sysctls"], during
    down = _cluster("down")
    assert down.returncode == 0, down.stderr
    assert _host() == host_before
    assert str(STATE) not in Path("/proc/self/mounts").read_text()
    runc = subprocess.run(["runc", f"--root={STATE / 'node' / 'containerd' / 'state' / 'runc'}"
                           "/k8s.io", "list", "-q"], capture_output=True, text=True,
                          check=False)
    assert runc.stdout.split() == [], "containers left running"
