"""`kubectl ferry` against the real local cluster (and the real S3 server).

The operator is not part of this suite: each test writes the status the operator
would write (through the API models, with `kubectl patch --subresource=status`) and
asserts the CLI's exact output, its exit code, and the annotation or spec change it
made. The clock is fixed at tests.cli_objects.NOW so relative times are stable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry.api.status import RunPhase
from ferry.cli import main as cli_main
from ferry.constants import (
    ANNOTATION_BACKFILL,
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
    LABEL_JOB,
    LABEL_RUN,
)
from tests.cli_objects import (
    NOW,
    exportjob,
    failed_status,
    group_status,
    job_spec,
    running_status,
)
from tests.fixtures.services import S3Server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STAMP = "2026-11-22T12:00:00.000000Z"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
Ferry = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for crd in ("exportjobs.ferry.dev", "jobgroups.ferry.dev"):
        kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


@pytest.fixture
def ferry(
    kubeconfig: str, namespace: str, crds: None, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Ferry:
    """Run the CLI in-process in the test namespace: (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli_main, "utcnow", lambda: NOW)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli_main.main([*args, "--kubeconfig", kubeconfig, "-n", namespace])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def apply(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def set_status(kubectl: Kubectl, namespace: str, kind: str, name: str,
               status: dict[str, Any] | None) -> None:
    kubectl("patch", "-n", namespace, kind, name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))


def get(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout
    return dict(json.loads(out))


@pytest.fixture(scope="module")
def jobs(kubectl: Kubectl, namespace: str, crds: None) -> None:
    """contacts: run 3 in progress; orders: run 2 Failed; both with history."""
    apply(kubectl, namespace, exportjob("contacts"))
    apply(kubectl, namespace, exportjob("orders"))
    set_status(kubectl, namespace, "exportjob", "contacts", running_status("contacts").to_k8s())
    set_status(kubectl, namespace, "exportjob", "orders", failed_status("orders").to_k8s())


# --- list / describe / history -----------------------------------------------------------


def test_list(ferry: Ferry, jobs: None) -> None:
    assert ferry("list") == (0, (
        "NAME       TYPE     TITLE             PHASE        PROGRESS                      ETA   "
        "LAST RUN                       NEXT RUN\n"
        "contacts   Export   Contact history   InProgress   [#########-----------]  45%   12m   "
        "PartiallySucceeded 1h50m ago   in 45m\n"
        "orders     Export   Contact history   Failed       -                             -     "
        "Failed 50m ago                 -\n"
    ), "")


def test_list_output_json_and_yaml(ferry: Ferry, jobs: None) -> None:
    code, out, _ = ferry("list", "-o", "json")
    assert code == 0
    document = json.loads(out)
    assert document["kind"] == "List"
    assert [i["metadata"]["name"] for i in document["items"]] == ["contacts", "orders"]
    code, out, _ = ferry("list", "-o", "yaml")
    assert yaml.safe_load(out)["items"][1]["status"]["lastRun"]["id"] == "orders.2"


def test_list_all_namespaces(ferry: Ferry, jobs: None, namespace: str) -> None:
    code, out, _ = ferry("list", "-A")
    assert code == 0
    assert out.startswith("NAMESPACE ")
    ours = [line.split()[:2] for line in out.splitlines() if line.startswith(namespace + " ")]
    assert ours == [[namespace, "contacts"], [namespace, "orders"]]


def test_list_empty_namespace(kubeconfig: str, crds: None,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main.main(["list", "--kubeconfig", kubeconfig, "-n", "t-cli-nothing-here"])
    captured = capsys.readouterr()
    assert (code, captured.out) == (0, "")
    assert captured.err == 'No exportjobs or importjobs found in namespace "t-cli-nothing-here".\n'


def test_describe(ferry: Ferry, jobs: None, namespace: str) -> None:
    code, out, err = ferry("describe", "contacts")
    assert (code, err) == (0, "")
    assert out.startswith(
        "Name:       contacts\n"
        f"Namespace:  {namespace}\n"
        "Title:      Contact history\n"
        "Type:       Export\n"
        "Source:     postgres table interactions (Secret db, key dsn)\n"
        "Timeframe:  all data\n"
        "Schedule:   every 4h at :15 UTC\n"
        "Output:     s3://exports/ferry/contacts/ csv\n"
        "Suspend:    false\n"
        "Phase:      InProgress\n"
        "Next Run:   2026-11-22T12:45:00Z (in 45m)\n"
        "Current Run:\n"
        "  ID:          contacts.3\n"
    )
    assert (
        "  BATCH   PHASE        STARTED                FINISHED               RECORDS     FILES"
        "   MESSAGE\n"
        "  0       Succeeded    2026-11-22T11:50:00Z   2026-11-22T11:54:00Z   3000/3000   1"
        "       -\n"
    ) in out
    assert "  contacts.2   schedule   2026-11-22T10:00:00Z" in out


def test_describe_output_yaml_is_the_object(ferry: Ferry, jobs: None) -> None:
    code, out, _ = ferry("describe", "orders", "-o", "yaml")
    assert code == 0
    assert yaml.safe_load(out)["status"]["phase"] == "Failed"


@pytest.mark.parametrize(
    "verb", ["describe", "history", "run", "stop", "retry", "suspend", "resume", "download",
             "errors", "logs"],
)
def test_unknown_job_is_one_line_and_exit_1(ferry: Ferry, namespace: str, verb: str) -> None:
    extra = ["-o", "/tmp/unused"] if verb == "download" else []
    assert ferry(verb, "nope", *extra) == (
        1, "", f'error: exportjob "nope" not found in namespace "{namespace}"\n'
    )


def test_history_across_jobs(ferry: Ferry, jobs: None) -> None:
    assert ferry("history") == (0, (
        "RUN          TRIGGER    STARTED                FINISHED               DURATION   "
        "RESULT               RECORDS   FILES\n"
        "contacts.3   manual     2026-11-22T11:50:00Z   -                      -          "
        "InProgress           4.5k      -\n"
        "orders.2     schedule   2026-11-22T11:00:00Z   2026-11-22T11:10:00Z   10m        "
        "Failed               0         0\n"
        "contacts.2   schedule   2026-11-22T10:00:00Z   2026-11-22T10:10:00Z   10m        "
        "PartiallySucceeded   1M        3\n"
        "orders.1     schedule   2026-11-22T07:00:00Z   2026-11-22T07:10:00Z   10m        "
        "Succeeded            1M        3\n"
        "contacts.1   schedule   2026-11-22T06:00:00Z   2026-11-22T06:10:00Z   10m        "
        "Succeeded            1M        3\n"
    ), "")


def test_history_filters(ferry: Ferry, jobs: None) -> None:
    code, out, _ = ferry("history", "--phase", "failed")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["orders.2"]
    code, out, _ = ferry("history", "orders", "--since", "2h")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["orders.2"]
    code, out, _ = ferry("history", "contacts", "--since", "2026-11-22T06:30:00Z")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["contacts.3", "contacts.2"]
    assert ferry("history", "orders", "--phase", "Canceled") == (0, "", "No runs found.\n")
    code, out, _ = ferry("history", "orders", "-o", "json")
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == ["orders.2", "orders.1"]


# --- run / stop / retry ------------------------------------------------------------------


def annotation(kubectl: Kubectl, namespace: str, kind: str, name: str, key: str) -> str | None:
    value = get(kubectl, namespace, kind, name)["metadata"].get("annotations", {}).get(key)
    return None if value is None else str(value)


def test_run_sets_the_annotation(ferry: Ferry, jobs: None, kubectl: Kubectl,
                                 namespace: str) -> None:
    assert ferry("run", "orders") == (0, (
        f"exportjob.ferry.dev/orders run requested ({ANNOTATION_RUN_REQUESTED_AT}={STAMP})\n"
    ), "")
    assert annotation(kubectl, namespace, "exportjob", "orders",
                      ANNOTATION_RUN_REQUESTED_AT) == STAMP


def test_backfill_sets_the_interval_annotation(ferry: Ferry, jobs: None, kubectl: Kubectl,
                                               namespace: str) -> None:
    assert ferry("backfill", "orders", "--from", "2026-11-01T00:00:00+01:00",
                 "--to", "2026-11-02T00:00:00Z") == (0, (
        f"exportjob.ferry.dev/orders backfill requested ({ANNOTATION_BACKFILL}="
        "2026-10-31T23:00:00Z/2026-11-02T00:00:00Z)\n"), "")
    assert annotation(kubectl, namespace, "exportjob", "orders", ANNOTATION_BACKFILL) == (
        "2026-10-31T23:00:00Z/2026-11-02T00:00:00Z")
    assert ferry("backfill", "orders", "--from", "yesterday", "--to", "2026-11-02T00:00:00Z") == (
        1, "", "error: --from 'yesterday' is not an RFC 3339 time, e.g. 2026-11-01T00:00:00Z\n")
    assert ferry("backfill", "orders", "--from", "2026-11-03T00:00:00Z",
                 "--to", "2026-11-02T00:00:00Z") == (1, "", "error: --from must be before --to\n")


def test_run_refused_while_a_run_is_active(ferry: Ferry, jobs: None, kubectl: Kubectl,
                                           namespace: str) -> None:
    assert ferry("run", "contacts") == (1, "", (
        "error: run contacts.3 is InProgress: wait for it to end or stop it "
        "(kubectl ferry stop contacts)\n"
    ))
    assert annotation(kubectl, namespace, "exportjob", "contacts",
                      ANNOTATION_RUN_REQUESTED_AT) is None


def test_stop(ferry: Ferry, jobs: None, kubectl: Kubectl, namespace: str) -> None:
    assert ferry("stop", "contacts") == (0, (
        "exportjob.ferry.dev/contacts stop of run contacts.3 requested "
        f"({ANNOTATION_STOP_REQUESTED_AT}={STAMP})\n"
    ), "")
    assert annotation(kubectl, namespace, "exportjob", "contacts",
                      ANNOTATION_STOP_REQUESTED_AT) == STAMP
    assert ferry("stop", "orders") == (
        1, "", 'error: exportjob "orders" has no run in progress: nothing to stop\n')


def test_retry(ferry: Ferry, jobs: None, kubectl: Kubectl, namespace: str) -> None:
    assert ferry("retry", "orders", "--run", "2") == (0, (
        "exportjob.ferry.dev/orders retry of run orders.2 requested "
        f"({ANNOTATION_RETRY_REQUESTED_AT}={STAMP})\n"
    ), "")
    assert annotation(kubectl, namespace, "exportjob", "orders",
                      ANNOTATION_RETRY_REQUESTED_AT) == STAMP


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["orders", "--run", "7"], 'run orders.7 not found in the history of exportjob "orders"'),
        (["orders", "--run", "1"],
         "run orders.1 Succeeded: only a Failed, PartiallySucceeded or Canceled run can be "
         "retried"),
        (["contacts"], "run contacts.3 is InProgress: retry after it ends"),
    ],
)
def test_retry_refused(ferry: Ferry, jobs: None, args: list[str], message: str) -> None:
    assert ferry("retry", *args) == (1, "", f"error: {message}\n")


# --- suspend / resume / clone ------------------------------------------------------------


def test_suspend_and_resume(ferry: Ferry, kubectl: Kubectl, namespace: str,
                            crds: None) -> None:
    apply(kubectl, namespace, exportjob("seasonal"))
    code, out, err = ferry("suspend", "seasonal")
    assert (code, out) == (0, "exportjob.ferry.dev/seasonal suspended\n")
    assert err == ("hint: if Git is the source of this object: set spec.suspend: true in Git "
                   "too, or the next sync reverts this change\n")
    assert get(kubectl, namespace, "exportjob", "seasonal")["spec"]["suspend"] is True
    assert ferry("suspend", "seasonal") == (0, "exportjob.ferry.dev/seasonal already suspended\n",
                                            "")
    code, out, _ = ferry("resume", "seasonal")
    assert (code, out) == (0, "exportjob.ferry.dev/seasonal resumed\n")
    assert get(kubectl, namespace, "exportjob", "seasonal")["spec"]["suspend"] is False


def test_resume_of_a_started_one_time_job_is_refused(ferry: Ferry, kubectl: Kubectl,
                                                     namespace: str, crds: None) -> None:
    spec = {**job_spec(), "schedule": {"once": {}}, "suspend": True}
    apply(kubectl, namespace, exportjob("once", spec))
    set_status(kubectl, namespace, "exportjob", "once",
               {"oneTimeStartedAt": "2026-11-22T11:00:00Z", "phase": "Suspended"})
    assert ferry("resume", "once") == (1, "", (
        'error: exportjob "once" is a one-time job that has already started: it cannot be '
        "resumed; clone it to run it again (kubectl ferry clone once NEW)\n"
    ))


def test_clone(ferry: Ferry, jobs: None, kubectl: Kubectl, namespace: str) -> None:
    kubectl("annotate", "-n", namespace, "exportjob", "contacts", "team=crm", "--overwrite")
    code, out, err = ferry("clone", "contacts", "contacts-copy", "--title", "Copy")
    assert (code, out) == (0, "exportjob.ferry.dev/contacts-copy created from contacts "
                              "(suspended)\n")
    assert err.startswith("hint: review it with `kubectl ferry describe contacts-copy`")
    copy = get(kubectl, namespace, "exportjob", "contacts-copy")
    source = get(kubectl, namespace, "exportjob", "contacts")
    assert copy["spec"] == {**source["spec"], "suspend": True, "title": "Copy"}
    assert "status" not in copy
    assert "annotations" not in copy["metadata"]
    assert ferry("clone", "contacts", "contacts-copy") == (1, "", (
        f'error: exportjob "contacts-copy" already exists in namespace "{namespace}"\n'))
    assert ferry("clone", "nope", "x") == (
        1, "", f'error: exportjob "nope" not found in namespace "{namespace}"\n')


def test_clone_to_an_invalid_name_shows_the_api_error(ferry: Ferry, jobs: None) -> None:
    code, out, err = ferry("clone", "contacts", "Bad_Name")
    assert (code, out) == (1, "")
    assert err.startswith('error: create exportjob "Bad_Name": ')
    assert err.count("\n") == 1


# --- download / errors (real S3) ---------------------------------------------------------


def put(client: Any, bucket: str, key: str, body: bytes) -> dict[str, Any]:
    client.put_object(Bucket=bucket, Key=key, Body=body)
    return {"key": key, "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "records": body.count(b"\n"), "etag": "x"}


@pytest.fixture(scope="module")
def exported(kubectl: Kubectl, namespace: str, crds: None, s3: S3Server,
             s3_bucket: str) -> dict[str, bytes]:
    """Job 'shipped': run 2 PartiallySucceeded; batches 0 and 1 committed, 2 failed."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bucket-creds"},
              "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(s3.access_key.encode()).decode(),
                       "AWS_SECRET_ACCESS_KEY": base64.b64encode(s3.secret_key.encode()).decode()}}
    apply(kubectl, namespace, secret)
    spec = job_spec(bucket=s3_bucket, endpoint=s3.endpoint_url)
    spec["output"]["s3"]["region"] = s3.region
    apply(kubectl, namespace, exportjob("shipped", spec))
    status = failed_status("shipped")
    assert status.history is not None
    status.history[0] = status.history[0].model_copy(
        update={"phase": RunPhase.PARTIALLY_SUCCEEDED, "failed_batches": [2]})
    status.last_run = status.history[0]
    set_status(kubectl, namespace, "exportjob", "shipped", status.to_k8s())

    client = s3.client()
    run = "ferry/shipped/shipped.2"
    data = {
        "shipped-0-0-aaaa0000.csv": b"id,name\n1,a\n2,b\n",
        "shipped-0-1-aaaa0000.csv": b"id,name\n3,c\n",
        "shipped-1-0-bbbb1111.csv": b"id,name\n4,d\n",
    }
    entries = {name: put(client, s3_bucket, f"{run}/{name}", body) for name, body in data.items()}
    put(client, s3_bucket, f"{run}/shipped-1-0-deadbeef.csv", b"uncommitted attempt\n")
    for batch, names in ((0, ["shipped-0-0-aaaa0000.csv", "shipped-0-1-aaaa0000.csv"]),
                         (1, ["shipped-1-0-bbbb1111.csv"])):
        manifest = {"version": 1, "job": "shipped", "run": "shipped.2", "batch": batch,
                    "batchCount": 3, "files": [entries[n] for n in names]}
        put(client, s3_bucket, f"{run}/_manifests/batch-{batch}.json",
            json.dumps(manifest).encode())
    errors = [
        {"time": "2026-11-22T11:03:00.000Z", "job": "shipped", "run": "shipped.2", "batch": 2,
         "attempt": "cccc2222", "pod": "shipped-2-2-x", "kind": "transient", "exitCode": 75,
         "reason": "connection to server lost"},
        {"time": "2026-11-22T11:05:00.000Z", "job": "shipped", "run": "shipped.2", "batch": 2,
         "attempt": "dddd3333", "pod": "shipped-2-2-y", "kind": "data", "exitCode": 4,
         "reason": "record of 2 MiB exceeds fileSplitSize 1Mi"},
    ]
    put(client, s3_bucket, f"{run}/_errors/batch-2.jsonl",
        b"".join(json.dumps(e).encode() + b"\n" for e in errors))
    return data


def test_download_only_committed_files(ferry: Ferry, exported: dict[str, bytes],
                                       tmp_path: Path) -> None:
    code, out, err = ferry("download", "shipped", "-o", str(tmp_path))
    assert (code, err) == (0, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(exported)
    for name, body in exported.items():
        assert (tmp_path / name).read_bytes() == body
    assert out.splitlines()[-1] == f"downloaded 3 file(s), 40 B, of run shipped.2 to {tmp_path}"
    assert out.splitlines()[0] == f"{tmp_path / 'shipped-0-0-aaaa0000.csv'}  (16 B, batch 0)"


def test_download_one_batch(ferry: Ferry, exported: dict[str, bytes], tmp_path: Path) -> None:
    code, _, _ = ferry("download", "shipped", "--run", "2", "--batch", "1", "-o", str(tmp_path))
    assert code == 0
    assert [p.name for p in tmp_path.iterdir()] == ["shipped-1-0-bbbb1111.csv"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "2"], "batch 2 of run shipped.2 has no manifest: it did not commit any "
                           "files (see kubectl ferry errors ... --run)"),
        (["--run", "1"], "run shipped.1 has no committed files (no manifests under "
                         "s3://{bucket}/ferry/shipped/shipped.1/_manifests/)"),
        (["--run", "5"], 'run shipped.5 not found: exportjob "shipped" has no run number 5'),
    ],
)
def test_download_refused(ferry: Ferry, exported: dict[str, bytes], s3_bucket: str,
                          tmp_path: Path, args: list[str], message: str) -> None:
    assert ferry("download", "shipped", *args, "-o", str(tmp_path)) == (
        1, "", f"error: {message.format(bucket=s3_bucket)}\n")
    assert list(tmp_path.iterdir()) == []


def test_download_rejects_a_file_that_does_not_match_its_manifest(
    ferry: Ferry, exported: dict[str, bytes], s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    key = "ferry/shipped/shipped.2/shipped-1-0-bbbb1111.csv"
    s3.client().put_object(Bucket=s3_bucket, Key=key, Body=b"id,name\n4,X\n")
    try:
        code, _, err = ferry("download", "shipped", "--batch", "1", "-o", str(tmp_path))
    finally:
        s3.client().put_object(Bucket=s3_bucket, Key=key,
                               Body=exported["shipped-1-0-bbbb1111.csv"])
    assert code == 1
    assert err.startswith(f"error: s3://{s3_bucket}/{key} does not match its manifest")
    assert list(tmp_path.iterdir()) == []


def test_errors(ferry: Ferry, exported: dict[str, bytes]) -> None:
    assert ferry("errors", "shipped") == (0, (
        "TIME                       BATCH   ATTEMPT    KIND        EXIT   REASON\n"
        "2026-11-22T11:03:00.000Z   2       cccc2222   transient   75     "
        "connection to server lost\n"
        "2026-11-22T11:05:00.000Z   2       dddd3333   data        4      "
        "record of 2 MiB exceeds fileSplitSize 1Mi\n"
    ), "")
    code, out, _ = ferry("errors", "shipped", "-o", "json")
    assert code == 0
    assert [e["attempt"] for e in json.loads(out)] == ["cccc2222", "dddd3333"]
    assert ferry("errors", "shipped", "--run", "1") == (
        0, "", "No errors recorded for run shipped.1.\n")


def test_errors_without_readable_credentials(ferry: Ferry, kubectl: Kubectl, namespace: str,
                                             crds: None) -> None:
    spec = job_spec(bucket="exports", endpoint="http://127.0.0.1:59000")
    spec["output"]["s3"]["credentialsSecretRef"] = {"name": "missing-secret"}
    apply(kubectl, namespace, exportjob("nocreds", spec))
    set_status(kubectl, namespace, "exportjob", "nocreds", failed_status("nocreds").to_k8s())
    assert ferry("errors", "nocreds") == (1, "", (
        f'error: read secret "missing-secret" in namespace "{namespace}": '
        'secrets "missing-secret" not found\n'))


# --- logs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker_pod(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """A finished pod labelled like batch 0 of run shipped.2."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "shipped-2-0-abcde", "labels": {
            LABEL_JOB: "shipped", LABEL_RUN: "2",
            "batch.kubernetes.io/job-completion-index": "0"}},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "worker", "image": "ferry-worker",
            "command": ["sh", "-c", "echo exported 2 rows"]}]},
    }
    apply(kubectl, namespace, pod)
    kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded",
            "pod/shipped-2-0-abcde", "--timeout=60s")
    yield "shipped-2-0-abcde"


def test_logs(ferry: Ferry, exported: dict[str, bytes], worker_pod: str, kubectl: Kubectl,
              namespace: str) -> None:
    """What the pod's process wrote, through the API server's pods/log (served by the
    kubelet, or by the local node agent's /containerLogs), as kubectl logs shows it."""
    assert ferry("logs", "shipped") == (0, "exported 2 rows\n", "")
    assert ferry("logs", "shipped", "--run", "2", "--batch", "0") == (0, "exported 2 rows\n", "")
    assert kubectl("logs", "-n", namespace, f"pod/{worker_pod}").stdout == "exported 2 rows\n"


def test_logs_without_pods(ferry: Ferry, exported: dict[str, bytes], worker_pod: str) -> None:
    assert ferry("logs", "shipped", "--batch", "1") == (1, "", (
        "error: no pods found for batch 1 of run shipped.2: they are deleted with the run's "
        "Job (see kubectl ferry errors for failed batches)\n"))


# --- groups ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def group(kubectl: Kubectl, namespace: str, crds: None) -> str:
    apply(kubectl, namespace, {
        "apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup", "metadata": {"name": "nightly"},
        "spec": {"title": "Nightly import", "members": ["lists", "profiles"]}})
    set_status(kubectl, namespace, "jobgroup", "nightly",
               group_status("nightly", ["lists", "profiles"]).to_k8s())
    return "nightly"


def test_group_list_describe_history(ferry: Ferry, group: str) -> None:
    assert ferry("group", "list") == (0, (
        "NAME      TITLE            MEMBERS   PHASE        CURRENT        LAST RUN           "
        "NEXT RUN\n"
        "nightly   Nightly import   2         InProgress   2/2 profiles   Failed 2h58m ago   -\n"
    ), "")
    code, out, _ = ferry("group", "describe", group)
    assert code == 0
    assert "Members:         lists, profiles\n" in out
    assert "  1   lists      lists.4      Succeeded    2026-11-22T11:40:00Z" in out
    assert ferry("group", "history", group) == (0, (
        "RUN         TRIGGER    STARTED                FINISHED               DURATION   "
        "RESULT       MEMBERS\n"
        "nightly.2   manual     2026-11-22T11:40:00Z   -                      -          "
        "InProgress   1/2 succeeded\n"
        "nightly.1   schedule   2026-11-22T09:00:00Z   2026-11-22T09:02:00Z   2m         "
        "Failed       0/2 succeeded\n"
    ), "")
    code, out, _ = ferry("group", "history", "-o", "json")
    assert [r["id"] for r in json.loads(out)] == ["nightly.2", "nightly.1"]


def test_group_run_stop_retry(ferry: Ferry, group: str, kubectl: Kubectl,
                              namespace: str) -> None:
    assert ferry("group", "run", group) == (1, "", (
        "error: group run nightly.2 is InProgress: wait for it to end or stop it "
        "(kubectl ferry group stop nightly)\n"))
    assert ferry("group", "retry", group) == (
        1, "", "error: group run nightly.2 is InProgress: retry after it ends\n")
    assert ferry("group", "stop", group) == (0, (
        "jobgroup.ferry.dev/nightly stop of group run nightly.2 requested "
        f"({ANNOTATION_STOP_REQUESTED_AT}={STAMP})\n"), "")
    assert annotation(kubectl, namespace, "jobgroup", group,
                      ANNOTATION_STOP_REQUESTED_AT) == STAMP

    set_status(kubectl, namespace, "jobgroup", group, {"currentRun": None, "phase": "Failed"})
    assert ferry("group", "stop", group) == (
        1, "", 'error: jobgroup "nightly" has no run in progress: nothing to stop\n')
    assert ferry("group", "retry", group) == (0, (
        "jobgroup.ferry.dev/nightly retry of group run nightly.1 requested "
        f"({ANNOTATION_RETRY_REQUESTED_AT}={STAMP})\n"), "")
    assert ferry("group", "run", group)[0] == 0
    assert annotation(kubectl, namespace, "jobgroup", group,
                      ANNOTATION_RUN_REQUESTED_AT) == STAMP


def test_unknown_group(ferry: Ferry, namespace: str, crds: None) -> None:
    for verb in ("describe", "history", "run", "stop", "retry"):
        assert ferry("group", verb, "nope") == (
            1, "", f'error: jobgroup "nope" not found in namespace "{namespace}"\n')


def test_console_script_exit_codes(kubeconfig: str, namespace: str, crds: None) -> None:
    """The installed `kubectl-ferry` executable (what kubectl runs as a plugin)."""
    exe = str(ROOT / ".venv" / "bin" / "kubectl-ferry")
    found = subprocess.run([exe, "describe", "nope", "--kubeconfig", kubeconfig, "-n",
                            namespace], capture_output=True, text=True, timeout=60, check=False)
    assert (found.returncode, found.stdout, found.stderr) == (
        1, "", f'error: exportjob "nope" not found in namespace "{namespace}"\n')
    usage = subprocess.run([exe, "list", "--x"], capture_output=True, text=True, timeout=60,
                           check=False)
    assert (usage.returncode, usage.stdout, usage.stderr) == (
        1, "", "error: unrecognized arguments: --x\nSee 'kubectl ferry --help' for usage.\n")

