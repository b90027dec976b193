"""charts/ferry without helm: its CRDs, its values and its metadata.

Rendering, `helm lint`, kubeconform and the RBAC checks against a live API server are in
tests/e2e/test_chart.py (they need the helm and kubeconform binaries).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry.controller.leader import Timing
from ferry.reconcile.jobspec import WorkerDefaults

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ferry"
KEY = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def test_chart_crds_are_the_generated_crds() -> None:
    generated = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    shipped = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert generated == [
        "ferry.dev_exportjobs.yaml", "ferry.dev_importjobs.yaml", "ferry.dev_jobgroups.yaml"]
    assert shipped == generated, "charts/ferry/crds/ differs: cp crds/*.yaml charts/ferry/crds/"
    for name in generated:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"charts/ferry/crds/{name} is stale: make crds (cp crds/*.yaml charts/ferry/crds/)"
        )


def test_chart_crds_are_plain_files() -> None:
    # Helm warns about every symlink it follows; the chart ships copies.
    for path in (CHART / "crds").iterdir():
        assert not path.is_symlink(), path


def test_chart_versions_follow_the_python_distribution() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "ferry"
    assert chart["appVersion"] == project["version"]


def documented_keys(text: str) -> tuple[list[str], list[str]]:
    """(every leaf key path, the leaf key paths neither they nor an ancestor commented)."""
    lines = text.splitlines()
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    leaves: list[str] = []
    undocumented: list[str] = []
    for number, line in enumerate(lines):
        match = KEY.match(line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        previous = next((lines[i].strip() for i in range(number - 1, -1, -1)
                         if lines[i].strip()), "")
        documented = previous.startswith("#") or any(d for _, _, d in stack)
        path = ".".join([k for _, k, _ in stack] + [match["key"]])
        following = next((lines[i] for i in range(number + 1, len(lines))
                          if lines[i].strip() and not lines[i].lstrip().startswith("#")), "")
        is_parent = not match["rest"].strip() and (
            len(following) - len(following.lstrip()) > indent)
        if not is_parent:
            leaves.append(path)
            if not documented:
                undocumented.append(path)
        stack.append((indent, match["key"], previous.startswith("#")))
    return leaves, undocumented


def test_every_value_is_documented() -> None:
    leaves, undocumented = documented_keys((CHART / "values.yaml").read_text())
    assert len(leaves) > 40
    assert undocumented == []


def test_documentation_check_catches_a_bare_key() -> None:
    text = "a:\n  # -- documented\n  b: 1\n  c: 2\n# -- parent\nd:\n  e: 3\n"
    assert documented_keys(text) == (["a.b", "a.c", "d.e"], ["a.c"])


def test_defaults_pass_pod_security_restricted_and_more() -> None:
    operator = values()["operator"]
    pod, container = operator["podSecurityContext"], operator["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 65532
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(("key", "expected"), [
    ("operator.replicas", 1),
    ("operator.leaderElection.enabled", True),
    ("operator.leaderElection.leaseDurationSeconds", 15),
    ("operator.leaderElection.renewDeadlineSeconds", 10),
    ("operator.leaderElection.retryPeriodSeconds", 2),
    ("webhook.enabled", True),
    ("webhook.recordUsers", True),
    ("webhook.certificate.source", "helm"),
    ("webhook.failurePolicy", "Fail"),
    ("watchNamespaces", []),
    ("worker.serviceAccount.name", "ferry-worker"),
    ("worker.podPatchPolicy.enabled", True),
    ("metrics.port", 9090),
    ("rbac.create", True),
    # Roles for namespace users by default (multi-tenant clusters expect them); the
    # Prometheus Operator's kinds only on request (their CRDs may not exist).
    ("rbac.userRoles.create", True),
    ("rbac.userRoles.aggregate", True),
    ("metrics.serviceMonitor.enabled", False),
    ("metrics.prometheusRule.enabled", False),
    ("metrics.prometheusRule.staleAfterSeconds", 93600),
])
def test_defaults(key: str, expected: object) -> None:
    node: Any = values()
    for part in key.split("."):
        node = node[part]
    assert node == expected


def test_worker_service_account_default_matches_the_operator() -> None:
    source = (ROOT / "operator" / "ferry" / "controller" / "handlers.py").read_text()
    name = values()["worker"]["serviceAccount"]["name"]
    assert f'"FERRY_WORKER_SERVICE_ACCOUNT", "{name}"' in source


def test_leader_election_defaults_are_the_operators() -> None:
    election = values()["operator"]["leaderElection"]
    timing = Timing()
    assert (election["leaseDurationSeconds"], election["renewDeadlineSeconds"],
            election["retryPeriodSeconds"]) == (
        timing.lease_duration, timing.renew_deadline, timing.retry_period)


def test_worker_uid_matches_the_job_spec() -> None:
    uid = values()["operator"]["podSecurityContext"]["runAsUser"]
    assert WorkerDefaults(image="x", service_account="y").run_as_user == uid


def schema_paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, child in schema.get("properties", {}).items():
        paths.append(prefix + key)
        paths += schema_paths(child, f"{prefix}{key}.")
    return paths


def test_values_schema_names_only_existing_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False  # a typo in a top-level key is an error
    defaults = values()
    for path in schema_paths(schema):
        node: Any = defaults
        for part in path.split("."):
            if path == "global":
                break
            assert isinstance(node, dict) and part in node, f"schema names unknown value {path}"
            node = node[part]
