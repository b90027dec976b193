"""A real local Kubernetes control plane on loopback, for e2e tests and the demo.

`python -m hack.cluster up|down|status` (from the repo root). It runs etcd,
kube-apiserver, kube-controller-manager (the real Job controller and garbage collector),
kube-scheduler and the node agent (hack/nodeagent.py) as local processes, all
built from their Go modules by hack/build-kubernetes.sh. `up` is idempotent:
components already running are left alone. State lives in .cache/cluster/.

`up --node kubelet` runs a real node instead of the node agent: containerd, runc, the
kubelet, the CNI bridge and kube-proxy (hack/realnode.py), with the images of
`make images` imported into containerd. The mode is remembered in the state directory
so that `down` knows to undo what the node changed on the host.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hack import realnode
from hack.pki import NODE_NAME, ensure_pki
from hack.ports import reserve, wait_bindable

ROOT = Path(__file__).resolve().parent.parent
# Both overridable so that a second, throwaway cluster can run beside the main one.
STATE = Path(os.environ.get("FERRY_CLUSTER_DIR", ROOT / ".cache" / "cluster"))
PORT_OFFSET = int(os.environ.get("FERRY_CLUSTER_PORT_OFFSET", "0"))
PKI = STATE / "pki"
LOGS = STATE / "logs"
PIDS = STATE / "pids"
ADMIN_KUBECONFIG = STATE / "admin.kubeconfig"
NODE_MODE_FILE = STATE / "node-mode"
NODE_LAYOUT = realnode.Layout(STATE / "node")
IMAGES_OCI = ROOT / ".cache" / "images" / "oci"

ETCD_PORT = 52379 + PORT_OFFSET
ETCD_PEER_PORT = 52380 + PORT_OFFSET
APISERVER_PORT = 56443 + PORT_OFFSET
CONTROLLER_MANAGER_PORT = 50257 + PORT_OFFSET
SCHEDULER_PORT = 50259 + PORT_OFFSET
SERVER = f"https://127.0.0.1:{APISERVER_PORT}"


def kubernetes_version() -> str:
    """The pinned version, read from the one place it is written."""
    for line in (ROOT / "hack" / "versions.mk").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION"):
            return line.split(":=")[1].strip()
    raise SystemExit("error: KUBERNETES_VERSION missing from hack/versions.mk")


def bin_dir() -> Path:
    return ROOT / ".cache" / "k8s" / kubernetes_version() / "bin"


@dataclass(frozen=True)
class Component:
    name: str
    ports: tuple[int, ...]
    argv: Sequence[str]


def write_kubeconfig(path: Path, user: str, cert_stem: str) -> None:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: ferry-local
  cluster:
    server: {SERVER}
    certificate-authority: {PKI / "ca.crt"}
users:
- name: {user}
  user:
    client-certificate: {PKI / f"{cert_stem}.crt"}
    client-key: {PKI / f"{cert_stem}.key"}
contexts:
- name: ferry-local
  context: {{cluster: ferry-local, user: {user}, namespace: default}}
current-context: ferry-local
"""
    )


def node_mode() -> str:
    """`agent` (hack/nodeagent.py, the default) or `kubelet` (a real node)."""
    return NODE_MODE_FILE.read_text().strip() if NODE_MODE_FILE.exists() else "agent"


def components() -> list[Component]:
    b = bin_dir()
    kubelet = node_mode() == "kubelet"
    cm_kc, sched_kc = STATE / "controller-manager.kubeconfig", STATE / "scheduler.kubeconfig"
    return [
        Component("etcd", (ETCD_PORT, ETCD_PEER_PORT), [
            str(b / "etcd"), "--name=ferry", f"--data-dir={STATE / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{ETCD_PORT}",
            f"--advertise-client-urls=http://127.0.0.1:{ETCD_PORT}",
            f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-cluster=ferry=http://127.0.0.1:{ETCD_PEER_PORT}",
            "--unsafe-no-fsync", "--log-level=warn",
        ]),
        Component("kube-apiserver", (APISERVER_PORT,), [
            str(b / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
            # A real node's pods reach it through the `kubernetes` Service, whose
            # endpoint is the bridge's gateway (kube-proxy's rules lead there).
            *(["--bind-address=0.0.0.0", f"--advertise-address={realnode.GATEWAY}",
               "--endpoint-reconciler-type=lease"] if kubelet else
              ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
               "--endpoint-reconciler-type=none"]),
            f"--secure-port={APISERVER_PORT}",
            f"--tls-cert-file={PKI / 'apiserver.crt'}",
            f"--tls-private-key-file={PKI / 'apiserver.key'}",
            f"--client-ca-file={PKI / 'ca.crt'}",
            f"--kubelet-client-certificate={PKI / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={PKI / 'apiserver-kubelet-client.key'}",
            # The node agent serves container logs on loopback; its Hostname is no address.
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-key-file={PKI / 'sa.pub'}",
            f"--service-account-signing-key-file={PKI / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=Node,RBAC",
            # The `kubernetes` Service cannot point at loopback; pods here reach the API
            # server through their per-pod kubeconfig instead.
            "--enable-admission-plugins=NodeRestriction",
            "--profiling=false",
        ]),
        Component("kube-controller-manager", (CONTROLLER_MANAGER_PORT,), [
            str(b / "kube-controller-manager"),
            f"--kubeconfig={cm_kc}", f"--authentication-kubeconfig={cm_kc}",
            f"--authorization-kubeconfig={cm_kc}",
            "--bind-address=127.0.0.1", f"--secure-port={CONTROLLER_MANAGER_PORT}",
            f"--service-account-private-key-file={PKI / 'sa.key'}",
            f"--root-ca-file={PKI / 'ca.crt'}",
            "--use-service-account-credentials=true", "--leader-elect=false",
            "--controllers=*", "--concurrent-job-syncs=10",
        ]),
        Component("kube-scheduler", (SCHEDULER_PORT,), [
            str(b / "kube-scheduler"),
            f"--kubeconfig={sched_kc}", f"--authentication-kubeconfig={sched_kc}",
            f"--authorization-kubeconfig={sched_kc}",
            "--bind-address=127.0.0.1", f"--secure-port={SCHEDULER_PORT}",
            "--leader-elect=false",
        ]),
        *(real_node_components() if kubelet else [Component("node-agent", (), [
            sys.executable, str(ROOT / "hack" / "nodeagent.py"),
            f"--kubeconfig={STATE / 'node.kubeconfig'}", f"--node-name={NODE_NAME}",
            f"--state-dir={STATE / 'pods'}",
        ])]),
    ]


def real_node_components() -> list[Component]:
    argv = realnode.argv(NODE_LAYOUT, bin_dir(), realnode.node_bin_dir(ROOT),
                         STATE / "node.kubeconfig", NODE_NAME)
    ports = {"containerd": (), "kubelet": (50250, 50248), "kube-proxy": (50256, 50249)}
    return [Component(name, ports[name], command) for name, command in argv.items()]


def pid_of(name: str) -> int | None:
    """The component's pid if its recorded process is still alive."""
    pid_file = PIDS / f"{name}.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_healthy(timeout: float = 90.0) -> None:
    """Wait for /readyz, so callers never race the API server's start."""
    context = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    context.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not pid_of("kube-apiserver"):
            break
        try:
            with urllib.request.urlopen(f"{SERVER}/readyz", context=context, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last_error = str(e)
        time.sleep(0.5)
    raise SystemExit(f"error: kube-apiserver not ready ({last_error}); "
                     f"see {LOGS / 'kube-apiserver.log'}")


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir() / "kubectl"), f"--kubeconfig={ADMIN_KUBECONFIG}", *args],
        check=check, capture_output=True, text=True,
    )


def load_images() -> None:
    """The sandbox image and those of `make images`, each imported once per build."""
    node_bin = realnode.node_bin_dir(ROOT)
    realnode.wait_socket(NODE_LAYOUT.containerd_socket)
    pause = realnode.write_pause_image(node_bin / "pause", NODE_LAYOUT.root / "ferry-pause")
    stamps = NODE_LAYOUT.root / "imported"
    stamps.mkdir(exist_ok=True)
    for image in [pause, *sorted(p for p in IMAGES_OCI.glob("*") if p.is_dir())]:
        built = (image.parent / f"{image.name}.id")
        want = built.read_text() if built.exists() else "pause"
        stamp = stamps / image.name
        if stamp.exists() and stamp.read_text() == want:
            continue
        realnode.import_images(NODE_LAYOUT, node_bin, [image])
        stamp.write_text(want)


def wait_node_ready(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kubectl("get", "node", NODE_NAME, "-o",
                      "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
        if out.stdout.strip() == "True":
            return
        time.sleep(0.5)
    log = "kubelet.log" if node_mode() == "kubelet" else "node-agent.log"
    raise SystemExit(f"error: node {NODE_NAME} not Ready after {timeout:.0f}s; "
                     f"see {LOGS / log}")


def wait_default_service_account(timeout: float = 60.0) -> None:
    """Pods in `default` need its ServiceAccount, created by the controller-manager."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kubectl("get", "serviceaccount", "default", check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit("error: the default ServiceAccount never appeared; "
                     f"see {LOGS / 'kube-controller-manager.log'}")


def up(node: str | None = None) -> None:
    """Start what is not running; `node` picks the node (default: the one already up)."""
    for d in (STATE, LOGS, PIDS):
        d.mkdir(parents=True, exist_ok=True)
    if node is not None and node != node_mode():
        if pid_of("kube-apiserver"):
            raise SystemExit(f"error: the cluster in {STATE} runs with --node {node_mode()}: "
                             "run `make cluster-down` before switching")
        NODE_MODE_FILE.write_text(node)
    missing = [c.argv[0] for c in components() if not Path(c.argv[0]).exists()]
    if missing:
        target = "make cluster-node-deps" if node_mode() == "kubelet" else "make k8s"
        raise SystemExit(f"error: {missing[0]} is not built: run `{target}` first")
    ensure_pki(PKI)
    write_kubeconfig(ADMIN_KUBECONFIG, "ferry-admin", "admin")
    write_kubeconfig(STATE / "controller-manager.kubeconfig",
                     "system:kube-controller-manager", "controller-manager")
    write_kubeconfig(STATE / "scheduler.kubeconfig", "system:kube-scheduler", "scheduler")
    write_kubeconfig(STATE / "node.kubeconfig", f"system:node:{NODE_NAME}", "node")

    if node_mode() == "kubelet":
        realnode.prepare(NODE_LAYOUT, realnode.node_bin_dir(ROOT), PKI / "ca.crt",
                         ADMIN_KUBECONFIG)
    reserve(port for component in components() for port in component.ports)
    for component in components():
        if pid_of(component.name):
            continue
        busy = [p for p in component.ports if port_in_use(p)]
        if busy:
            raise SystemExit(
                f"error: port {busy[0]} (for {component.name}) is already in use by another "
                "process: stop it or run `make cluster-down`"
            )
        held = [p for p in component.ports if not wait_bindable(p)]
        if held:
            raise SystemExit(
                f"error: port {held[0]} (for {component.name}) is held by a connection's "
                f"local end: see `ss -tanp 'sport = :{held[0]}'`"
            )
        log = (LOGS / f"{component.name}.log").open("ab")
        process = subprocess.Popen(
            component.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=ROOT,
            env=realnode.node_env(realnode.node_bin_dir(ROOT))
            if component.name == "containerd" else None,
        )
        (PIDS / f"{component.name}.pid").write_text(str(process.pid))
        if component.name == "kube-apiserver":
            wait_healthy()
        if component.name == "containerd":
            load_images()
    wait_node_ready()
    wait_default_service_account()
    print(f"cluster up: export KUBECONFIG={ADMIN_KUBECONFIG}")


def stop(name: str, grace: float = 10.0) -> None:
    pid = pid_of(name)
    if pid is not None:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and pid_of(name):
            time.sleep(0.1)
        if pid_of(name):
            os.killpg(pid, signal.SIGKILL)
            while pid_of(name):
                time.sleep(0.05)
    (PIDS / f"{name}.pid").unlink(missing_ok=True)


def down() -> None:
    """Stop everything (node agent first, so it can stop its pods) and wipe etcd."""
    kubelet = node_mode() == "kubelet"
    for component in reversed(components()):
        stop(component.name)
    if kubelet:
        problems = realnode.restore(NODE_LAYOUT, bin_dir())
        if problems:
            raise SystemExit(f"error: could not undo on the host: {', '.join(problems)}")
        # Images stay imported (containerd's content store) for the next `up`.
        for d in NODE_LAYOUT.root.iterdir() if NODE_LAYOUT.root.exists() else []:
            if d.name not in ("containerd", "imported"):
                subprocess.run(["rm", "-rf", str(d)], check=True)
        subprocess.run(["rm", "-rf", str(NODE_LAYOUT.containerd_state)], check=True)
        NODE_MODE_FILE.unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", str(STATE / "etcd"), str(STATE / "pods")], check=True)
    print("cluster down")


def status() -> int:
    down_components = [c.name for c in components() if not pid_of(c.name)]
    for c in components():
        print(f"{c.name:26} {'running' if pid_of(c.name) else 'stopped'}")
    return 1 if down_components else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--node", choices=["agent", "kubelet"], default=None,
                        help="the node agent (default) or a real kubelet node")
    args = parser.parse_args()
    command = args.command
    if command == "up":
        up(args.node)
    elif command == "down":
        down()
    else:
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
