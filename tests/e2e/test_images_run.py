"""The images `make images` built, run as containers by runc the way a restricted pod
runs them: read-only root filesystem, user 65532 from the image, every capability
dropped, no new privileges, a memory limit (cgroup v1 here), a /tmp tmpfs (the chart's
emptyDir) and the termination-message file bind-mounted at /dev/termination-log, as the
kubelet does. The network is the host's, and only loopback is used: PostgreSQL and
MinIO of tests/fixtures listen on 127.0.0.1.

This is issue 24's fallback test: it needs no kubelet, only Debian's runc and umoci,
and keeps its worth once a real node exists (it checks the images, not the cluster).
The operator image is started for `ferry-operator --help` (every controller module and
kopf imported, exit 0): answering its liveness endpoint needs a kube-apiserver, which
this module does not start.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from tests.fixtures.services import S3Server

ROOT = Path(__file__).resolve().parents[2]
OCI = ROOT / ".cache" / "images" / "oci"
VERSION = "0.1.0"
UID = 65532
MEMORY_LIMIT = 512 * 1024 * 1024
PROBE_MEMORY_LIMIT = 128 * 1024 * 1024


def _missing() -> str | None:
    for tool in ("runc", "umoci"):
        if shutil.which(tool) is None:
            return f"{tool} not installed: run `make images` (it installs Debian's runc and umoci)"
    for image in ("ferry-worker", "ferry-operator"):
        if not (OCI / image / "index.json").exists():
            return f"{OCI / image} missing: run `make images` first (make test does)"
    return None


pytestmark = [pytest.mark.e2e, pytest.mark.skipif(_missing() is not None,
                                                   reason=_missing() or "")]


class Container:
    """An unpacked image (read-only, shared by every run) and runc to run it."""

    def __init__(self, image: str, workdir: Path) -> None:
        self.workdir = workdir
        ref = f"{OCI / image}:{VERSION}"
        self.rootfs = workdir / "rootfs"
        # raw: the layers only, without umoci's mtree of them (a third of the time).
        subprocess.run(["umoci", "raw", "unpack", "--image", ref, str(self.rootfs)],
                       check=True, capture_output=True, timeout=300)
        config = workdir / "image-config.json"
        subprocess.run(["umoci", "raw", "runtime-config", "--image", ref,
                        "--rootfs", str(self.rootfs), str(config)],
                       check=True, capture_output=True, timeout=60)
        self.image_config: dict[str, Any] = json.loads(config.read_text())
        self.state = workdir / "runc-state"
        self.state.mkdir()

    def spec(self, args: list[str] | None, env: dict[str, str], memory: int,
             mounts: list[dict[str, Any]]) -> dict[str, Any]:
        """The image's own config (user, env, cwd, entrypoint) made into a restricted pod's."""
        spec = copy.deepcopy(self.image_config)
        spec["root"] = {"path": str(self.rootfs), "readonly": True}
        process = spec["process"]
        process["terminal"] = False
        if args is not None:
            process["args"] = args
        process["env"] = [*process["env"], *(f"{k}={v}" for k, v in env.items())]
        process["capabilities"] = {k: [] for k in
                                   ("bounding", "effective", "inheritable", "permitted", "ambient")}
        process["noNewPrivileges"] = True
        linux = spec["linux"]
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
        linux["resources"] = {"memory": {"limit": memory, "swap": memory}}
        linux["cgroupsPath"] = f"/{CGROUP_PARENT}/{uuid.uuid4().hex[:12]}"
        spec["mounts"] = [*spec["mounts"],
                          {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]},
                          *mounts]
        return spec

    def run(self, args: list[str] | None = None, env: dict[str, str] | None = None,
            memory: int = MEMORY_LIMIT, mounts: list[dict[str, Any]] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess[str]:
        name = f"ferry-{uuid.uuid4().hex[:12]}"
        bundle = self.workdir / name
        bundle.mkdir()
        (bundle / "config.json").write_text(
            json.dumps(self.spec(args, env or {}, memory, mounts or [])))
        try:
            return subprocess.run(
                ["runc", "--root", str(self.state), "run", "--bundle", str(bundle), name],
                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                check=False)
        finally:
            subprocess.run(["runc", "--root", str(self.state), "delete", "--force", name],
                           capture_output=True, check=False)


CGROUP_PARENT = "ferry-image-test"


@pytest.fixture(scope="module", autouse=True)
def _remove_cgroup_parent() -> Iterator[None]:
    """runc removes each container's cgroup, not the parent it created them under."""
    yield
    for parent in sorted(Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}")):
        parent.rmdir()


@pytest.fixture(scope="module")
def worker_image(tmp_path_factory: pytest.TempPathFactory) -> Container:
    return Container("ferry-worker", tmp_path_factory.mktemp("worker-image"))


@pytest.fixture(scope="module")
def operator_image(tmp_path_factory: pytest.TempPathFactory) -> Container:
    return Container("ferry-operator", tmp_path_factory.mktemp("operator-image"))


PROBE = """
import errno, json, os, sys
out = {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd()}
for path in ("/probe", "/opt/ferry/probe", "/tmp/probe"):
    try:
        open(path, "w").close()
        out[path] = "written"
    except OSError as exc:
        out[path] = errno.errorcode[exc.errno]
out["limit"] = int(open("/sys/fs/cgroup/memory/memory.limit_in_bytes").read())
import ferry.worker._copyrows, pyarrow, psycopg, zstandard, isal, boto3  # the worker's deps
out["python"] = sys.version.split()[0]
print(json.dumps(out), flush=True)
if len(sys.argv) > 1:
    hog = [bytearray(16 * 1024 * 1024) for _ in range(int(sys.argv[1]))]
    print("still alive", flush=True)
"""


def test_worker_image_runs_as_65532_on_a_read_only_root_within_its_memory_limit(
        worker_image: Container) -> None:
    result = worker_image.run(["python3", "-c", PROBE], memory=PROBE_MEMORY_LIMIT)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert (seen["uid"], seen["gid"], seen["cwd"]) == (UID, UID, "/tmp")
    assert seen["/probe"] == seen["/opt/ferry/probe"] == "EROFS"
    assert seen["/tmp/probe"] == "written"  # the emptyDir stand-in
    assert seen["limit"] == PROBE_MEMORY_LIMIT
    assert seen["python"].startswith("3.11.")
    # The limit is enforced: 256 MiB in a 128 MiB cgroup is killed (SIGKILL: 137).
    hog = worker_image.run(["python3", "-c", PROBE, "16"], memory=PROBE_MEMORY_LIMIT)
    assert hog.returncode == 137, (hog.returncode, hog.stdout, hog.stderr)
    assert "still alive" not in hog.stdout


@pytest.fixture(scope="module")
def source_rows(pg_db: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("""CREATE TABLE shipments (id integer PRIMARY KEY, big bigint,
                        label text, amount numeric(12, 2), ts timestamptz, ok boolean)""")
        conn.execute("""INSERT INTO shipments VALUES
            (1, 9007199254740993, 'héllo ✓ 日本語 🚀', -1234567890.12,
             '2024-03-10 02:30:00-08', true),
            (2, NULL, NULL, NULL, NULL, NULL),
            (3, -5, 'line1\nline2 "quoted", comma', 0, '1970-01-01 00:00:00+00', false)""")
        conn.execute("""INSERT INTO shipments
            SELECT g, g::bigint * 1000003, 'bulk ' || g, g / 7.0,
                   timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', g % 2 = 0
            FROM generate_series(100, 5099) g""")
        return conn.execute("SELECT * FROM shipments ORDER BY id").fetchall()


@pytest.fixture
def termination_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "termination-log"
    path.touch()
    path.chmod(0o666)  # the container's user is 65532, as a pod's would be
    yield path


def test_worker_image_exports_real_rows_from_postgres_to_minio(
        worker_image: Container, source_rows: list[tuple[Any, ...]], pg_db: str, s3: S3Server,
        s3_bucket: str, termination_log: Path) -> None:
    plan = {
        "job": "shipments", "run": "shipments.1", "source": {"table": "shipments"},
        "format": "parquet", "compression": "zstd",
        "destination": {"bucket": s3_bucket, "prefix": "image-run", "endpoint": s3.endpoint_url,
                        "region": s3.region, "pathStyle": True},
    }
    result = worker_image.run(
        ["/opt/ferry/bin/ferry-worker", "export"],
        env={"FERRY_PLAN": json.dumps(plan), "FERRY_SOURCE_DSN": pg_db,
             "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
             "FERRY_MAX_ATTEMPTS": "1"},
        mounts=[{"destination": "/dev/termination-log", "type": "bind",
                 "source": str(termination_log), "options": ["rbind", "rw"]}])
    assert result.returncode == 0, result.stderr[-4000:]
    message = json.loads(termination_log.read_text())
    assert message["records"] == len(source_rows), message

    client = s3.client()
    folder = "image-run/shipments/shipments.1"
    manifest = json.loads(client.get_object(
        Bucket=s3_bucket, Key=f"{folder}/_manifests/batch-0.json")["Body"].read())
    assert [f["records"] for f in manifest["files"]] == [len(source_rows)]
    raw = client.get_object(Bucket=s3_bucket, Key=manifest["files"][0]["key"])["Body"].read()
    table = pq.read_table(io.BytesIO(raw))
    assert table.column_names == ["id", "big", "label", "amount", "ts", "ok"]
    exported = sorted((tuple(row.values()) for row in table.to_pylist()), key=lambda r: r[0])
    assert exported == source_rows
    assert isinstance(exported[0][3], Decimal)


def test_operator_image_starts_its_console_script(operator_image: Container) -> None:
    result = operator_image.run(["/opt/ferry/bin/ferry-operator", "--help"])
    assert result.returncode == 0, result.stderr
    assert "usage: ferry-operator" in result.stdout
    assert "--liveness" in result.stdout
    # The operator's dependencies and the image's user, from the image's own venv.
    probe = operator_image.run(
        ["python3", "-c", "import os, kopf, kubernetes_asyncio, ferry.controller.main; "
                          "print(os.getuid())"])
    assert (probe.returncode, probe.stdout.strip()) == (0, str(UID)), probe.stderr
