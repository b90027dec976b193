"""A real node for the local cluster: containerd + runc, the kubelet, CNI and kube-proxy.

Opt-in (`python -m hack.cluster up --node kubelet`, `make cluster-up-node`): the node
agent stays the default because the suite's speed depends on it. Everything lives under
the cluster's state directory (`<STATE>/node/`): containerd's root, state and sockets,
the kubelet's root and pod logs, the CNI configuration, IPAM data and network
namespaces. What the kubelet and kube-proxy change outside it is recorded at `up` and
put back at `down`: the sysctls the kubelet sets (net.ipv4.ip_forward is recorded too;
pods have no route off the bridge, so nothing needs it on), the `kubepods`/`k8s.io`
cgroups, the mounts under the state directory, the bridge, kube-proxy's and the
kubelet's iptables chains, and the default directories created anyway.

Pods get an address on the bridge `ferry0` (10.88.0.0/24, gateway 10.88.0.1), which
`up` creates; they reach services on the machine through that gateway address only.
The API server advertises the gateway address, so the `kubernetes` Service (through
kube-proxy's iptables rules) reaches it from a pod.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "ferry0"
POD_SUBNET = "10.88.0.0/24"
GATEWAY = "10.88.0.1"
SERVICE_SUBNET = "10.0.0.0/24"
PAUSE_IMAGE = "localhost/ferry-pause:0.1.0"
# Changed by the kubelet (the first three); ip_forward is recorded too, in case anything
# on the node turns it on (nothing should: pods have no route off the bridge).
SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops",
           "net.ipv4.ip_forward")
# Created even when every configurable path points elsewhere: the kubelet's default
# directories, the shims' socket directory (containerd's default state dir, fixed in
# its code) and libcni's result cache. Removed at `down` when `up` found them absent.
DEFAULT_DIRS = (Path("/var/lib/kubelet"), Path("/var/log/pods"), Path("/var/log/containers"),
                Path("/run/containerd"), Path("/var/lib/cni"))
# The kubelet's QoS hierarchy and containerd's parent of pod cgroups (cgroupsPerQOS off).
KUBEPODS_CGROUPS = ("kubepods", "kubepods.slice", "k8s.io")
# The chain the kubelet (or kube-proxy) adds to the filter table and `--cleanup` keeps.
FIREWALL_CHAIN = "KUBE-FIREWALL"
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Layout:
    """Every path the node writes, under one directory."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy-config.yaml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def saved(self) -> Path:
        """What `up` found, for `down` to put back."""
        return self.root / "host-settings.json"


def node_bin_dir(root: Path) -> Path:
    out = subprocess.run(["bash", str(root / "hack" / "build-node.sh"), "--bin-dir"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def containerd_config(layout: Layout, cni_bin: Path) -> str:
    """containerd v2 with only what the kubelet needs, every path under the layout."""
    return f"""version = 3
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"
imports = []
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing",
                    "io.containerd.snapshotter.v1.blockfile",
                    "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs",
                    "io.containerd.image-verifier.v1.bindir"]

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.root / 'opt'}"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # Root here lacks CAP_SYS_RESOURCE: runc may not lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{layout.cni_conf_dir}"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      SystemdCgroup = false
      Root = "{layout.containerd_state / 'runc'}"

[plugins."io.containerd.cri.v1.images"]
  # The images are imported from OCI archives; nothing is pulled.
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"
"""


def cni_config(layout: Layout) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0", "name": "ferry",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(layout.root / "cni" / "ipam"),
                      "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                      # No default route: a pod reaches the bridge and the Services
                      # (kube-proxy's DNAT) only, never past this machine.
                      "routes": [{"dst": SERVICE_SUBNET}]}},
        ],
    }


def kubelet_config(layout: Layout, ca: Path) -> dict[str, object]:
    """What this machine needs: cgroup v1 allowed, cgroupfs, no QoS cgroups."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDir": str(layout.root / "pod-logs"),
        "authentication": {"x509": {"clientCAFile": str(ca)},
                           "webhook": {"enabled": False}, "anonymous": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "address": GATEWAY, "port": 50250, "readOnlyPort": 0, "healthzPort": 50248,
        "healthzBindAddress": "127.0.0.1",
        "failSwapOn": False, "imageGCHighThresholdPercent": 100,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%"},
        "makeIPTablesUtilChains": False, "protectKernelDefaults": False,
        "localStorageCapacityIsolation": False, "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf", "registerNode": True,
        "syncFrequency": "5s", "fileCheckFrequency": "5s", "nodeStatusUpdateFrequency": "5s",
    }


def kube_proxy_config(kubeconfig: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "iptables", "clientConnection": {"kubeconfig": str(kubeconfig)},
        "clusterCIDR": POD_SUBNET, "bindAddress": "127.0.0.1",
        "healthzBindAddress": "127.0.0.1:50256", "metricsBindAddress": "127.0.0.1:50249",
        "conntrack": {"maxPerCore": 0},
        "iptables": {"masqueradeAll": False},
    }


def read_sysctl(name: str) -> str:
    return Path("/proc/sys", *name.split(".")).read_text().strip()


def write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", *name.split(".")).write_text(value)


def prepare(layout: Layout, cni_bin: Path, ca: Path, proxy_kubeconfig: Path) -> None:
    """Record the host settings once, then write the configs and create the bridge."""
    for d in (layout.containerd_root, layout.containerd_state, layout.kubelet_root,
              layout.cni_conf_dir):
        d.mkdir(parents=True, exist_ok=True)
    if not layout.saved.exists():
        saved = {"sysctls": {name: read_sysctl(name) for name in SYSCTLS},
                 "absent_dirs": [str(d) for d in DEFAULT_DIRS if not d.exists()],
                 "absent_cgroups": [n for n in KUBEPODS_CGROUPS
                                    if not list(CGROUP_ROOT.glob(f"*/{n}"))],
                 "firewall_chain_absent": not _has_chain(FIREWALL_CHAIN)}
        layout.saved.write_text(json.dumps(saved, indent=1))
    layout.containerd_config.write_text(containerd_config(layout, cni_bin))
    (layout.cni_conf_dir / "10-ferry.conflist").write_text(json.dumps(cni_config(layout)))
    layout.kubelet_config.write_text(json.dumps(kubelet_config(layout, ca)))
    layout.kube_proxy_config.write_text(json.dumps(kube_proxy_config(proxy_kubeconfig)))
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True,
                      check=False).returncode != 0:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)


def argv(layout: Layout, k8s_bin: Path, node_bin: Path, kubeconfig: Path,
         node_name: str) -> dict[str, list[str]]:
    """The three processes, in start order."""
    return {
        "containerd": [str(node_bin / "containerd"), f"--config={layout.containerd_config}"],
        "kubelet": [str(k8s_bin / "kubelet"), f"--config={layout.kubelet_config}",
                    f"--kubeconfig={kubeconfig}", f"--root-dir={layout.kubelet_root}",
                    f"--hostname-override={node_name}", f"--node-ip={GATEWAY}",
                    "--v=1"],
        "kube-proxy": [str(k8s_bin / "kube-proxy"), f"--config={layout.kube_proxy_config}",
                       f"--hostname-override={node_name}", "--v=1"],
    }


def node_env(node_bin: Path) -> dict[str, str]:
    """containerd finds its shim (and the kubelet nothing else) on PATH."""
    return {**os.environ, "PATH": f"{node_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def wait_socket(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_socket():
            return
        time.sleep(0.2)
    raise SystemExit(f"error: containerd did not open {path} within {timeout:.0f}s")


def ctr(layout: Layout, node_bin: Path, *args: str, stdin: bytes | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(node_bin / "ctr"), f"--address={layout.containerd_socket}",
                           "--namespace=k8s.io", *args], input=stdin, capture_output=True,
                          check=False)


def import_images(layout: Layout, node_bin: Path, images: list[Path]) -> list[str]:
    """Each OCI layout directory, tarred and imported as localhost/<its name>."""
    imported = []
    for image in images:
        archive = subprocess.run(["tar", "-C", str(image), "-cf", "-", "."], check=True,
                                 capture_output=True).stdout
        result = ctr(layout, node_bin, "images", "import", "--no-unpack=false",
                     f"--base-name=localhost/{image.name}", "-", stdin=archive)
        if result.returncode != 0:
            raise SystemExit(f"error: ctr images import {image}: {result.stderr.decode()}")
        imported.append(f"localhost/{image.name}")
    return imported


def _blob(blobs: Path, data: bytes, media_type: str) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def write_pause_image(pause_binary: Path, layout_dir: Path) -> Path:
    """The sandbox image: one layer holding /pause (no registry, so none is pulled)."""
    blobs = layout_dir / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode = pause_binary.stat().st_size, 0o755
        with pause_binary.open("rb") as f:
            tar.addfile(info, f)
    layer_bytes = layer.getvalue()
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
              "rootfs": {"type": "layers",
                         "diff_ids": [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": _blob(blobs, json.dumps(config).encode(),
                                "application/vnd.oci.image.config.v1+json"),
                "layers": [_blob(blobs, layer_bytes,
                                 "application/vnd.oci.image.layer.v1.tar")]}
    entry = _blob(blobs, json.dumps(manifest).encode(),
                  "application/vnd.oci.image.manifest.v1+json")
    entry["annotations"] = {"org.opencontainers.image.ref.name": PAUSE_IMAGE.split(":")[1]}
    (layout_dir / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout_dir / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                       "manifests": [entry]}))
    return layout_dir


def _mounts_under(prefix: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target == str(prefix) or target.startswith(f"{prefix}/"):
            found.append(target)
    return sorted(found, key=len, reverse=True)


def _has_chain(chain: str) -> bool:
    return any(subprocess.run([tool, "-S", chain], capture_output=True,
                              check=False).returncode == 0 for tool in ("iptables", "ip6tables"))


def _remove_chain(chain: str) -> None:
    for tool in ("iptables", "ip6tables"):
        for builtin in ("INPUT", "OUTPUT", "FORWARD"):
            while subprocess.run([tool, "-D", builtin, "-j", chain], capture_output=True,
                                 check=False).returncode == 0:
                pass
        subprocess.run([tool, "-F", chain], capture_output=True, check=False)
        subprocess.run([tool, "-X", chain], capture_output=True, check=False)


def _remove_cgroups(names: list[str]) -> None:
    """The node's cgroup hierarchies, deepest first, in every v1 controller."""
    if not CGROUP_ROOT.is_dir():
        return
    for controller in CGROUP_ROOT.iterdir():
        for name in names:
            top = controller / name
            if not top.is_dir():
                continue
            for d in sorted((p for p in top.rglob("*") if p.is_dir()),
                            key=lambda p: len(p.parts), reverse=True):
                d.rmdir()
            top.rmdir()


def kill_containers(layout: Layout) -> None:
    """Every container runc runs for this containerd (the kubelet leaves them running)."""
    runc_root = layout.containerd_state / "runc" / "k8s.io"  # the shim's Root/<namespace>
    if not runc_root.is_dir():
        return
    out = subprocess.run(["runc", f"--root={runc_root}", "list", "-q"], capture_output=True,
                         text=True, check=False).stdout.split()
    for cid in out:
        subprocess.run(["runc", f"--root={runc_root}", "kill", "--all", cid, "KILL"],
                       capture_output=True, check=False)
    time.sleep(0.5)
    for cid in out:
        subprocess.run(["runc", f"--root={runc_root}", "delete", "--force", cid],
                       capture_output=True, check=False)


def kill_shims(layout: Layout) -> None:
    """The runc shims outlive containerd by design; ours are found by their socket dir."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and \
                str(layout.containerd_socket).encode() in b" ".join(cmdline):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def restore(layout: Layout, k8s_bin: Path) -> list[str]:
    """Put back what `prepare` and the node changed; returns what could not be undone."""
    problems = []
    kill_containers(layout)
    kill_shims(layout)
    if (k8s_bin / "kube-proxy").exists():
        subprocess.run([str(k8s_bin / "kube-proxy"), "--cleanup"], capture_output=True,
                       check=False)
    for target in _mounts_under(layout.root):
        if subprocess.run(["umount", "-l", target], capture_output=True,
                          check=False).returncode != 0:
            problems.append(f"mount {target}")
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
    if layout.saved.exists():
        saved = json.loads(layout.saved.read_text())
        try:
            _remove_cgroups(saved["absent_cgroups"])
        except OSError as e:
            problems.append(f"cgroup: {e}")
        if saved["firewall_chain_absent"]:
            _remove_chain(FIREWALL_CHAIN)
        for name, value in saved["sysctls"].items():
            if read_sysctl(name) != value:
                write_sysctl(name, value)
        for d in saved["absent_dirs"]:
            shutil.rmtree(d, ignore_errors=True)
        layout.saved.unlink()
    return problems
