"""hack/nodeagent.py's /containerLogs: what the API server asks a kubelet for on
`kubectl logs`, answered from a real process's log file over TLS with the local
cluster's certificates (hack/pki.py)."""

from __future__ import annotations

import http.client
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hack import nodeagent
from hack.pki import ensure_pki


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[nodeagent.NodeAgent]:
    """A node agent serving the log of one container whose process prints, pauses and
    prints again (so follow has to wait for it)."""
    root = tmp_path_factory.mktemp("nodeagent")
    ensure_pki(root / "pki")
    agent = nodeagent.NodeAgent("ferry-node", root / "pods")
    agent.ca_file = str(root / "pki" / "ca.crt")
    agent.serve_logs()
    directory = root / "pods" / "team-a_shipped-2-0-abcde"
    directory.mkdir(parents=True)
    log_path = directory / "worker.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(["sh", "-c", "echo one; echo two >&2; sleep 1; echo three"],
                                   stdout=out, stderr=subprocess.STDOUT)
    container = nodeagent.RunningContainer("worker", process, nodeagent.now(),
                                           directory / "worker.termination-log", log_path)
    agent.pods["uid"] = nodeagent.PodRun("team-a", "shipped-2-0-abcde", "uid", [container])
    yield agent
    process.wait()


def get(agent: nodeagent.NodeAgent, path: str, identity: str | None = "apiserver-kubelet-client"
        ) -> tuple[int, str]:
    pki = Path(agent.ca_file).parent
    context = ssl.create_default_context(cafile=agent.ca_file)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the API server does not check it either (no CA)
    if identity:
        context.load_cert_chain(pki / f"{identity}.crt", pki / f"{identity}.key")
    connection = http.client.HTTPSConnection("127.0.0.1", agent.log_port, context=context,
                                             timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


LOG = "/containerLogs/team-a/shipped-2-0-abcde/worker"


def test_the_node_reports_where_it_serves_logs(agent: nodeagent.NodeAgent) -> None:
    assert agent.log_port > 0
    assert agent.node_status()["daemonEndpoints"] == {
        "kubeletEndpoint": {"Port": agent.log_port}}


def test_follow_tail_and_limit(agent: nodeagent.NodeAgent) -> None:
    assert get(agent, f"{LOG}?follow=true") == (200, "one\ntwo\nthree\n")
    assert get(agent, LOG) == (200, "one\ntwo\nthree\n")
    assert get(agent, f"{LOG}?tailLines=1&stream=All") == (200, "three\n")
    assert get(agent, f"{LOG}?tailLines=0") == (200, "")
    assert get(agent, f"{LOG}?limitBytes=5&follow=true") == (200, "one\nt")


def test_what_a_merged_untimestamped_log_cannot_give_is_refused(agent: nodeagent.NodeAgent) -> None:
    assert get(agent, f"{LOG}?timestamps=true") == (
        400, "not supported by the ferry node agent: timestamps")
    assert get(agent, f"{LOG}?stream=Stderr") == (
        400, "not supported by the ferry node agent: stream")
    assert get(agent, "/containerLogs/team-a/shipped-2-0-abcde/sidecar") == (
        404, 'container "sidecar" in pod "shipped-2-0-abcde" not found')
    assert get(agent, "/exec/team-a/shipped-2-0-abcde/worker")[0] == 404


def test_a_client_without_a_cluster_certificate_is_turned_away(agent: nodeagent.NodeAgent) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(agent, LOG, identity=None)
