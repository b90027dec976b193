"""A running ferry-operator and a namespace wired to the test database and bucket.

The operator runs as a local process (as it would in its pod) against the e2e
cluster; worker pods run through the node agent with their own ServiceAccount.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from hack import cluster

from ferry.constants import LABEL_JOB, LABEL_RUN
from tests.fixtures.services import S3Server

from .support import Kubectl

ROOT = Path(__file__).resolve().parents[2]
WORKER_SA = "ferry-worker"
OPERATOR_NAMESPACE = "ferry-system"


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for plural in ("exportjobs", "jobgroups"):
        kubectl("wait", "--for=condition=Established", f"crd/{plural}.ferry.dev",
                "--timeout=60s")


def helm_template(*flags: str) -> str:
    """Render parts of charts/ferry: the e2e suite runs with the chart's own RBAC."""
    helm = subprocess.run(["bash", str(ROOT / "hack" / "build-tools.sh"), "--path", "helm"],
                          capture_output=True, text=True, check=True, timeout=1800).stdout.strip()
    return subprocess.run([helm, "template", "ferry", str(ROOT / "charts" / "ferry"), *flags],
                          capture_output=True, text=True, check=True, timeout=120).stdout


def write_operator_kubeconfig(kubectl: Kubectl, path: Path) -> str:
    """The chart's operator ServiceAccount and RBAC applied with ``kubectl``, and a
    kubeconfig at ``path`` holding a token of that ServiceAccount (not admin)."""
    kubectl("apply", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}))
    kubectl("apply", "-f", "-", input=helm_template(
        "--namespace", OPERATOR_NAMESPACE, "--show-only", "templates/serviceaccount.yaml",
        "--show-only", "templates/rbac-operator.yaml"))
    token = kubectl("create", "token", "ferry-operator", "-n", OPERATOR_NAMESPACE,
                    "--duration=24h").stdout.strip()
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster_entry = admin["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster_entry],
        "users": [{"name": "ferry-operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster_entry["name"],
                                                      "user": "ferry-operator"}}],
        "current-context": "operator",
    }))
    return str(path)


@pytest.fixture(scope="session")
def operator_kubeconfig(crds: None, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
                        ) -> str:
    """A kubeconfig holding a token of the chart's operator ServiceAccount, not admin."""
    return write_operator_kubeconfig(
        kubectl, tmp_path_factory.mktemp("operator-identity") / "kubeconfig")


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, like a crashed pod: no cleanup handlers run."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, as a pod's deletion sends, then SIGKILL after 15 s; nothing if it ended."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


def start_operator(kubeconfig: str, log: Path, namespace: str,
                   extra_args: Sequence[str] = ()) -> OperatorProcess:
    """The operator watching one test namespace, so that test modules (and developers
    running suites side by side on one cluster) never share an operator's decisions.
    ``extra_args`` are appended to the command line (e.g. the --webhook-* flags)."""
    env = {**os.environ, "KUBECONFIG": kubeconfig, "FERRY_WORKER_IMAGE": "ferry-worker:e2e",
           "FERRY_WORKER_SERVICE_ACCOUNT": WORKER_SA}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "ferry-operator"), "--verbose", "-n", namespace,
             *extra_args],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return OperatorProcess(process, log)


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: str, namespace: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    running = start_operator(operator_kubeconfig, log, namespace)
    yield running
    running.stop()


@dataclass(frozen=True)
class Wiring:
    namespace: str
    bucket: str
    db_secret: str = "warehouse-db"
    s3_secret: str = "export-bucket"


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


@pytest.fixture(scope="module")
def wiring(kubectl: Kubectl, operator: OperatorProcess, namespace: str, pg_db: str,
           s3: S3Server, s3_bucket: str) -> Iterator[Wiring]:
    """Secrets for the database and bucket; the worker's identity as the chart makes it."""
    kubectl("apply", "-n", namespace, "-f", "-", input=helm_template(
        "--namespace", OPERATOR_NAMESPACE, "--show-only", "templates/worker.yaml",
        "--set", f"worker.namespaces={{{namespace}}}"))
    objects = [
        _secret("warehouse-db", {"dsn": pg_db}),
        _secret("export-bucket", {"accessKeyId": s3.access_key,
                                  "secretAccessKey": s3.secret_key}),
    ]
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))
    yield Wiring(namespace=namespace, bucket=s3_bucket)
    # While the operator still runs, so that it releases its finalizers. On a cluster too
    # slow for that, strip what is left (with a warning), or the namespace would stay
    # Terminating for good once the operator is gone.
    # Under the kubectl fixture's own 120 s limit, so the fallback below is reached.
    deleted = kubectl("delete", "exportjobs", "--all", "-n", namespace, "--timeout=100s",
                      check=False)
    if deleted.returncode != 0:
        left = kubectl("get", "exportjobs", "-n", namespace, "-o", "name", check=False)
        names = left.stdout.split()
        warnings.warn(f"operator did not release {names} in {namespace} within 100 s; "
                      "finalizers stripped", stacklevel=1)
        for name in names:
            kubectl("patch", name, "-n", namespace, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}', check=False)


def export_job(name: str, wiring: Wiring, s3: S3Server, **spec: Any) -> dict[str, Any]:
    """An ExportJob manifest against the wired database and bucket; ``spec`` overrides."""
    body: dict[str, Any] = {
        "title": f"e2e {name}",
        "source": {"type": "postgres",
                   "connectionSecretRef": {"name": wiring.db_secret, "key": "dsn"},
                   "table": "interactions", "timestampColumn": "created_at"},
        "output": {"s3": {"bucket": wiring.bucket, "prefix": "e2e", "endpoint": s3.endpoint_url,
                          "region": s3.region, "forcePathStyle": True,
                          "credentialsSecretRef": {"name": wiring.s3_secret,
                                                   "accessKeyIdKey": "accessKeyId",
                                                   "secretAccessKeyKey": "secretAccessKey"}},
                   "format": "csv"},
    }
    body.update(spec)
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob",
            "metadata": {"name": name}, "spec": body}


PREFIX = "landing"
"""Where import_job's ImportJobs read their files: landing/<job name>/."""


def import_job(name: str, wiring: Wiring, s3: S3Server, into: str, **spec: Any
               ) -> dict[str, Any]:
    """An ImportJob of the CSV files under ``landing/<name>/`` into table ``into``."""
    body: dict[str, Any] = {
        "title": f"e2e {name}",
        "source": {"s3": {"bucket": wiring.bucket, "prefix": f"{PREFIX}/{name}",
                          "endpoint": s3.endpoint_url, "region": s3.region,
                          "forcePathStyle": True,
                          "credentialsSecretRef": {"name": wiring.s3_secret,
                                                   "accessKeyIdKey": "accessKeyId",
                                                   "secretAccessKeyKey": "secretAccessKey"}}},
        "format": "csv",
        "destination": {"type": "postgres",
                        "connectionSecretRef": {"name": wiring.db_secret, "key": "dsn"},
                        "table": into},
    }
    body.update(spec)
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ImportJob",
            "metadata": {"name": name}, "spec": body}


def put_csv(s3: S3Server, bucket: str, key: str, rows: list[tuple[Any, ...]],
            header: str = "id,name,score") -> None:
    body = header + "\n" + "".join(",".join("" if v is None else str(v) for v in row) + "\n"
                                   for row in rows)
    s3.client().put_object(Bucket=bucket, Key=key, Body=body.encode())


def get(kubectl: Kubectl, namespace: str, resource: str) -> dict[str, Any]:
    return json.loads(kubectl("get", resource, "-n", namespace, "-o", "json").stdout)  # type: ignore[no-any-return]


def run_jobs(kubectl: Kubectl, namespace: str, job: str | None = None) -> list[dict[str, Any]]:
    """The batch/v1 Jobs of runs, of ExportJob ``job`` or of all: not the one-pod seal
    Job (label ferry.dev/seal) that writes a finished run's _run.json."""
    return [j for j in get(kubectl, namespace, "jobs")["items"]
            if LABEL_RUN in (j["metadata"].get("labels") or {}) and
            (job is None or j["metadata"]["labels"].get(LABEL_JOB) == job)]


def minute_rows(pg_db: str, before: int, ahead: int) -> list[dt.datetime]:
    """Table `interactions`: one row a minute (at :30) from ``before`` minutes ago to
    ``ahead`` minutes from now, for schedules that fire on the real clock."""
    now = dt.datetime.now(dt.UTC).replace(second=30, microsecond=0)
    stamps = [now - dt.timedelta(minutes=i) for i in range(-ahead, before)]
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions (id bigint PRIMARY KEY, "
                     "created_at timestamptz NOT NULL)")
        with conn.cursor().copy("COPY interactions FROM STDIN") as copy:
            for i, stamp in enumerate(stamps):
                copy.write_row((i, stamp))
    return stamps


def plugin(kubeconfig: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `kubectl-ferry`, as a user runs it."""
    return subprocess.run([str(ROOT / ".venv" / "bin" / "kubectl-ferry"), "-n", namespace,
                           *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "KUBECONFIG": kubeconfig})


def request(kubectl: Kubectl, namespace: str, name: str, annotation: str) -> str:
    """Set a Flux-style request annotation to a fresh timestamp, as `kubectl ferry` does."""
    value = f"{time.time():.6f}"
    kubectl("annotate", "-n", namespace, f"exportjob/{name}", f"{annotation}={value}",
            "--overwrite")
    return value


def pod_log_dir() -> Path:
    return cluster.STATE / "pods"
