"""The admission webhook on the real cluster: the messages a user sees, and who did what.

The operator runs as a local process serving kopf's webhook server on 127.0.0.1 with a
certificate made here for that address; Validating- and MutatingWebhookConfigurations
(scoped by namespaceSelector to this module's namespace only, and always deleted
afterwards: with failurePolicy Fail a dangling one would block every ExportJob change)
point the local kube-apiserver at it by URL.
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_REQUESTED_BY,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
)
from ferry.reconcile import admission
from tests.fixtures.services import S3Server

from .operator_fixtures import (
    OperatorProcess,
    Wiring,
    export_job,
    get,
    import_job,
    put_csv,
    start_operator,
)
from .support import Kubectl, wait_until

ROWS = 300
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
AS_ALICE = ("--as=alice", "--as-group=system:masters")
AS_BOB = ("--as=bob", "--as-group=system:masters")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a serving certificate for IP:127.0.0.1 (as hack/pki.py makes them)."""
    pki = tmp_path_factory.mktemp("webhook-pki")
    _openssl("genrsa", "-out", str(pki / "ca.key"), "2048")
    _openssl("req", "-x509", "-new", "-key", str(pki / "ca.key"), "-subj", "/CN=ferry-e2e-ca",
             "-days", "2", "-out", str(pki / "ca.crt"))
    _openssl("genrsa", "-out", str(pki / "tls.key"), "2048")
    _openssl("req", "-new", "-key", str(pki / "tls.key"), "-subj", "/CN=127.0.0.1",
             "-out", str(pki / "tls.csr"))
    with tempfile.NamedTemporaryFile("w", suffix=".ext") as ext:
        ext.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                  "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
        ext.flush()
        _openssl("x509", "-req", "-in", str(pki / "tls.csr"), "-CA", str(pki / "ca.crt"),
                 "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", ext.name, "-out", str(pki / "tls.crt"))
    return pki


@pytest.fixture(scope="module")
def webhook_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: str, namespace: str, pki: Path, webhook_port: int,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """This module's operator serves the webhook (overrides operator_fixtures.operator)."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    running = start_operator(operator_kubeconfig, log, namespace, extra_args=[
        f"--webhook-port={webhook_port}", "--webhook-host=127.0.0.1",
        f"--webhook-cert={pki / 'tls.crt'}", f"--webhook-key={pki / 'tls.key'}"])
    yield running
    running.stop()


def serving(port: int, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1"):
            return True
    except OSError:
        return False


def webhook_configurations(namespace: str, port: int, ca_bundle: str) -> list[dict[str, Any]]:
    """What charts/ferry/templates/webhook.yaml registers, by URL instead of Service."""
    def hook(name: str, path: str, resource: str, operations: list[str]) -> dict[str, Any]:
        return {
            "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 10, "matchPolicy": "Equivalent",
            "namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}]},
            "rules": [{"apiGroups": ["ferry.dev"], "apiVersions": ["v1alpha1"],
                       "resources": [resource], "operations": operations,
                       "scope": "Namespaced"}],
            "clientConfig": {"url": f"https://127.0.0.1:{port}/{path}", "caBundle": ca_bundle},
        }

    create_update = ["CREATE", "UPDATE"]
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1",
         "kind": "ValidatingWebhookConfiguration", "metadata": {"name": f"ferry-e2e-{namespace}"},
         "webhooks": [
             hook("validate.exportjobs.ferry.dev", admission.VALIDATE_EXPORTJOB, "exportjobs",
                  create_update),
             hook("delete-guard.exportjobs.ferry.dev", admission.GUARD_EXPORTJOB_DELETE,
                  "exportjobs", ["DELETE"]),
             hook("validate.jobgroups.ferry.dev", admission.VALIDATE_JOBGROUP, "jobgroups",
                  create_update),
             hook("validate.importjobs.ferry.dev", admission.VALIDATE_IMPORTJOB, "importjobs",
                  create_update),
             hook("delete-guard.importjobs.ferry.dev", admission.GUARD_IMPORTJOB_DELETE,
                  "importjobs", ["DELETE"])]},
        {"apiVersion": "admissionregistration.k8s.io/v1",
         "kind": "MutatingWebhookConfiguration", "metadata": {"name": f"ferry-e2e-{namespace}"},
         "webhooks": [
             {**hook("record-user.exportjobs.ferry.dev", admission.RECORD_USER_EXPORTJOB,
                     "exportjobs", create_update), "reinvocationPolicy": "Never"},
             {**hook("record-user.jobgroups.ferry.dev", admission.RECORD_USER_JOBGROUP,
                     "jobgroups", create_update), "reinvocationPolicy": "Never"},
             {**hook("record-user.importjobs.ferry.dev", admission.RECORD_USER_IMPORTJOB,
                     "importjobs", create_update), "reinvocationPolicy": "Never"}]},
    ]


@pytest.fixture(scope="module")
def webhooks(kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, pki: Path,
             webhook_port: int) -> Iterator[None]:
    """Registered after `wiring`, so removed before its teardown deletes the ExportJobs."""
    wait_until(lambda: serving(webhook_port, pki / "ca.crt") or operator.process.poll(),
               timeout=60, what="the operator's webhook server")
    assert operator.process.poll() is None, operator.logs()[-3000:]
    ca_bundle = base64.b64encode((pki / "ca.crt").read_bytes()).decode()
    configs = webhook_configurations(wiring.namespace, webhook_port, ca_bundle)
    try:
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(configs))
        yield
    finally:
        for config in configs:
            kubectl("delete", config["kind"].lower(), config["metadata"]["name"],
                    "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def throttled(pg_db: str) -> str:
    """A view exported at ~30 ms a row, so a run stays InProgress for a while."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions (id bigint PRIMARY KEY, "
                     "created_at timestamptz NOT NULL)")
        with conn.cursor().copy("COPY interactions FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row((i, START + dt.timedelta(minutes=i)))
        conn.execute("CREATE FUNCTION slow_text(i bigint) RETURNS text STABLE LANGUAGE plpgsql "
                     "AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN i::text; END $$")
        conn.execute("CREATE VIEW throttled AS SELECT id, created_at, slow_text(id) AS payload "
                     "FROM interactions")
    return "throttled"


def apply(kubectl: Kubectl, namespace: str, manifest: dict[str, Any], *identity: str
          ) -> subprocess.CompletedProcess[str]:
    return kubectl(*identity, "apply", "-n", namespace, "-f", "-",
                   input=yaml.safe_dump(manifest), check=False)


def denial(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    return result.stderr.strip()


def status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return get(kubectl, namespace, f"exportjob/{name}").get("status") or {}


def annotations(kubectl: Kubectl, namespace: str, name: str) -> dict[str, str]:
    return get(kubectl, namespace, f"exportjob/{name}")["metadata"].get("annotations") or {}


def test_a_bad_cron_expression_is_refused(
    kubectl: Kubectl, webhooks: None, wiring: Wiring, s3: S3Server,
) -> None:
    manifest = export_job("bad-cron", wiring, s3, schedule={"cron": {"expression": "61 * * * *"}})
    assert denial(apply(kubectl, wiring.namespace, manifest)) == (
        'Error from server: error when creating "STDIN": admission webhook '
        '"validate.exportjobs.ferry.dev" denied the request: spec.schedule.cron.expression '
        "'61 * * * *' is not a valid five-field cron expression "
        '("minute hour day-of-month month day-of-week", e.g. "15 */4 * * 1-5")')


def test_an_unknown_time_zone_is_refused(
    kubectl: Kubectl, webhooks: None, wiring: Wiring, s3: S3Server,
) -> None:
    manifest = export_job("bad-zone", wiring, s3,
                          schedule={"daily": {"at": "02:30"}, "timeZone": "Mars/Olympus"})
    assert denial(apply(kubectl, wiring.namespace, manifest)) == (
        'Error from server: error when creating "STDIN": admission webhook '
        '"validate.exportjobs.ferry.dev" denied the request: spec.schedule.timeZone '
        "'Mars/Olympus' is not an IANA time zone (use e.g. UTC, Europe/Berlin, "
        "America/New_York)")


def test_a_spec_change_to_a_bad_zone_is_refused_and_the_job_kept(
    kubectl: Kubectl, webhooks: None, wiring: Wiring, s3: S3Server,
) -> None:
    ns = wiring.namespace
    good = export_job("zone-change", wiring, s3,
                      schedule={"daily": {"at": "02:30"}, "timeZone": "Europe/Berlin"})
    assert apply(kubectl, ns, good).returncode == 0
    bad = export_job("zone-change", wiring, s3,
                     schedule={"daily": {"at": "02:30"}, "timeZone": "Europe/Atlantis"})
    message = denial(apply(kubectl, ns, bad))
    assert message.endswith(
        'admission webhook "validate.exportjobs.ferry.dev" denied the request: '
        "spec.schedule.timeZone 'Europe/Atlantis' is not an IANA time zone "
        "(use e.g. UTC, Europe/Berlin, America/New_York)"), message
    stored = get(kubectl, ns, "exportjob/zone-change")["spec"]["schedule"]
    assert stored["timeZone"] == "Europe/Berlin"


def test_a_jobgroup_with_a_bad_zone_is_refused(
    kubectl: Kubectl, webhooks: None, wiring: Wiring,
) -> None:
    group = {"apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup",
             "metadata": {"name": "nightly"},
             "spec": {"title": "nightly", "members": ["a"],
                      "schedule": {"daily": {"at": "01:00"}, "timeZone": "Nowhere/Land"}}}
    assert denial(apply(kubectl, wiring.namespace, group)) == (
        'Error from server: error when creating "STDIN": admission webhook '
        '"validate.jobgroups.ferry.dev" denied the request: spec.schedule.timeZone '
        "'Nowhere/Land' is not an IANA time zone (use e.g. UTC, Europe/Berlin, "
        "America/New_York)")


def test_the_creator_is_recorded_and_cannot_be_forged(
    kubectl: Kubectl, webhooks: None, wiring: Wiring, s3: S3Server,
) -> None:
    ns = wiring.namespace
    manifest = export_job("owned", wiring, s3)
    manifest["metadata"]["annotations"] = {ANNOTATION_CREATED_BY: "mallory"}
    result = apply(kubectl, ns, manifest, *AS_ALICE)
    assert result.returncode == 0, result.stderr
    assert annotations(kubectl, ns, "owned")[ANNOTATION_CREATED_BY] == "alice"
    wait_until(lambda: status(kubectl, ns, "owned").get("createdBy") == "alice",
               what="status.createdBy")
    kubectl(*AS_BOB, "annotate", "-n", ns, "exportjob/owned",
            f"{ANNOTATION_CREATED_BY}=bob", "--overwrite")
    assert annotations(kubectl, ns, "owned")[ANNOTATION_CREATED_BY] == "alice"
    # Re-applying the manifest without the annotation (as GitOps does) keeps it.
    manifest["metadata"].pop("annotations")
    assert kubectl("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-",
                   input=yaml.safe_dump(manifest)).returncode == 0
    assert annotations(kubectl, ns, "owned")[ANNOTATION_CREATED_BY] == "alice"


def test_delete_is_refused_while_a_run_is_in_progress_and_allowed_once_stopped(
    kubectl: Kubectl, webhooks: None, wiring: Wiring, s3: S3Server, throttled: str,
) -> None:
    ns = wiring.namespace
    manifest = export_job("busy", wiring, s3)
    manifest["spec"]["source"]["table"] = throttled
    assert apply(kubectl, ns, manifest).returncode == 0
    kubectl(*AS_BOB, "annotate", "-n", ns, "exportjob/busy",
            f"{ANNOTATION_RUN_REQUESTED_AT}=1")
    assert annotations(kubectl, ns, "busy")[ANNOTATION_REQUESTED_BY] == "bob"
    run = wait_until(lambda: (r := status(kubectl, ns, "busy").get("currentRun") or {})
                     .get("phase") == "InProgress" and r, what="the run to start")
    assert (run["id"], run["trigger"], run["startedBy"]) == ("busy.1", "manual", "bob")

    refused = kubectl("delete", "-n", ns, "exportjob/busy", "--wait=false", check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip() == (
        'Error from server: admission webhook "delete-guard.exportjobs.ferry.dev" '
        'denied the request: exportjob "busy" has run busy.1 in progress: stop it first with '
        f'"kubectl ferry stop busy -n {ns}" (or annotate ferry.dev/stop-requested-at), '
        "then delete")
    assert not get(kubectl, ns, "exportjob/busy")["metadata"].get("deletionTimestamp")

    kubectl("annotate", "-n", ns, "exportjob/busy", f"{ANNOTATION_STOP_REQUESTED_AT}=1")
    entry = wait_until(lambda: status(kubectl, ns, "busy").get("lastRun"),
                       what="the run to be canceled")
    assert (entry["phase"], entry["startedBy"]) == ("Canceled", "bob")
    kubectl("delete", "-n", ns, "exportjob/busy", "--timeout=60s")
    gone = kubectl("get", "-n", ns, "exportjob/busy", check=False)
    assert "NotFound" in gone.stderr


def test_delete_of_an_idle_job_succeeds(
    kubectl: Kubectl, webhooks: None, wiring: Wiring, s3: S3Server,
) -> None:
    ns = wiring.namespace
    assert apply(kubectl, ns, export_job("idle", wiring, s3)).returncode == 0
    wait_until(lambda: status(kubectl, ns, "idle").get("phase"), what="the first reconcile")
    result = kubectl("delete", "-n", ns, "exportjob/idle", "--timeout=60s")
    assert result.stdout.strip() == f'exportjob.ferry.dev "idle" deleted from {ns} namespace'


def test_a_jobgroup_records_its_creator(
    kubectl: Kubectl, webhooks: None, wiring: Wiring,
) -> None:
    group = {"apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup",
             "metadata": {"name": "weekly"},
             "spec": {"title": "weekly", "members": ["a"]}}
    result = apply(kubectl, wiring.namespace, group, *AS_ALICE)
    assert result.returncode == 0, result.stderr
    stored = get(kubectl, wiring.namespace, "jobgroup/weekly")["metadata"]["annotations"]
    assert stored[ANNOTATION_CREATED_BY] == "alice"
    kubectl("delete", "-n", wiring.namespace, "jobgroup/weekly", "--timeout=60s")


def test_an_importjob_is_checked_recorded_and_not_deleted_while_it_loads(
    kubectl: Kubectl, webhooks: None, wiring: Wiring, s3: S3Server, pg_db: str,
) -> None:
    """The ImportJob's webhooks: the same checks, users and delete guard as an export's.
    The run is held InProgress by a lock on its table, which the worker waits for."""
    ns = wiring.namespace
    bad = import_job("zoned", wiring, s3, "loaded",
                     schedule={"daily": {"at": "02:30"}, "timeZone": "Mars/Olympus"})
    assert denial(apply(kubectl, ns, bad)) == (
        'Error from server: error when creating "STDIN": admission webhook '
        '"validate.importjobs.ferry.dev" denied the request: spec.schedule.timeZone '
        "'Mars/Olympus' is not an IANA time zone (use e.g. UTC, Europe/Berlin, "
        "America/New_York)")
    put_csv(s3, wiring.bucket, "landing/held/a.csv", [(1, "one", 1)])
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE loaded (id bigint PRIMARY KEY, name text, score int)")
    result = apply(kubectl, ns, import_job("held", wiring, s3, "loaded"), *AS_ALICE)
    assert result.returncode == 0, result.stderr

    def import_status() -> dict[str, Any]:
        return get(kubectl, ns, "importjob/held").get("status") or {}
    wait_until(lambda: import_status().get("createdBy") == "alice", what="status.createdBy")
    with psycopg.connect(pg_db) as lock:
        lock.execute("LOCK TABLE loaded IN ACCESS EXCLUSIVE MODE")
        kubectl(*AS_BOB, "annotate", "-n", ns, "importjob/held",
                f"{ANNOTATION_RUN_REQUESTED_AT}=1")
        run = wait_until(lambda: (r := import_status().get("currentRun") or {})
                         .get("phase") == "InProgress" and r, what="the import to start")
        assert (run["id"], run["startedBy"]) == ("held.1", "bob")

        refused = kubectl("delete", "-n", ns, "importjob/held", "--wait=false", check=False)

        assert refused.stderr.strip() == (
            'Error from server: admission webhook "delete-guard.importjobs.ferry.dev" '
            'denied the request: importjob "held" has run held.1 in progress: stop it first '
            f'with "kubectl ferry stop importjob/held -n {ns}" (or annotate '
            "ferry.dev/stop-requested-at), then delete")
    entry = wait_until(lambda: import_status().get("lastRun"), timeout=120,
                       what="the import to end once the lock is released")
    assert (entry["phase"], entry["records"]) == ("Succeeded", 1)
    kubectl("delete", "-n", ns, "importjob/held", "--timeout=60s")
