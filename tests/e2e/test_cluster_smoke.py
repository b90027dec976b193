"""The local cluster is real: the Job controller, the scheduler and the node agent
together run Indexed Jobs, report per-index outcomes, and stop processes on delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hack import cluster

from .support import Kubectl

REPO = Path(cluster.__file__).resolve().parent.parent
"""The repository root: `python -m hack.cluster` runs from there, as the Makefile does."""

INDEX_SCRIPT = (
    "import os, pathlib; i = os.environ['JOB_COMPLETION_INDEX']; print('index', i); "
    "pathlib.Path(os.environ['FERRY_TERMINATION_MESSAGE_PATH']).write_text('done ' + i); "
    "raise SystemExit(int(i) == int(os.environ.get('FAIL_INDEX', '-1')))"
)


def indexed_job(name: str, completions: int, env: dict[str, str] | None = None,
                backoff_limit_per_index: int | None = None) -> str:
    spec: dict[str, object] = {
        "completionMode": "Indexed", "completions": completions, "parallelism": completions,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "python:3.11", "command": ["python", "-c", INDEX_SCRIPT],
            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        }]}},
    }
    if backoff_limit_per_index is not None:
        spec["backoffLimitPerIndex"] = backoff_limit_per_index
    return yaml.safe_dump({"apiVersion": "batch/v1", "kind": "Job",
                           "metadata": {"name": name}, "spec": spec})


def wait_for(kubectl: Kubectl, namespace: str, resource: str, jsonpath: str,
             expected: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = kubectl("get", resource, "-n", namespace, "-o", f"jsonpath={jsonpath}",
                       check=False).stdout
        if seen == expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"{resource} {jsonpath}: expected {expected!r}, last saw {seen!r}")


def test_indexed_job_runs_every_index_once(
    kubectl: Kubectl, namespace: str, node_pod_logs: Callable[[str, str, str], str]
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=indexed_job("three", 3))
    kubectl("wait", "-n", namespace, "--for=condition=Complete", "job/three", "--timeout=90s")

    assert kubectl("get", "job/three", "-n", namespace, "-o",
                   "jsonpath={.status.completedIndexes}").stdout == "0-2"
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "job-name=three",
                              "-o", "json").stdout)["items"]
    seen = {}
    for pod in pods:
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        logs = node_pod_logs(namespace, pod["metadata"]["name"], "main")
        assert logs == f"index {index}\n"
        state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert state["exitCode"] == 0
        assert state["message"] == f"done {index}"
        seen[index] = pod["status"]["phase"]
    assert seen == {"0": "Succeeded", "1": "Succeeded", "2": "Succeeded"}


def test_failing_index_is_reported_per_index(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-",
            input=indexed_job("one-fails", 3, {"FAIL_INDEX": "1"}, backoff_limit_per_index=0))
    kubectl("wait", "-n", namespace, "--for=condition=Failed", "job/one-fails",
            "--timeout=90s")
    status = json.loads(kubectl("get", "job/one-fails", "-n", namespace, "-o", "json")
                        .stdout)["status"]
    assert status["failedIndexes"] == "1"
    assert status["completedIndexes"] == "0,2"


def test_deleting_a_running_pod_kills_its_process(kubectl: Kubectl, namespace: str) -> None:
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 2, "containers": [{
            "name": "main", "image": "python:3.11",
            "command": ["python", "-c", "import time; time.sleep(600)"],
        }]},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(pod))
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/sleeper", "--timeout=60s")
    container_id = kubectl("get", "pod/sleeper", "-n", namespace, "-o",
                           "jsonpath={.status.containerStatuses[0].containerID}").stdout
    pid = int(container_id.removeprefix("process://"))
    os.kill(pid, 0)

    kubectl("delete", "pod/sleeper", "-n", namespace, "--timeout=30s")

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert kubectl("get", "pod/sleeper", "-n", namespace, check=False).returncode == 1


def test_pod_process_acts_as_its_service_account(
    kubectl: Kubectl, namespace: str, node_pod_logs: Callable[[str, str, str], str]
) -> None:
    script = (
        "from kubernetes import client, config; config.load_kube_config(); "
        "r = client.AuthenticationV1Api().create_self_subject_review("
        "{'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'}); "
        "print(r.status.user_info.username)"
    )
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "whoami"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "python:3.11", "command": ["python", "-c", script],
        }]},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(pod))
    wait_for(kubectl, namespace, "pod/whoami", "{.status.phase}", "Succeeded")
    assert node_pod_logs(namespace, "whoami", "main") == (
        f"system:serviceaccount:{namespace}:default\n"
    )


def test_cluster_up_twice_is_a_noop_and_down_leaves_nothing(tmp_path: Path) -> None:
    """A second, throwaway cluster on other ports, so the session's cluster stays up."""
    env = {**os.environ, "FERRY_CLUSTER_DIR": str(tmp_path / "c"),
           "FERRY_CLUSTER_PORT_OFFSET": "100"}
    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hack.cluster", command], env=env,
                              cwd=REPO, text=True, capture_output=True, timeout=180,
                              check=False)

    try:
        assert run("up").returncode == 0
        pids = {p.stem: p.read_text() for p in (tmp_path / "c" / "pids").iterdir()}
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager",
                             "kube-scheduler", "node-agent"}
        again = run("up")
        assert again.returncode == 0, again.stderr
        assert {p.stem: p.read_text() for p in (tmp_path / "c" / "pids").iterdir()} == pids
    finally:
        assert run("down").returncode == 0
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    assert run("status").returncode == 1


def test_busy_port_is_named(kubeconfig: str, tmp_path: Path) -> None:
    """Starting a cluster whose ports the session's cluster holds names the port."""
    if kubeconfig != str(cluster.ADMIN_KUBECONFIG):
        pytest.skip("only meaningful while the local cluster holds its ports")
    env = {**os.environ, "FERRY_CLUSTER_DIR": str(tmp_path / "c")}
    result = subprocess.run([sys.executable, "-m", "hack.cluster", "up"], env=env, cwd=REPO,
                            text=True, capture_output=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: port {cluster.ETCD_PORT} (for etcd) is already in use by another process: "
        "stop it or run `make cluster-down`"
    )
