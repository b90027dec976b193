"""charts/ferry against real tools and a real API server.

* `helm lint --strict` and `helm template | kubeconform -strict` in each chart shape,
  with offline schemas (hack/kubeconform_schemas.py: the pinned k8s.io/kubernetes
  module's OpenAPI v3 documents plus crds/).
* The rendered pod specs pass Pod Security "restricted", enforced by the local
  kube-apiserver (server-side dry run in a namespace labelled enforce=restricted).
* The chart's RBAC, applied to the local cluster, allows the operator exactly what the
  code calls and refuses the rest (`kubectl auth can-i --as=<its ServiceAccount>`); the
  worker, with a real token bound to its pod, can patch its own pod's progress
  annotation and nothing else.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ferry.constants import EXPORTJOB_PLURAL, IMPORTJOB_PLURAL
from ferry.controller import admission as admission_handlers
from ferry.controller.jobgroups import JobGroups
from ferry.controller.runjobs import RunJobs
from ferry.reconcile import admission
from ferry.reconcile.batches import Slice
from ferry.reconcile.jobspec import Owner, WorkerDefaults, build_job
from tests.unit.builders import spec

from .conftest import Kubectl

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ferry"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
              "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                  "ValidatingAdmissionPolicyBinding"}
SHAPES = {
    "cluster-wide": [],
    "namespaced+webhook": ["--set", "watchNamespaces={team-a,team-b}",
                           "--set", "webhook.enabled=true"],
    "cert-manager": ["--set", "webhook.enabled=true",
                     "--set", "webhook.certificate.source=cert-manager"],
    "webhook-off": ["--set", "webhook.enabled=false"],
    "monitoring": ["--set", "metrics.serviceMonitor.enabled=true",
                   "--set", "metrics.prometheusRule.enabled=true",
                   "--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack"],
}

# The operator's API calls (operator/ferry/controller and kopf), rule by rule.
OPERATOR_NAMESPACED_RULES = [
    {"apiGroups": ["ferry.dev"], "resources": ["exportjobs", "importjobs"],
     "verbs": ["get", "list", "watch", "patch", "delete"]},
    {"apiGroups": ["ferry.dev"], "resources": ["jobgroups"],
     "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": ["ferry.dev"],
     "resources": ["exportjobs/status", "importjobs/status", "jobgroups/status"],
     "verbs": ["get", "update", "patch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"],
     "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
CRD_DISCOVERY = {"apiGroups": ["apiextensions.k8s.io"],
                 "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]}
NAMESPACE_WATCH = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}

# (verb, resource, subresource) the operator must be allowed in a watched namespace.
OPERATOR_ALLOWED = [
    ("get", "exportjobs.ferry.dev", ""), ("list", "exportjobs.ferry.dev", ""),
    ("watch", "exportjobs.ferry.dev", ""), ("delete", "exportjobs.ferry.dev", ""),
    ("patch", "exportjobs.ferry.dev", ""),
    ("get", "jobgroups.ferry.dev", ""), ("watch", "jobgroups.ferry.dev", ""),
    ("update", "exportjobs.ferry.dev", "status"), ("patch", "exportjobs.ferry.dev", "status"),
    ("update", "jobgroups.ferry.dev", "status"),
    ("get", "importjobs.ferry.dev", ""), ("list", "importjobs.ferry.dev", ""),
    ("watch", "importjobs.ferry.dev", ""), ("delete", "importjobs.ferry.dev", ""),
    ("patch", "importjobs.ferry.dev", ""), ("update", "importjobs.ferry.dev", "status"),
    ("create", "jobs.batch", ""), ("delete", "jobs.batch", ""), ("watch", "jobs.batch", ""),
    ("list", "pods", ""),
    ("create", "events", ""), ("create", "events.events.k8s.io", ""),
]
# ... and must be refused: secrets in any form, creating pods (which would imply reading
# secrets), writing specs (GitOps owns them), anything it does not call.
OPERATOR_REFUSED = [
    ("get", "secrets", ""), ("list", "secrets", ""), ("watch", "secrets", ""),
    ("create", "pods", ""), ("patch", "pods", ""), ("delete", "pods", ""),
    ("watch", "pods", ""), ("create", "pods", "exec"), ("get", "pods", "log"),
    ("create", "exportjobs.ferry.dev", ""), ("update", "exportjobs.ferry.dev", ""),
    ("create", "importjobs.ferry.dev", ""), ("update", "importjobs.ferry.dev", ""),
    ("update", "jobs.batch", ""), ("patch", "jobgroups.ferry.dev", ""),
    ("patch", "jobs.batch", ""), ("get", "configmaps", ""), ("create", "serviceaccounts", ""),
    ("create", "serviceaccounts", "token"),
    ("create", "rolebindings.rbac.authorization.k8s.io", ""),
    ("delete", "leases.coordination.k8s.io", ""),
]
LEADER_ELECTION = [("get", "leases.coordination.k8s.io", ""),
                   ("create", "leases.coordination.k8s.io", ""),
                   ("update", "leases.coordination.k8s.io", "")]
"""Granted in the release namespace only (the Lease Role)."""
WORKER_REFUSED = [
    ("get", "pods", ""), ("list", "pods", ""), ("create", "pods", ""), ("delete", "pods", ""),
    ("get", "secrets", ""), ("list", "secrets", ""), ("create", "jobs.batch", ""),
    ("list", "jobs.batch", ""), ("get", "exportjobs.ferry.dev", ""),
    ("patch", "exportjobs.ferry.dev", "status"), ("create", "events", ""),
    ("patch", "pods", "status"),
]


def tool(name: str) -> str:
    result = subprocess.run(["bash", str(ROOT / "hack" / "build-tools.sh"), "--path", name],
                            capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0:
        pytest.fail(f"cannot build {name}: {result.stderr[-2000:]}")
    return result.stdout.strip()


@pytest.fixture(scope="module")
def helm() -> str:
    return tool("helm")


@pytest.fixture(scope="module")
def kubeconform() -> str:
    return tool("kubeconform")


@pytest.fixture(scope="module")
def schema_location() -> str:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "hack" / "kubeconform_schemas.py"),
         "--quiet"], capture_output=True, text=True, timeout=600, check=True)
    return result.stdout.strip()


def kubernetes_version() -> str:
    for line in (ROOT / "hack" / "versions.mk").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION"):
            return line.split(":=")[1].strip()
    raise AssertionError("KUBERNETES_VERSION missing from hack/versions.mk")


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="module")
def render_text(helm: str) -> Callable[..., str]:
    def run(*flags: str, release: str = "ferry", namespace: str = "ferry-system") -> str:
        result = subprocess.run(
            [helm, "template", release, str(CHART), "--namespace", namespace,
             "--kube-version", kubernetes_version(), *flags],
            capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr  # no warnings (e.g. symlinks)
        return result.stdout

    return run


@pytest.fixture(scope="module")
def render(render_text: Callable[..., str]) -> Render:
    def run(*flags: str, release: str = "ferry",
            namespace: str = "ferry-system") -> list[dict[str, Any]]:
        docs = yaml.safe_load_all(render_text(*flags, release=release, namespace=namespace))
        return [d for d in docs if d]

    return run


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


# --- helm lint and kubeconform ---------------------------------------------------------

@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_helm_lint_strict(helm: str, shape: str) -> None:
    result = subprocess.run(
        [helm, "lint", "--strict", "--kube-version", kubernetes_version(), str(CHART),
         *SHAPES[shape]], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def kubeconform_run(kubeconform: str, schema_location: str, manifests: str,
                    *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubeconform, "-strict", "-summary", "-output", "json",
         "-schema-location", schema_location, *flags, "-"],
        input=manifests, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("shape", "resources"), [
    ("cluster-wide", 21), ("namespaced+webhook", 28), ("cert-manager", 22),
    ("webhook-off", 17), ("monitoring", 23)])
def test_rendered_chart_is_valid_kubernetes(
    render_text: Callable[..., str], kubeconform: str, schema_location: str,
    shape: str, resources: int,
) -> None:
    manifests = render_text("--include-crds", *SHAPES[shape])
    # cert-manager's Certificate and Issuer and the Prometheus Operator's ServiceMonitor
    # and PrometheusRule have no offline schema: the only skips (their fields are
    # checked by the tests below).
    result = kubeconform_run(kubeconform, schema_location, manifests,
                             "-skip", "Certificate,Issuer,ServiceMonitor,PrometheusRule")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    skipped = 2 if shape in ("cert-manager", "monitoring") else 0
    assert summary == {"valid": resources - skipped, "invalid": 0, "errors": 0,
                       "skipped": skipped}


def test_kubeconform_refuses_an_unknown_field_offline(
    render: Render, kubeconform: str, schema_location: str
) -> None:
    """The control: the same schemas reject a typo, so the passes above mean something."""
    deployment = only(render(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    result = kubeconform_run(kubeconform, schema_location, yaml.safe_dump(deployment))
    assert result.returncode == 1
    assert "additional properties 'securityContex' not allowed" in result.stdout


def test_kubeconform_validates_ferry_kinds_from_crds(kubeconform: str,
                                                     schema_location: str) -> None:
    examples = "---\n".join(p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml")))
    assert kubeconform_run(kubeconform, schema_location, examples).returncode == 0
    bad = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob",
           "metadata": {"name": "x"}, "spec": {"title": "t"}}
    result = kubeconform_run(kubeconform, schema_location, yaml.safe_dump(bad))
    assert result.returncode == 1
    assert "missing properties 'source', 'output'" in result.stdout


# --- what the templates say --------------------------------------------------------------

LEADER_ELECTION_ARGS = ["--leader-elect", "--leader-elect-lease-name=ferry-operator",
                        "--leader-elect-lease-duration=15", "--leader-elect-renew-deadline=10",
                        "--leader-elect-retry-period=2"]


def test_operator_deployment(render: Render) -> None:
    deployment = only(render(), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate"}  # safe: one leader at a time
    alone = only(render("--set", "operator.leaderElection.enabled=false"), "Deployment")
    assert alone["spec"]["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "ferry-operator"
    (container,) = pod["containers"]
    assert container["image"] == "ferry-operator:0.1.0"
    assert container["args"] == [
        "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=9090",
        *LEADER_ELECTION_ARGS, "--webhook-port=9443",
        "--webhook-cert=/etc/ferry/webhook/tls.crt", "--webhook-key=/etc/ferry/webhook/tls.key"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FERRY_WORKER_IMAGE"] == "ferry-worker:0.1.0"
    assert env["FERRY_WORKER_SERVICE_ACCOUNT"] == "ferry-worker"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"healthz": 8080, "metrics": 9090, "webhook": 9443}
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "webhook-tls", "mountPath": "/etc/ferry/webhook", "readOnly": True}]
    assert pod["volumes"][0] == {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}
    off = only(render("--set", "webhook.enabled=false"), "Deployment")["spec"]["template"]
    assert off["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    assert "webhook" not in {p["name"] for p in off["spec"]["containers"][0]["ports"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"] == "512Mi"


def test_namespaced_mode_passes_each_namespace(render: Render) -> None:
    docs = render("--set", "watchNamespaces={team-a,team-b}", "--set", "operator.verbose=true")
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--namespace=team-a", "--namespace=team-b",
                                 "--liveness=http://0.0.0.0:8080/healthz",
                                 "--metrics-port=9090", *LEADER_ELECTION_ARGS,
                                 "--webhook-port=9443",
                                 "--webhook-cert=/etc/ferry/webhook/tls.crt",
                                 "--webhook-key=/etc/ferry/webhook/tls.key", "--verbose"]


def test_metrics_service(render: Render) -> None:
    docs = render("--set", "metrics.port=9464")
    service = only(docs, "Service", "ferry-metrics")
    args = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--metrics-port=9464" in args
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"
    off = render("--set", "metrics.enabled=false")
    assert not [d for d in off
                if d["kind"] == "Service" and d["metadata"]["name"] == "ferry-metrics"]
    off_args = only(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in off_args if a.startswith("--metrics-port")]


def test_webhook_is_on_by_default_and_can_be_turned_off(render: Render) -> None:
    kinds = {d["kind"] for d in render()}
    assert {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} <= kinds
    off = render("--set", "webhook.enabled=false")
    assert not {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                "Secret"} & {d["kind"] for d in off}
    args = only(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--webhook")]
    no_users = {d["kind"] for d in render("--set", "webhook.recordUsers=false")}
    assert "MutatingWebhookConfiguration" not in no_users
    assert "ValidatingWebhookConfiguration" in no_users


def test_webhook_with_helm_certificates(render: Render) -> None:
    docs = render("--set", "webhook.enabled=true")
    config = only(docs, "ValidatingWebhookConfiguration")
    hooks = {h["name"]: h for h in config["webhooks"]}
    assert set(hooks) == {"validate.exportjobs.ferry.dev", "delete-guard.exportjobs.ferry.dev",
                          "validate.jobgroups.ferry.dev", "validate.importjobs.ferry.dev",
                          "delete-guard.importjobs.ferry.dev"}
    assert hooks["validate.exportjobs.ferry.dev"]["rules"][0]["operations"] == [
        "CREATE", "UPDATE"]
    assert hooks["delete-guard.exportjobs.ferry.dev"]["rules"][0]["operations"] == ["DELETE"]
    assert hooks["validate.jobgroups.ferry.dev"]["rules"][0]["resources"] == ["jobgroups"]
    mutating = {h["name"]: h for h in only(docs, "MutatingWebhookConfiguration")["webhooks"]}
    assert set(mutating) == {"record-user.exportjobs.ferry.dev",
                             "record-user.jobgroups.ferry.dev",
                             "record-user.importjobs.ferry.dev"}
    secret = only(docs, "Secret", "ferry-webhook-tls")
    for hook in [*hooks.values(), *mutating.values()]:
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["clientConfig"]["service"]["name"] == "ferry-webhook"
        assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert all(h["reinvocationPolicy"] == "Never" for h in mutating.values())
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "webhook-tls", "secret": {"secretName": "ferry-webhook-tls",
                                              "defaultMode": 0o440}} in pod["volumes"]
    container = pod["containers"][0]
    assert {"name": "webhook-tls", "mountPath": "/etc/ferry/webhook",
            "readOnly": True} in container["volumeMounts"]
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    assert [a for a in container["args"] if a.startswith("--webhook")] == [
        "--webhook-port=9443", "--webhook-cert=/etc/ferry/webhook/tls.crt",
        "--webhook-key=/etc/ferry/webhook/tls.key"]


def test_webhook_paths_are_the_operators_handler_ids(render: Render) -> None:
    """kopf serves each handler at /<handler id>: a path the operator does not serve would
    make the API server refuse (failurePolicy Fail) every ExportJob change."""
    docs = render()
    paths = {h["clientConfig"]["service"]["path"]
             for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
             for h in only(docs, kind)["webhooks"]}
    assert paths == {f"/{i}" for i in admission.WEBHOOK_IDS}
    assert admission_handlers.validate_exportjob is not None  # registered with kopf on import


def test_webhook_namespaces_follow_the_watched_ones(render: Render) -> None:
    docs = render("--set", "watchNamespaces={team-a,team-b}")
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for hook in only(docs, kind)["webhooks"]:
            assert hook["namespaceSelector"] == {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "In",
                "values": ["team-a", "team-b"]}]}
    assert all("namespaceSelector" not in h
               for h in only(render(), "ValidatingWebhookConfiguration")["webhooks"])


def test_webhook_certificate_is_for_the_service(render: Render, tmp_path: Path) -> None:
    secret = only(render("--set", "webhook.enabled=true"), "Secret")
    for key in ("ca.crt", "tls.crt"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")],
        capture_output=True, text=True, timeout=30, check=False)
    assert verify.returncode == 0, verify.stderr
    names = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "tls.crt")],
        capture_output=True, text=True, timeout=30, check=True).stdout
    assert "DNS:ferry-webhook.ferry-system.svc," in names
    assert "DNS:ferry-webhook.ferry-system.svc.cluster.local" in names


def test_webhook_with_cert_manager(render: Render) -> None:
    docs = render("--set", "webhook.enabled=true",
                  "--set", "webhook.certificate.source=cert-manager")
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        config = only(docs, kind)
        assert config["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": "ferry-system/ferry-webhook"}
        assert all("caBundle" not in h["clientConfig"] for h in config["webhooks"])
    certificate = only(docs, "Certificate")
    assert certificate["spec"]["secretName"] == "ferry-webhook-tls"
    assert certificate["spec"]["issuerRef"] == {"name": "ferry-webhook", "kind": "Issuer"}
    assert only(docs, "Issuer")["spec"] == {"selfSigned": {}}
    own = render("--set", "webhook.enabled=true",
                 "--set", "webhook.certificate.source=cert-manager",
                 "--set", "webhook.certificate.certManager.issuerRef.name=corp-ca",
                 "--set", "webhook.certificate.certManager.issuerRef.kind=ClusterIssuer")
    assert not [d for d in own if d["kind"] == "Issuer"]
    assert only(own, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca",
                                                             "kind": "ClusterIssuer"}


@pytest.mark.parametrize(("flags", "message"), [
    (["--set", "operator.replicas=2", "--set", "operator.leaderElection.enabled=false"],
     "operator.replicas > 1 needs operator.leaderElection.enabled=true"),
    (["--set", "watchNamespace={a}"], "additional properties 'watchNamespace' not allowed"),
    (["--set", "webhook.enabled=true", "--set", "webhook.certificate.source=vault"],
     "at '/webhook/certificate/source': value must be one of 'helm', 'cert-manager'"),
    (["--set", "watchNamespaces={Team_A}"], "at '/watchNamespaces/0'"),
    (["--set", "webhook.failurePolicy=Maybe"], "at '/webhook/failurePolicy'"),
])
def test_bad_values_fail_with_a_clear_message(helm: str, flags: list[str], message: str) -> None:
    result = subprocess.run([helm, "template", "ferry", str(CHART), *flags],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert message in result.stderr


def test_operator_rbac_is_exactly_what_the_code_calls(render: Render) -> None:
    docs = render()
    assert only(docs, "ClusterRole", "ferry-operator")["rules"] == [
        *OPERATOR_NAMESPACED_RULES, CRD_DISCOVERY, NAMESPACE_WATCH]
    namespaced = render("--set", "watchNamespaces={team-a,team-b}")
    assert only(namespaced, "ClusterRole", "ferry-operator-discovery")["rules"] == [
        CRD_DISCOVERY, NAMESPACE_WATCH]
    roles = [d for d in namespaced if d["kind"] == "Role"
             and d["metadata"]["name"] == "ferry-operator"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == OPERATOR_NAMESPACED_RULES
    assert not [d for d in namespaced if d["kind"] == "ClusterRole"
                and d["metadata"]["name"] == "ferry-operator"]


CALL = re.compile(r"\.(?P<verb>get|list|create|delete|patch|replace|read)_namespaced_"
                  r"(?P<kind>custom_object_status|custom_object|job|pod|event|lease)\((?P<args>[^)]*)")
WATCH = re.compile(r"@kopf\.on\.event\((?P<args>[^)]*)\)")


def ferry_plurals(args: str, verb: str) -> list[str]:
    """The Ferry resources a custom-object call is made for. The client layer
    (controller/kube.py) takes the plural as an argument: such a call is made for every
    kind of the reconcile loop, a metadata patch (the finalizer) only for kinds that
    hold one."""
    if "plural" not in args.split(", "):
        return ["jobgroups" if "JOBGROUP_PLURAL" in args else "exportjobs"]
    kinds = [(EXPORTJOB_PLURAL, RunJobs.finalizer), (IMPORTJOB_PLURAL, RunJobs.finalizer),
             (JobGroups.plural, JobGroups.finalizer)]
    return [plural for plural, finalizer in kinds if verb != "patch" or finalizer is not None]


def controller_api_calls() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every Kubernetes API call the controller makes:
    the client calls in operator/ferry/controller/*.py and kopf's watches."""
    calls: set[tuple[str, str, str]] = set()
    for path in (ROOT / "operator" / "ferry" / "controller").glob("*.py"):
        text = path.read_text()
        for match in CALL.finditer(text):
            verb = {"replace": "update", "read": "get"}.get(match["verb"], match["verb"])
            kind, args = match["kind"], match["args"]
            if kind.startswith("custom_object"):
                for plural in ferry_plurals(args, verb):
                    resource = plural + ("/status" if kind.endswith("status") else "")
                    calls.add(("ferry.dev", resource, verb))
            else:
                group = {"job": "batch", "lease": "coordination.k8s.io"}.get(kind, "")
                calls.add((group, f"{kind}s", verb))
        for match in WATCH.finditer(text):
            args = [a.strip().strip('"') for a in match["args"].split(",")]
            group, resource = ("ferry.dev", ferry_plurals(args[2], "watch")[0]) \
                if args[0] == "GROUP" else (args[0], args[2])
            calls |= {(group, resource, "list"), (group, resource, "watch")}
    return calls


def test_rbac_covers_every_api_call_in_the_controller(render: Render) -> None:
    docs = render()
    rules = [*only(docs, "ClusterRole", "ferry-operator")["rules"],
             *only(docs, "Role", "ferry-operator-leader-election")["rules"]]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    calls = controller_api_calls()
    assert ("ferry.dev", "exportjobs/status", "update") in calls  # the scan sees the code
    assert ("batch", "jobs", "create") in calls
    assert ("", "pods", "list") in calls
    assert calls - granted == set()
    assert {(g, r, v) for g, r, v in granted if r == "pods"} == {("", "pods", "list")}


def test_no_rule_grants_secrets_pod_creation_or_wildcards(render: Render) -> None:
    for flags in ([], ["--set", "watchNamespaces={a}"]):
        for doc in render(*flags):
            for rule in doc.get("rules", []) if doc["kind"].endswith("Role") else []:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                assert "secrets" not in rule["resources"]
                if "pods" in rule["resources"]:
                    assert "create" not in rule["verbs"]


def test_worker_accounts_per_namespace(render: Render) -> None:
    default = render()
    assert [d["metadata"]["namespace"] for d in default
            if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "ferry-worker"] == [
        "ferry-system"]
    docs = render("--set", "watchNamespaces={a,b}", "--set", "worker.namespaces={b,c}")
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        assert sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == kind
                      and "worker" in d["metadata"]["name"]) == ["b", "c"]
    role = only([d for d in docs if d["metadata"].get("namespace") == "c"], "Role")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]
    binding = only(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0][
        "values"] == ["b", "c"]
    policy = only(docs, "ValidatingAdmissionPolicy")
    assert policy["spec"]["matchConditions"][0]["expression"] == (
        'request.userInfo.username in ["system:serviceaccount:b:ferry-worker",'
        '"system:serviceaccount:c:ferry-worker"]')


# --- against the live API server ---------------------------------------------------------

def can_i(kubectl: Kubectl, user: str, verb: str, resource: str, subresource: str,
          *scope: str) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={user}", *scope]
    if subresource:
        args.append(f"--subresource={subresource}")
    result = kubectl(*args, check=False)
    assert result.stdout.strip() in {"yes", "no"}, result.stdout + result.stderr
    return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def other_namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"t-chart-other-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def install_rbac(kubectl: Kubectl, render: Render) -> Iterator[Callable[..., str]]:
    """Applies the chart's ServiceAccounts, RBAC and admission policy; returns the release
    name. Cluster-scoped objects are deleted afterwards (namespaces take the rest)."""
    applied: list[dict[str, Any]] = []

    def install(namespace: str, *flags: str) -> str:
        release = f"fe2e-{secrets.token_hex(3)}"
        docs = [d for d in render(*flags, release=release, namespace=namespace)
                if d["kind"] in RBAC_KINDS]
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        applied.extend(d for d in docs if d["kind"] in CLUSTER_SCOPED)
        return release

    yield install
    for doc in applied:
        kubectl("delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found",
                "--wait=false", check=False)


def test_operator_cluster_wide_rbac_live(
    kubectl: Kubectl, namespace: str, other_namespace: str,
    install_rbac: Callable[..., str],
) -> None:
    release = install_rbac(namespace)
    operator = f"system:serviceaccount:{namespace}:{release}-ferry-operator"
    for ns in (namespace, other_namespace):
        for verb, resource, sub in OPERATOR_ALLOWED:
            assert can_i(kubectl, operator, verb, resource, sub, "-n", ns), (verb, resource, sub)
        for verb, resource, sub in OPERATOR_REFUSED:
            assert not can_i(kubectl, operator, verb, resource, sub, "-n", ns), (
                verb, resource, sub)
    assert can_i(kubectl, operator, "watch", "exportjobs.ferry.dev", "", "-A")
    assert can_i(kubectl, operator, "list", "customresourcedefinitions.apiextensions.k8s.io", "")
    assert can_i(kubectl, operator, "watch", "namespaces", "")
    assert not can_i(kubectl, operator, "get", "customresourcedefinitions.apiextensions.k8s.io",
                     "")
    assert not can_i(kubectl, operator, "create", "namespaces", "")
    assert not can_i(kubectl, operator, "list", "secrets", "", "-A")
    for verb, resource, sub in LEADER_ELECTION:
        assert can_i(kubectl, operator, verb, resource, sub, "-n", namespace)
        assert not can_i(kubectl, operator, verb, resource, sub, "-n", other_namespace)


def test_operator_namespaced_rbac_live(
    kubectl: Kubectl, namespace: str, other_namespace: str,
    install_rbac: Callable[..., str],
) -> None:
    release = install_rbac(namespace, "--set", f"watchNamespaces={{{namespace}}}")
    operator = f"system:serviceaccount:{namespace}:{release}-ferry-operator"
    for verb, resource, sub in OPERATOR_ALLOWED:
        assert can_i(kubectl, operator, verb, resource, sub, "-n", namespace)
        assert not can_i(kubectl, operator, verb, resource, sub, "-n", other_namespace), (
            verb, resource, sub)
    for verb, resource, sub in OPERATOR_REFUSED:
        assert not can_i(kubectl, operator, verb, resource, sub, "-n", namespace)
    assert can_i(kubectl, operator, "watch", "customresourcedefinitions.apiextensions.k8s.io",
                 "")
    assert can_i(kubectl, operator, "list", "namespaces", "")  # kopf lists them regardless
    assert not can_i(kubectl, operator, "create", "namespaces", "")
    assert not can_i(kubectl, operator, "list", "exportjobs.ferry.dev", "", "-A")


@pytest.fixture(scope="module")
def worker_setup(kubectl: Kubectl, namespace: str,
                 install_rbac: Callable[..., str]) -> dict[str, str]:
    """The worker RBAC and policy in `namespace`, and two pods that never run."""
    install_rbac(namespace, "--set", f"worker.namespaces={{{namespace}}}")
    uids = {}
    for name in ("batch-a", "batch-b"):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "labels": {"app": "ferry-worker-test"},
                            "annotations": {"keep": "me"}},
               "spec": {"serviceAccountName": "ferry-worker",
                        "schedulingGates": [{"name": "ferry.dev/never"}],
                        "containers": [{"name": "worker", "image": "ferry-worker:0.1.0"}]}}
        kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(pod))
        uids[name] = kubectl("get", "pod", name, "-n", namespace, "-o",
                             "jsonpath={.metadata.uid}").stdout
    return uids


@pytest.fixture(scope="module")
def worker_kubeconfig(kubectl: Kubectl, kubeconfig: str, namespace: str,
                      worker_setup: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
                      ) -> str:
    """A kubeconfig holding a ferry-worker token bound to pod batch-a (as a kubelet
    projects it), and nothing of the admin's credentials."""
    token = kubectl("create", "token", "ferry-worker", "-n", namespace, "--duration=10m",
                    "--bound-object-kind=Pod", "--bound-object-name=batch-a",
                    f"--bound-object-uid={worker_setup['batch-a']}").stdout.strip()
    admin = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    if "certificate-authority" in cluster:
        ca = Path(cluster["certificate-authority"])
        if not ca.is_absolute():
            cluster["certificate-authority"] = str(Path(kubeconfig).parent / ca)
    config = {"apiVersion": "v1", "kind": "Config",
              "clusters": [{"name": "c", "cluster": cluster}],
              "users": [{"name": "worker", "user": {"token": token}}],
              "contexts": [{"name": "w", "context": {"cluster": "c", "user": "worker",
                                                     "namespace": namespace}}],
              "current-context": "w"}
    path = tmp_path_factory.mktemp("worker") / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


def as_worker(kubectl_binary: str, worker_kubeconfig: str,
              *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kubectl_binary, f"--kubeconfig={worker_kubeconfig}", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def worker_patch(worker_kubeconfig: str, namespace: str, pod: str,
                 patch: dict[str, Any]) -> tuple[int, str]:
    """A pod patch with the worker's token, as the worker sends it (no GET first, unlike
    `kubectl patch`): (HTTP status, message)."""
    api = client.CoreV1Api(config.new_client_from_config(config_file=worker_kubeconfig))
    try:
        api.patch_namespaced_pod(pod, namespace, patch, _request_timeout=10)
    except ApiException as exc:
        return exc.status, json.loads(exc.body).get("message", "")
    finally:
        api.api_client.close()
    return 200, ""


def progress_patch(value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {"ferry.dev/progress": value}}}


def test_worker_rbac_live(kubectl: Kubectl, namespace: str, other_namespace: str,
                          worker_setup: dict[str, str]) -> None:
    worker = f"system:serviceaccount:{namespace}:ferry-worker"
    assert can_i(kubectl, worker, "patch", "pods", "", "-n", namespace)
    assert not can_i(kubectl, worker, "patch", "pods", "", "-n", other_namespace)
    for verb, resource, sub in WORKER_REFUSED:
        assert not can_i(kubectl, worker, verb, resource, sub, "-n", namespace), (
            verb, resource, sub)


def test_worker_patches_its_own_progress_with_a_bound_token(
    kubectl: Kubectl, kubectl_binary: str, worker_kubeconfig: str, namespace: str,
) -> None:
    who = as_worker(kubectl_binary, worker_kubeconfig, "auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    user = json.loads(who.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:ferry-worker"
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["batch-a"]

    # The worker's own code path: ferry.worker.progress.pod_patcher, in a process that
    # has only the worker's kubeconfig.
    script = ("import sys; from ferry.worker.progress import pod_patcher; "
              "patch = pod_patcher({'POD_NAME': 'batch-a', 'POD_NAMESPACE': sys.argv[1]}); "
              "patch('{\"processed\":1}')")
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", script, namespace],
        env={"KUBECONFIG": worker_kubeconfig, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    annotations = json.loads(kubectl("get", "pod", "batch-a", "-n", namespace, "-o",
                                     "jsonpath={.metadata.annotations}").stdout)
    assert annotations == {"keep": "me", "ferry.dev/progress": '{"processed":1}'}


def until_refused(worker_kubeconfig: str, namespace: str, pod: str,
                  patch: dict[str, Any]) -> tuple[int, str]:
    """The admission policy takes a moment to load after it is created: retry a while."""
    deadline = time.monotonic() + 30
    while True:
        status, message = worker_patch(worker_kubeconfig, namespace, pod, patch)
        if status != 200 or time.monotonic() > deadline:
            return status, message
        time.sleep(1)


def test_worker_cannot_patch_another_pod(
    kubectl: Kubectl, worker_kubeconfig: str, namespace: str,
) -> None:
    status, message = until_refused(worker_kubeconfig, namespace, "batch-b",
                                    progress_patch("{}"))
    assert status == 403
    assert ('a ferry worker may patch only its own pod (token bound to pod "batch-a"), '
            'not "batch-b"') in message


@pytest.mark.parametrize("patch", [
    {"metadata": {"labels": {"app": "other"}}},
    {"metadata": {"annotations": {"keep": "changed"}}},
    {"metadata": {"annotations": {"keep": None}}},
    {"metadata": {"annotations": {"new": "x"}}},
])
def test_worker_cannot_change_anything_but_progress(
    worker_kubeconfig: str, namespace: str, patch: dict[str, Any],
) -> None:
    status, message = until_refused(worker_kubeconfig, namespace, "batch-a", patch)
    assert status == 403
    assert "a ferry worker may change only the ferry.dev/progress annotation" in message


def test_worker_token_reads_nothing(kubectl_binary: str, worker_kubeconfig: str) -> None:
    for args in (("get", "pod", "batch-a"), ("get", "secrets"), ("get", "jobs"),
                 ("get", "exportjobs")):
        result = as_worker(kubectl_binary, worker_kubeconfig, *args)
        assert result.returncode == 1, args
        assert "Forbidden" in result.stderr or "forbidden" in result.stderr, result.stderr


@pytest.fixture(scope="module")
def restricted_namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"t-chart-restricted-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest")
    for account in ("ferry-operator", "ferry-worker"):  # ServiceAccount admission needs them
        kubectl("create", "serviceaccount", account, "-n", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def dry_run_pod(kubectl: Kubectl, namespace: str, name: str,
                pod_spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec}
    return kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-",
                   input=json.dumps(pod), check=False)


def test_operator_pod_passes_pod_security_restricted(
    kubectl: Kubectl, render: Render, restricted_namespace: str
) -> None:
    for flags in ([], ["--set", "webhook.enabled=true"]):
        pod_spec = only(render(*flags), "Deployment")["spec"]["template"]["spec"]
        result = dry_run_pod(kubectl, restricted_namespace, "operator", pod_spec)
        assert result.returncode == 0, result.stderr
        assert "violate" not in result.stderr


def test_worker_pod_passes_pod_security_restricted(
    kubectl: Kubectl, restricted_namespace: str
) -> None:
    job = build_job(Owner("contacts", restricted_namespace, "uid-1"), spec().build(), 1, "1",
                    [Slice(index=0, total=1, start=None, end=None)],
                    WorkerDefaults(image="ferry-worker:0.1.0", service_account="ferry-worker"))
    result = dry_run_pod(kubectl, restricted_namespace, "worker", job["spec"]["template"]["spec"])
    assert result.returncode == 0, result.stderr


def test_restricted_namespace_really_enforces(
    kubectl: Kubectl, render: Render, restricted_namespace: str
) -> None:
    """The control: drop one hardening setting and the same dry run is refused."""
    pod_spec = only(render(), "Deployment")["spec"]["template"]["spec"]
    pod_spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    result = dry_run_pod(kubectl, restricted_namespace, "operator", pod_spec)
    assert result.returncode == 1
    assert 'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false' in (
        result.stderr)


# --- monitoring (ServiceMonitor, PrometheusRule) ----------------------------------------

def documented_metrics() -> set[str]:
    """The metric names docs/operations.md's table lists."""
    text = (ROOT / "docs" / "operations.md").read_text()
    return set(re.findall(r"^\| `(ferry_[a-z_]+)` \|", text, re.MULTILINE))


def test_service_monitor_selects_the_metrics_service_with_its_labels(render: Render) -> None:
    assert not [d for d in render() if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    docs = render(*SHAPES["monitoring"])
    monitor = only(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = only(docs, "Service", "ferry-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ferry-system"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    # No ServiceMonitor without the Service it scrapes.
    off = render(*SHAPES["monitoring"], "--set", "metrics.enabled=false")
    assert not [d for d in off if d["kind"] in ("ServiceMonitor", "PrometheusRule")]


def test_prometheus_rule_alerts_on_documented_metrics(render: Render) -> None:
    rule = only(render(*SHAPES["monitoring"], "--set", "metrics.prometheusRule.labels.role=x",
                       "--set", "metrics.prometheusRule.staleAfterSeconds=7200"),
                "PrometheusRule")
    assert rule["metadata"]["labels"]["role"] == "x"
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert list(rules) == ["FerryRunFailed", "FerryJobStale", "FerryOperatorAbsent"]
    used = {m for r in rules.values() for m in re.findall(r"ferry_[a-z_]+", r["expr"])}
    assert used == {"ferry_runs_total", "ferry_last_success_timestamp_seconds", "ferry_leader"}
    assert used <= documented_metrics()
    # The target's namespace label (the release's), never a job's: that is job_namespace.
    assert all('namespace="ferry-system"' in r["expr"] for r in rules.values())
    assert rules["FerryJobStale"]["expr"] == (
        'time() - ferry_last_success_timestamp_seconds{namespace="ferry-system"} > 7200')
    assert rules["FerryOperatorAbsent"]["expr"] == (
        'absent(ferry_leader{namespace="ferry-system"} == 1)')
    assert rules["FerryOperatorAbsent"]["labels"] == {"severity": "critical"}
    assert "{{ $labels.job_name }}" in rules["FerryJobStale"]["annotations"]["summary"]


def test_values_schema_refuses_an_unknown_monitoring_key(helm: str) -> None:
    result = subprocess.run(
        [helm, "template", "ferry", str(CHART), "--kube-version", kubernetes_version(),
         "--set", "metrics.serviceMonitor.intervall=1m"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "intervall" in result.stderr and "serviceMonitor" in result.stderr


# --- roles for namespace users ----------------------------------------------------------

def test_user_roles_aggregate_into_the_built_in_roles(render: Render) -> None:
    docs = render()
    view, edit = only(docs, "ClusterRole", "ferry-view"), only(docs, "ClusterRole", "ferry-edit")
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k in view["metadata"]["labels"] if k.startswith(aggregate)} == {
        aggregate + "view", aggregate + "edit", aggregate + "admin"}
    assert {k for k in edit["metadata"]["labels"] if k.startswith(aggregate)} == {
        aggregate + "edit", aggregate + "admin"}
    for role in (view, edit):
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        assert "secrets" not in resources and not any(r.endswith("/status") for r in resources)
    writes = {v for rule in edit["rules"] if "exportjobs" in rule["resources"]
              for v in rule["verbs"]}
    assert writes == {"get", "list", "watch", "create", "update", "patch", "delete"}
    plain = render("--set", "rbac.userRoles.aggregate=false")
    assert not [k for k in only(plain, "ClusterRole", "ferry-edit")["metadata"]["labels"]
                if k.startswith(aggregate)]
    assert not [d for d in render("--set", "rbac.userRoles.create=false")
                if d["metadata"]["name"] in ("ferry-view", "ferry-edit")]


def token_kubeconfig(kubectl: Kubectl, kubeconfig: str, namespace: str, account: str,
                     path: Path) -> str:
    """A kubeconfig with only a token of ServiceAccount ``account``."""
    token = kubectl("create", "token", account, "-n", namespace,
                    "--duration=10m").stdout.strip()
    admin = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    if "certificate-authority" in cluster:
        ca = Path(cluster["certificate-authority"])
        if not ca.is_absolute():
            cluster["certificate-authority"] = str(Path(kubeconfig).parent / ca)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "u", "context": {"cluster": "c", "user": account,
                                               "namespace": namespace}}],
        "current-context": "u"}))
    path.chmod(0o600)
    return str(path)


def test_plugin_verbs_work_under_ferry_edit_alone(
        kubectl: Kubectl, kubeconfig: str, namespace: str, other_namespace: str, crds: None,
        install_rbac: Callable[..., str], tmp_path: Path) -> None:
    """A ServiceAccount bound (RoleBinding, one namespace) to the chart's -edit
    ClusterRole and to nothing else runs the plugin's verbs there, and nowhere else."""
    release = install_rbac(namespace)
    kubectl("create", "serviceaccount", "alice", "-n", namespace)
    # The release name lacks "ferry": the chart's fullname is "<release>-ferry".
    kubectl("create", "rolebinding", "alice-ferry", f"--clusterrole={release}-ferry-edit",
            f"--serviceaccount={namespace}:alice", "-n", namespace)
    job = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob",
           "metadata": {"name": "orders"},
           "spec": {"title": "Orders",
                    "source": {"type": "postgres",
                               "connectionSecretRef": {"name": "db", "key": "dsn"},
                               "table": "orders", "timestampColumn": "created_at"},
                    "output": {"s3": {"bucket": "exports"}, "format": "csv"}}}
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(job))
    user = token_kubeconfig(kubectl, kubeconfig, namespace, "alice", tmp_path / "alice")

    def ferry(*args: str, ns: str = namespace) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ROOT / ".venv" / "bin" / "kubectl-ferry"), "-n", ns,
                               *args], capture_output=True, text=True, timeout=60, check=False,
                              env={"PATH": "/usr/bin:/bin", "KUBECONFIG": user})

    for args in (["list"], ["describe", "orders"], ["history", "orders"], ["run", "orders"],
                 ["suspend", "orders"], ["resume", "orders"], ["clone", "orders", "orders-2"],
                 ["backfill", "orders", "--from", "2026-11-01T00:00:00Z", "--to",
                  "2026-11-02T00:00:00Z"], ["group", "list"],
                 ["describe", "orders", "-o", "json"]):
        done = ferry(*args)
        if args[0] == "backfill":
            # Refused by the plugin (no schedule), not by RBAC: the read was allowed.
            assert (done.returncode, done.stderr) == (
                1, 'error: exportjob "orders" has no schedule: a backfill runs its past '
                'slots\n')
            continue
        assert done.returncode == 0, (args, done.stderr)
        assert "forbidden" not in done.stderr.lower(), (args, done.stderr)
    annotations = json.loads(kubectl("get", "exportjob/orders", "-n", namespace, "-o",
                                     "json").stdout)["metadata"]["annotations"]
    assert "ferry.dev/run-requested-at" in annotations
    assert kubectl("get", "exportjob/orders-2", "-n", namespace, "-o",
                   "jsonpath={.spec.suspend}").stdout == "true"
    # Logs and Events are readable; Secrets and the operator's status are not.
    account = f"system:serviceaccount:{namespace}:alice"
    scope = ["-n", namespace]
    assert can_i(kubectl, account, "get", "pods", "log", *scope)
    assert can_i(kubectl, account, "list", "events", "", *scope)
    assert not can_i(kubectl, account, "get", "secrets", "", *scope)
    assert not can_i(kubectl, account, "patch", "exportjobs.ferry.dev", "status", *scope)
    # Another namespace: refused, in one line naming what was refused.
    elsewhere = ferry("list", ns=other_namespace)
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.startswith("error: ") and "forbidden" in elsewhere.stderr.lower()
    assert elsewhere.stderr.count("\n") == 1


def test_a_disruption_budget_keeps_one_replica_when_there_are_standbys(
        render: Render, render_text: Callable[..., str], kubeconform: str,
        schema_location: str) -> None:
    assert not [d for d in render() if d["kind"] == "PodDisruptionBudget"]
    docs = render("--set", "operator.replicas=2")
    budget = only(docs, "PodDisruptionBudget")
    pods = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()
    result = kubeconform_run(kubeconform, schema_location,
                             render_text("--set", "operator.replicas=2",
                                         "--show-only", "templates/pdb.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["summary"]["valid"] == 1
