"""A minimal kubelet: runs the pods bound to one Node as local processes.

It registers a Ready Node, heartbeats its Lease, and for each pod scheduled to it
runs every container's command as a process with the pod's environment, then
reports phase, container states, exit codes and termination messages the way a
kubelet does. It is what lets the e2e suite use the real Job controller, garbage
collector and scheduler on a machine without a container runtime.

Image to program mapping (a container has no image here):
- an image whose last path element, before the tag, is `ferry-<x>` (for example
  `ghcr.io/ferry/ferry-worker:0.1.0`) runs the console script `.venv/bin/ferry-<x>`
  as its entrypoint, with `command` replacing and `args` following it as usual;
- otherwise `command` must be given; a first word `python` or `python3` means the
  project's venv interpreter, anything else is looked up on the host PATH.

Deviations from a kubelet, all because processes share the host file system:
the termination message is read from the file named by the env var
FERRY_TERMINATION_MESSAGE_PATH (a per-container file the agent creates) rather
than from `terminationMessagePath`, TMPDIR points at a per-pod directory, and
volumes are not mounted. Each process gets its pod's identity: a token for the
pod's ServiceAccount from the TokenRequest API, bound to the pod, in a per-pod
kubeconfig exported as KUBECONFIG, so RBAC applies to it as in a cluster.
Container logs are kept in <state-dir>/<namespace>_<pod>/<container>.log (stdout and
stderr merged, no timestamps) and served to the API server as a kubelet serves them
(GET /containerLogs/<namespace>/<pod>/<container>, so `kubectl logs` works) over TLS on a
loopback port chosen at start and reported in the Node's daemonEndpoints. The serving
certificate is self-signed (the API server is not given a kubelet CA, so it does not
check it); a client must present a certificate of the cluster's CA.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10
TERMINATION_MESSAGE_LIMIT = 4096
log = logging.getLogger("nodeagent")


CONFIG_RETRY_SECONDS = 5


class ContainerConfigError(Exception):
    """What a kubelet reports as CreateContainerConfigError (kubelet's own wording)."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def resolve_program(image: str, command: list[str], args: list[str]) -> list[str]:
    """Apply the image-to-program mapping rule from the module docstring."""
    image_name = image.rsplit("/", 1)[-1].split("@", maxsplit=1)[0].split(":", maxsplit=1)[0]
    if not command:
        if not image_name.startswith("ferry-"):
            raise ValueError(f"image {image!r} has no known entrypoint here: set `command`")
        command = [str(VENV_BIN / image_name)]
    elif command[0] in ("python", "python3"):
        command = [str(VENV_BIN / "python"), *command[1:]]
    return [*command, *args]


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: unknown references stay as written, $$ escapes."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, value)


@dataclass
class RunningContainer:
    name: str
    process: subprocess.Popen[bytes]
    started_at: dt.datetime
    message_path: Path
    log_path: Path
    exit_code: int | None = None
    finished_at: dt.datetime | None = None


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    containers: list[RunningContainer] = field(default_factory=list)
    deleting: bool = False


class NodeAgent:
    def __init__(self, node_name: str, state_dir: Path) -> None:
        self.node_name = node_name
        self.state_dir = state_dir
        self.core = client.CoreV1Api()
        self.coordination = client.CoordinationV1Api()
        self.pods: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        api_client = client.ApiClient()
        self.server = api_client.configuration.host
        self.ca_file = api_client.configuration.ssl_ca_cert
        self.log_port = 0

    # --- node registration and heartbeat ---------------------------------------------------

    def node_status(self) -> dict[str, Any]:
        stamp = now().isoformat()
        resources = {"cpu": "32", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        return {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "NodeAgentReady",
                "message": "ferry node agent is running pods as local processes",
                "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
            }],
            "nodeInfo": {
                "architecture": "amd64", "operatingSystem": "linux", "osImage": "local",
                "kernelVersion": os.uname().release, "kubeletVersion": "ferry-nodeagent",
                "kubeProxyVersion": "", "containerRuntimeVersion": "process://local",
                "bootID": "", "machineID": "", "systemUUID": "",
            },
        }

    def register(self) -> None:
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {
                "kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            }},
        }
        try:
            self.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
        self.report_node_status()

    def heartbeat_forever(self) -> None:
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            for beat in (self.renew_lease, self.report_node_status):
                try:
                    beat()
                except Exception:
                    log.exception("heartbeat %s failed", beat.__name__)

    def report_node_status(self) -> None:
        self.core.patch_node_status(self.node_name, {"status": self.node_status()})

    def renew_lease(self) -> None:
        lease = {
            "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_SECONDS,
                     "renewTime": now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        }
        try:
            self.coordination.patch_namespaced_lease(self.node_name, "kube-node-lease", lease)
        except ApiException as e:
            if e.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", lease)

    # --- container logs, served like a kubelet's /containerLogs ----------------------------

    def serve_logs(self) -> None:
        """Listen on a loopback port for the API server's log requests (pods/log)."""
        cert, key = self.state_dir / "serving.crt", self.state_dir / "serving.key"
        if not cert.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", str(key), "-out", str(cert), "-days", "3650",
                            "-subj", f"/CN={self.node_name}",
                            "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(self.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
        server = LogServer(("127.0.0.1", 0), LogHandler, self)
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
        self.log_port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        log.info("serving container logs on https://127.0.0.1:%d", self.log_port)

    def container(self, namespace: str, pod: str, name: str) -> RunningContainer | None:
        with self.lock:
            runs = [r for r in self.pods.values() if (r.namespace, r.name) == (namespace, pod)]
        return next((c for r in runs for c in r.containers if c.name == name), None)

    # --- pod lifecycle ----------------------------------------------------------------------

    def watch_pods_forever(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        while not self.stopping.is_set():
            try:
                for event in watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, field_selector=selector,
                    timeout_seconds=60,
                ):
                    self.on_pod(event["object"])
            except Exception:
                log.exception("pod watch failed; restarting it")
                time.sleep(1)

    def on_pod(self, pod: client.V1Pod) -> None:
        uid = pod.metadata.uid
        with self.lock:
            run = self.pods.get(uid)
        if pod.metadata.deletion_timestamp is not None:
            if run is None:
                self.finish_deletion(pod)
            elif not run.deleting:
                run.deleting = True
                grace = pod.metadata.deletion_grace_period_seconds
                threading.Thread(target=self.kill_pod, args=(pod, run, grace),
                                 daemon=True).start()
            return
        if run is None and pod.status.phase in (None, "Pending"):
            run = PodRun(pod.metadata.namespace, pod.metadata.name, uid)
            with self.lock:
                self.pods[uid] = run
            threading.Thread(target=self.run_pod, args=(pod, run), daemon=True).start()

    def pod_dir(self, pod: client.V1Pod) -> Path:
        return self.state_dir / f"{pod.metadata.namespace}_{pod.metadata.name}"

    def run_pod(self, pod: client.V1Pod, run: PodRun) -> None:
        while True:
            try:
                self.start_containers(pod, run)
                break
            except ContainerConfigError as e:
                # A kubelet keeps such a pod Pending and retries: the Secret may appear.
                self.report_waiting(pod, "CreateContainerConfigError", str(e))
                if run.deleting or self.stopping.wait(CONFIG_RETRY_SECONDS):
                    return
            except Exception as e:
                log.exception("pod %s/%s failed to start", run.namespace, run.name)
                self.report_start_failure(pod, str(e))
                return
        self.report(pod, run)
        for container in run.containers:
            container.exit_code = container.process.wait()
            container.finished_at = now()
        if not run.deleting:
            self.report(pod, run)

    def start_containers(self, pod: client.V1Pod, run: PodRun) -> None:
        directory = self.pod_dir(pod)
        tmp = directory / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.pod_kubeconfig(pod, directory)
        for spec in pod.spec.containers:
            env = self.container_env(pod, spec)
            message_path = directory / f"{spec.name}.termination-log"
            message_path.write_text("")
            env.update({
                "KUBECONFIG": str(kubeconfig), "TMPDIR": str(tmp), "HOME": str(tmp),
                "FERRY_TERMINATION_MESSAGE_PATH": str(message_path),
                "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            })
            argv = [expand(a, env) for a in
                    resolve_program(spec.image or "", spec.command or [], spec.args or [])]
            if shutil.which(argv[0], path=env["PATH"]) is None:
                raise FileNotFoundError(f"executable {argv[0]!r} not found")
            log_path = directory / f"{spec.name}.log"
            with log_path.open("ab") as log_file:
                process = subprocess.Popen(
                    argv, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=spec.working_dir or str(tmp),
                    start_new_session=True,
                )
            run.containers.append(
                RunningContainer(spec.name, process, now(), message_path, log_path)
            )
            log.info("started %s/%s container %s as pid %d: %s", run.namespace, run.name,
                     spec.name, process.pid, argv)

    def pod_kubeconfig(self, pod: client.V1Pod, directory: Path) -> Path:
        """A kubeconfig holding a token bound to this pod, as a kubelet would project it."""
        sa = pod.spec.service_account_name or "default"
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid),
        ))
        token = self.with_retries(lambda: self.core.create_namespaced_service_account_token(
            sa, pod.metadata.namespace, request)).status.token
        path = directory / "kubeconfig"
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: local\n  cluster:\n    server: {self.server}\n"
            f"    certificate-authority: {self.ca_file}\n"
            f"users:\n- name: {sa}\n  user:\n    token: {token}\n"
            "contexts:\n- name: pod\n  context:\n    cluster: local\n"
            f"    user: {sa}\n    namespace: {pod.metadata.namespace}\n"
            "current-context: pod\n"
        )
        path.chmod(0o600)
        return path

    @staticmethod
    def with_retries(call: Any, attempts: int = 20) -> Any:
        """The Node authorizer learns of a new pod's references a moment after it binds."""
        for attempt in range(attempts):
            try:
                return call()
            except ApiException as e:
                if e.status != 403 or attempt == attempts - 1:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def container_env(self, pod: client.V1Pod, spec: client.V1Container) -> dict[str, str]:
        env: dict[str, str] = {}
        ns = pod.metadata.namespace
        for source in spec.env_from or []:
            prefix = source.prefix or ""
            if source.secret_ref is not None:
                secret = self.with_retries(
                    lambda s=source: self.core.read_namespaced_secret(s.secret_ref.name, ns))
                for k, v in (secret.data or {}).items():
                    env[prefix + k] = base64.b64decode(v).decode()
            if source.config_map_ref is not None:
                cm = self.with_retries(
                    lambda s=source: self.core.read_namespaced_config_map(
                        s.config_map_ref.name, ns))
                env.update({prefix + k: v for k, v in (cm.data or {}).items()})
        for var in spec.env or []:
            if var.value_from is None:
                env[var.name] = expand(var.value or "", env)
                continue
            value = self.env_value(pod, var.value_from)
            if value is not None:
                env[var.name] = value
        return env

    def env_value(self, pod: client.V1Pod, source: client.V1EnvVarSource) -> str | None:
        ns = pod.metadata.namespace
        if source.secret_key_ref is not None:
            ref = source.secret_key_ref
            try:
                secret = self.with_retries(lambda: self.core.read_namespaced_secret(ref.name, ns))
            except ApiException as e:
                if e.status == 404 and ref.optional:
                    return None
                if e.status in (403, 404):
                    raise ContainerConfigError(f'secret "{ref.name}" not found') from e
                raise
            data = secret.data or {}
            if ref.key not in data:
                if ref.optional:
                    return None
                raise ContainerConfigError(
                    f"couldn't find key {ref.key} in Secret {ns}/{ref.name}")
            return base64.b64decode(data[ref.key]).decode()
        if source.config_map_key_ref is not None:
            ref = source.config_map_key_ref
            cm = self.with_retries(lambda: self.core.read_namespaced_config_map(ref.name, ns))
            return (cm.data or {}).get(ref.key)
        if source.field_ref is not None:
            return self.field_value(pod, source.field_ref.field_path)
        return None

    @staticmethod
    def field_value(pod: client.V1Pod, path: str) -> str:
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            values = getattr(pod.metadata, match.group(1)) or {}
            return str(values.get(match.group(2), ""))
        simple = {
            "metadata.name": pod.metadata.name,
            "metadata.namespace": pod.metadata.namespace,
            "metadata.uid": pod.metadata.uid,
            "spec.nodeName": pod.spec.node_name,
            "spec.serviceAccountName": pod.spec.service_account_name,
            "status.podIP": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }
        if path not in simple:
            raise ValueError(f"unsupported fieldRef {path!r}")
        return str(simple[path] or "")

    # --- status reporting -------------------------------------------------------------------

    @staticmethod
    def stamp(moment: dt.datetime | None) -> str | None:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None

    def termination_message(self, pod: client.V1Pod, c: RunningContainer) -> str:
        message = c.message_path.read_text(errors="replace")[:TERMINATION_MESSAGE_LIMIT]
        spec = next(s for s in pod.spec.containers if s.name == c.name)
        if not message and c.exit_code and spec.termination_message_policy == \
                "FallbackToLogsOnError":
            tail = c.log_path.read_bytes()[-2048:].decode(errors="replace")
            message = "\n".join(tail.splitlines()[-80:])
        return message

    def container_status(self, pod: client.V1Pod, c: RunningContainer) -> dict[str, Any]:
        image = next(s.image for s in pod.spec.containers if s.name == c.name)
        status: dict[str, Any] = {
            "name": c.name, "image": image, "imageID": f"local://{image}",
            "containerID": f"process://{c.process.pid}", "restartCount": 0,
            "ready": c.exit_code is None, "started": c.exit_code is None,
        }
        if c.exit_code is None:
            status["state"] = {"running": {"startedAt": self.stamp(c.started_at)}}
        else:
            exit_code = c.exit_code if c.exit_code >= 0 else 128 - c.exit_code
            terminated = {
                "exitCode": exit_code, "startedAt": self.stamp(c.started_at),
                "finishedAt": self.stamp(c.finished_at),
                "reason": "Completed" if exit_code == 0 else "Error",
            }
            message = self.termination_message(pod, c)
            if message:
                terminated["message"] = message
            status["state"] = {"terminated": terminated}
        return status

    def report(self, pod: client.V1Pod, run: PodRun) -> None:
        exited = [c for c in run.containers if c.exit_code is not None]
        if len(exited) < len(run.containers):
            phase = "Running"
        else:
            phase = "Succeeded" if all(c.exit_code == 0 for c in exited) else "Failed"
        ready = "True" if phase == "Running" else "False"
        start = self.stamp(min(c.started_at for c in run.containers))
        status = {
            "phase": phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}], "startTime": start,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": start},
                {"type": "Initialized", "status": "True", "lastTransitionTime": start},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": start},
                {"type": "Ready", "status": ready, "lastTransitionTime": start},
            ],
            "containerStatuses": [self.container_status(pod, c) for c in run.containers],
        }
        self.patch_status(run.namespace, run.name, status)

    def report_waiting(self, pod: client.V1Pod, reason: str, message: str) -> None:
        statuses = [{
            "name": s.name, "image": s.image, "imageID": "", "ready": False, "restartCount": 0,
            "started": False, "state": {"waiting": {"reason": reason, "message": message}},
        } for s in pod.spec.containers]
        self.patch_status(pod.metadata.namespace, pod.metadata.name, {
            "phase": "Pending", "startTime": self.stamp(now()), "containerStatuses": statuses,
        })

    def report_start_failure(self, pod: client.V1Pod, reason: str) -> None:
        statuses = [{
            "name": s.name, "image": s.image, "imageID": "", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": 128, "reason": "StartError",
                                     "message": reason[:TERMINATION_MESSAGE_LIMIT],
                                     "startedAt": self.stamp(now()),
                                     "finishedAt": self.stamp(now())}},
        } for s in pod.spec.containers]
        self.patch_status(pod.metadata.namespace, pod.metadata.name, {
            "phase": "Failed", "message": reason, "reason": "StartError",
            "startTime": self.stamp(now()), "containerStatuses": statuses,
        })

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Retried while the API server is unreachable or answers 429/5xx, as a kubelet's
        status manager keeps syncing: a pod that ends while the API server restarts must
        still be reported, or its Job would never complete."""
        self.retrying(f"status of {namespace}/{name}",
                      lambda: self.core.patch_namespaced_pod_status(name, namespace,
                                                                    {"status": status}))

    def retrying(self, what: str, call: Callable[[], object]) -> None:
        """Call until it succeeds or fails for good (4xx other than 429; 404/409 are
        the object already gone or replaced, not worth a warning), backing off to 10 s."""
        delay = 0.5
        while True:
            try:
                call()
                return
            except ApiException as e:
                if e.status != 429 and e.status < 500:
                    if e.status not in (404, 409):
                        log.warning("%s not written: %s", what, e.reason)
                    return
                reason = f"{e.status} {e.reason}"
            except urllib3.exceptions.HTTPError as e:
                reason = type(e).__name__
            log.warning("%s not written (%s); retrying in %.1fs", what, reason, delay)
            if self.stopping.wait(delay):
                return
            delay = min(delay * 2, 10.0)

    def kill_pod(self, pod: client.V1Pod, run: PodRun, grace: int | None) -> None:
        """SIGTERM, the grace period, then SIGKILL: the kubelet's order."""
        alive = [c for c in run.containers if c.process.poll() is None]
        for c in alive:
            with_process_group(c.process, signal.SIGTERM)
        deadline = time.monotonic() + (30 if grace is None else grace)
        while time.monotonic() < deadline and any(c.process.poll() is None for c in alive):
            time.sleep(0.1)
        for c in alive:
            if c.process.poll() is None:
                with_process_group(c.process, signal.SIGKILL)
            c.process.wait()
        for c in run.containers:
            if c.exit_code is None:
                c.exit_code = c.process.returncode
                c.finished_at = now()
        self.report(pod, run)
        self.finish_deletion(pod)
        with self.lock:
            self.pods.pop(run.uid, None)

    def finish_deletion(self, pod: client.V1Pod) -> None:
        """Remove the terminated pod from the API (retried across API server restarts,
        or it would stay Terminating forever)."""
        self.retrying(
            f"deletion of pod {pod.metadata.namespace}/{pod.metadata.name}",
            lambda: self.core.delete_namespaced_pod(
                pod.metadata.name, pod.metadata.namespace,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0,
                    preconditions=client.V1Preconditions(uid=pod.metadata.uid))))

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            runs = list(self.pods.values())
        for run in runs:
            for c in run.containers:
                if c.process.poll() is None:
                    with_process_group(c.process, signal.SIGKILL)


class LogServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 agent: NodeAgent) -> None:
        super().__init__(address, handler)
        self.agent = agent

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("log request from %s failed: %s", client_address, sys.exc_info()[1])


class LogHandler(BaseHTTPRequestHandler):
    """A kubelet's GET /containerLogs/<namespace>/<pod>/<container>, with follow,
    tailLines and limitBytes; what a merged, untimestamped log cannot give is refused."""

    server: LogServer

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.split("/")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        if len(parts) != 5 or parts[:2] != ["", "containerLogs"]:
            return self.fail(404, f"{url.path} not found: this node agent serves only "
                             "/containerLogs/<namespace>/<pod>/<container>")
        refused = sorted(k for k in query if k not in {"follow", "tailLines", "limitBytes",
                                                        "stream"} and query[k] != "false")
        if refused or query.get("stream", "All") != "All":
            return self.fail(400, f"not supported by the ferry node agent: "
                             f"{', '.join(refused or ['stream'])}")
        container = self.server.agent.container(*parts[2:])
        if container is None:
            return self.fail(404, f'container "{parts[4]}" in pod "{parts[3]}" not found')
        tail = int(query["tailLines"]) if "tailLines" in query else None
        budget = int(query["limitBytes"]) if "limitBytes" in query else None
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        with container.log_path.open("rb") as log_file:
            data = log_file.read()
            if tail is not None:
                data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail > 0 else b""
            while True:
                if budget is not None:
                    data, budget = data[:budget], budget - len(data[:budget])
                self.wfile.write(data)
                self.wfile.flush()
                if query.get("follow") != "true" or budget == 0:
                    return None
                finished = container.process.poll() is not None
                data = log_file.read()
                if not data and finished:
                    return None
                if not data:
                    time.sleep(0.2)

    def fail(self, code: int, message: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(message.encode())

    def log_message(self, format: str, *args: Any) -> None:
        log.info("log request: " + format, *args)


def with_process_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run a Node's pods as local processes.")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config.load_kube_config(options.kubeconfig)
    agent = NodeAgent(options.node_name, options.state_dir)
    agent.serve_logs()
    agent.register()
    agent.renew_lease()

    def on_signal(signum: int, _frame: object) -> None:
        agent.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=agent.heartbeat_forever, daemon=True).start()
    agent.watch_pods_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
