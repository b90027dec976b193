"""ExportJobs to SFTP through the operator, on the real cluster, against Debian's sshd
(hack/sshd.py: chroot, key authentication, a loopback port): the files land complete
with their manifests, `kubectl ferry download` and `errors` read them, a wrong key
ends the run once as a configuration error with Ready=False (no retry storm), and no
credential shows up anywhere a user or a log reader looks."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from hack import sshd

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT, LABEL_JOB, LABEL_RUN
from tests.integration.conftest import parse_csv

from .operator_fixtures import (
    OperatorProcess,
    Wiring,
    _secret,
    get,
    plugin,
    pod_log_dir,
    request,
)
from .support import Kubectl, wait_until

pytestmark = pytest.mark.skipif(sshd.available() is not None, reason=str(sshd.available()))

ROWS = 500
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[sshd.SftpServer]:
    srv = sshd.SftpServer("e2e").prepare()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def rows(pg_db: str) -> list[list[str | None]]:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions (id bigint PRIMARY KEY, "
                     "created_at timestamptz NOT NULL, note text)")
        with conn.cursor().copy("COPY interactions FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row((i, START + dt.timedelta(minutes=i), f'row "{i}",\nnote'))
    return [[str(i), f'row "{i}",\nnote'] for i in range(ROWS)]


def apply(kubectl: Kubectl, ns: str, manifest: dict[str, Any]) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))


def sftp_job(name: str, wiring: Wiring, server: sshd.SftpServer, secret: str) -> dict[str, Any]:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob", "metadata": {"name": name},
            "spec": {"title": f"e2e {name}",
                     "source": {"type": "postgres",
                                "connectionSecretRef": {"name": wiring.db_secret, "key": "dsn"},
                                "table": "interactions", "columns": ["id", "note"],
                                "keyColumn": "id"},
                     "batching": {"batches": 2, "retriesPerBatch": 1},
                     "output": {"format": "csv", "sftp": {
                         "host": "127.0.0.1", "port": server.port,
                         "directory": server.directory, "hostKey": server.host_key,
                         "credentialsSecretRef": {"name": secret,
                                                  "privateKeyKey": "ssh-privatekey"}}}}}


def status_of(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    return get(kubectl, ns, f"exportjob/{name}").get("status") or {}  # type: ignore[no-any-return]


def last_run(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    return status_of(kubectl, ns, name).get("lastRun")  # type: ignore[no-any-return]


def ready(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    return next((c for c in status_of(kubectl, ns, name).get("conditions") or []
                 if c["type"] == "Ready"), {})


def exit_codes(kubectl: Kubectl, ns: str, name: str) -> list[int]:
    return [cs["state"]["terminated"]["exitCode"] for p in get(kubectl, ns, "pods")["items"]
            if p["metadata"]["labels"].get(LABEL_JOB) == name
            and LABEL_RUN in p["metadata"]["labels"]
            for cs in p["status"].get("containerStatuses") or [] if "terminated" in cs["state"]]


def other_private_key(tmp_path: Path) -> str:
    path = tmp_path / "wrong_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True)
    return path.read_text()


def test_sftp_exports_download_errors_and_no_leaks(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, server: sshd.SftpServer,
    rows: list[list[str | None]], kubeconfig: str, tmp_path: Path,
) -> None:
    ns = wiring.namespace
    wrong_key = other_private_key(tmp_path)
    apply(kubectl, ns, _secret("partner-sftp", {"username": server.user,
                                                "ssh-privatekey": server.private_key}))
    apply(kubectl, ns, _secret("partner-sftp-wrong", {"username": server.user,
                                                      "ssh-privatekey": wrong_key}))
    apply(kubectl, ns, sftp_job("to-sftp", wiring, server, "partner-sftp"))
    apply(kubectl, ns, sftp_job("wrong-key", wiring, server, "partner-sftp-wrong"))
    for name in ("to-sftp", "wrong-key"):
        request(kubectl, ns, name, ANNOTATION_RUN_REQUESTED_AT)
    done = wait_until(lambda: (r := last_run(kubectl, ns, "to-sftp")) and r, timeout=180,
                      what="the SFTP run to end")
    assert done["phase"] == "Succeeded", done
    assert done["records"] == ROWS

    # The files, as the partner sees them: two batches, manifests last, rows complete.
    run_folder = next((server.upload / "to-sftp").iterdir())
    manifests = sorted((run_folder / "_manifests").iterdir())
    assert [m.name for m in manifests] == ["batch-0.json", "batch-1.json"]
    got: list[list[str | None]] = []
    for m in manifests:
        for entry in json.loads(m.read_text())["files"]:
            got += parse_csv((server.upload / entry["key"]).read_text())[1:]
    assert sorted(got, key=lambda r: int(r[0] or 0)) == rows
    assert not [p for p in run_folder.rglob("*.tmp")]

    # kubectl ferry download reads the same files over SFTP with the job's Secret.
    out = tmp_path / "download"
    result = plugin(kubeconfig, ns, "download", "to-sftp", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "downloaded 2 file(s)" in result.stdout
    downloaded = [parse_csv(p.read_text())[1:] for p in sorted(out.rglob("*.csv"))]
    assert sorted((r for f in downloaded for r in f), key=lambda r: int(r[0] or 0)) == rows

    # A wrong key: one pod per batch, exit 3, Ready=False saying what to check.
    failed = wait_until(lambda: (r := last_run(kubectl, ns, "wrong-key")) and r, timeout=180,
                        what="the wrong-key run to end")
    assert failed["phase"] == "Failed", failed
    condition = ready(kubectl, ns, "wrong-key")
    assert (condition["status"], condition["reason"]) == ("False", "ConfigurationError")
    assert "login as 'ferry-sftp' refused" in condition["message"]
    assert "spec.output.sftp.credentialsSecretRef" in condition["message"]
    assert sorted(exit_codes(kubectl, ns, "wrong-key")) == [3, 3], "no retries, no crash loop"
    assert operator.process.poll() is None
    # Its error report could not go where the data goes (the login is what failed), so
    # `errors` says why it cannot read the folder.
    errors = plugin(kubeconfig, ns, "errors", "wrong-key")
    assert errors.returncode != 0
    assert "login as 'ferry-sftp' refused" in errors.stderr

    # The secret scan: neither private key anywhere a user or a log reader looks.
    places: dict[str, str] = {
        "exportjobs (spec+status)": json.dumps(get(kubectl, ns, "exportjobs")),
        "events": json.dumps(get(kubectl, ns, "events")),
        "jobs": json.dumps(get(kubectl, ns, "jobs")),
        "operator log": operator.logs(),
        "plugin output": result.stdout + result.stderr + errors.stdout + errors.stderr,
    }
    pods = get(kubectl, ns, "pods")["items"]
    places["termination messages"] = json.dumps(
        [cs.get("state", {}).get("terminated", {}).get("message")
         for p in pods for cs in p["status"].get("containerStatuses") or []])
    logs = sorted(pod_log_dir().glob(f"{ns}_*/*.log"))
    assert logs, "no worker logs found"
    places["worker logs"] = "\n".join(p.read_text(errors="replace") for p in logs)
    places["error reports and manifests"] = "\n".join(
        p.read_text() for p in server.upload.rglob("*.json*") if p.is_file())
    secrets_ = {f"{what} line {n}": line
                for what, key in (("private key", server.private_key), ("wrong key", wrong_key))
                for n, line in enumerate(key.splitlines()[1:-1], 1) if len(line) > 20}
    leaks = [f"{what} in {where}" for what, value in secrets_.items()
             for where, text in places.items() if value in text]
    assert leaks == []


def test_a_changed_host_key_fails_once_with_ready_false_and_nothing_sent(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, server: sshd.SftpServer,
    rows: list[list[str | None]], tmp_path: Path,
) -> None:
    ns, name = wiring.namespace, "changed-host-key"
    apply(kubectl, ns, _secret("partner-sftp", {"username": server.user,
                                                "ssh-privatekey": server.private_key}))
    other = tmp_path / "other_host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(other)],
                   check=True)
    manifest = sftp_job(name, wiring, server, "partner-sftp")
    manifest["spec"]["output"]["sftp"]["hostKey"] = " ".join(
        Path(f"{other}.pub").read_text().split()[:2])
    log_before = server.log.read_text()
    apply(kubectl, ns, manifest)
    request(kubectl, ns, name, ANNOTATION_RUN_REQUESTED_AT)
    failed = wait_until(lambda: (r := last_run(kubectl, ns, name)) and r, timeout=180,
                        what="the run to end")
    assert failed["phase"] == "Failed", failed
    condition = ready(kubectl, ns, name)
    assert (condition["status"], condition["reason"]) == ("False", "ConfigurationError")
    assert f"SFTP 127.0.0.1:{server.port}: refused the server's host key ssh-ed25519 " \
        "SHA256:" in condition["message"]
    assert sorted(exit_codes(kubectl, ns, name)) == [3, 3], "no retries, no crash loop"
    assert not (server.upload / name).exists()
    new_log = server.log.read_text()[len(log_before):]
    assert "Accepted" not in new_log and server.user not in new_log, "no login was tried"
