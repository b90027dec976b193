"""The worker against real PostgreSQL and a real OpenSSH server (Debian's sshd, chroot,
key authentication): every format read back, the commit protocol over SFTP, and the
faults of issue 19 (server stopped mid-file, wrong host key, read-only directory,
wrong key)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from hack import sshd

from ferry.contract.plan import SftpDestination
from ferry.worker.main import build_parser, export_command, seal_command
from ferry.worker.plan import Secrets
from ferry.worker.sftp import SftpStore
from ferry.worker.storage import ConflictError
from tests.integration.conftest import WorkerRun, decompress, parse_csv

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sshd.available() is not None, reason=str(sshd.available())),
]

ROWS = 60_000


@pytest.fixture(scope="module")
def server() -> Iterator[sshd.SftpServer]:
    """One sshd for the module (its own keys, chroot and port)."""
    srv = sshd.SftpServer(f"it-{os.getpid()}").prepare()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def up(server: sshd.SftpServer) -> sshd.SftpServer:
    """The server running, its directory writable, whatever the previous test did."""
    if server.process is None:
        server.start()
    os.chmod(server.upload, 0o755)
    return server


@pytest.fixture(scope="module")
def dsn(pg_db: str) -> str:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id integer PRIMARY KEY, label text, note text)")
        conn.execute(f"""INSERT INTO items SELECT g, 'row ' || g, repeat('x', g % 40)
                         FROM generate_series(1, {ROWS}) g""")
    return pg_db


def source_rows(dsn: str) -> list[list[str | None]]:
    with psycopg.connect(dsn) as conn:
        return [[str(i), label, note or ""] for i, label, note in
                conn.execute("SELECT id, label, note FROM items ORDER BY id")]


_counter = iter(range(1_000_000))


def plan_for(server: sshd.SftpServer, host_key: str | None = None, **fields: Any) -> dict[str, Any]:
    sftp = {"host": "127.0.0.1", "port": server.port, "directory": server.directory,
            "hostKey": server.host_key if host_key is None else host_key}
    if not sftp["hostKey"]:
        del sftp["hostKey"]
    return {"job": "items", "run": f"items.{next(_counter)}-{os.getpid()}",
            "source": {"table": "items"}, "destination": {"sftp": sftp}, **fields}


def run(plan: dict[str, Any], dsn: str, server: sshd.SftpServer, tmp_path: Path,
        private_key: str | None = None, command: str = "export",
        **env: str) -> WorkerRun:
    """``ferry-worker export`` (or ``seal``) in-process with a pod's environment."""
    term = tmp_path / f"term-{next(_counter)}"
    environ = {"FERRY_PLAN": json.dumps(plan), "FERRY_SOURCE_DSN": dsn,
               "FERRY_SFTP_USER": server.user,
               "FERRY_SFTP_PRIVATE_KEY": private_key or server.private_key,
               "FERRY_TERMINATION_MESSAGE_PATH": str(term), "FERRY_MAX_ATTEMPTS": "1",
               "FERRY_S3_RETRY_SECONDS": "5", **env}
    previous = signal.getsignal(signal.SIGTERM)
    try:
        entry = export_command if command == "export" else seal_command
        code = entry(build_parser().parse_args([command]), environ)
    finally:
        signal.signal(signal.SIGTERM, previous)
    raw = term.read_text() if term.exists() else ""
    return WorkerRun(code, json.loads(raw) if raw else {}, raw)


def folder(server: sshd.SftpServer, plan: dict[str, Any]) -> Path:
    return server.upload / plan["job"] / plan["run"]


def manifest(server: sshd.SftpServer, plan: dict[str, Any], batch: int = 0) -> dict[str, Any]:
    return json.loads((folder(server, plan) / "_manifests" / f"batch-{batch}.json").read_text())


def all_files(server: sshd.SftpServer, plan: dict[str, Any]) -> list[str]:
    root = folder(server, plan)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def read_back(server: sshd.SftpServer, document: dict[str, Any], fmt: str,
              compression: str) -> list[list[str | None]]:
    """Every record of the committed files, checked against the manifest's sizes and
    SHA-256; CSV without its header."""
    rows: list[list[str | None]] = []
    for entry in document["files"]:
        raw = (server.upload / entry["key"]).read_bytes()
        assert len(raw) == entry["size"]
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
        if fmt == "parquet":
            table = pq.read_table(io.BytesIO(raw)).to_pylist()
            rows += [[str(r["id"]), r["label"], r["note"]] for r in table]
        elif fmt == "jsonl":
            for line in decompress(raw, compression).decode().splitlines():
                record = json.loads(line)
                rows.append([str(record["id"]), record["label"], record["note"]])
        else:
            rows += parse_csv(decompress(raw, compression).decode())[1:]
    return rows


@pytest.mark.parametrize(("fmt", "compression"), [("csv", "none"), ("jsonl", "zstd"),
                                                  ("parquet", "gzip"), ("csv", "gzip")])
def test_every_format_lands_complete_with_the_manifest_last(
        up: sshd.SftpServer, dsn: str, tmp_path: Path, fmt: str, compression: str) -> None:
    plan = plan_for(up, format=fmt, compression=compression, fileSplitSize=1024 * 1024)
    result = run(plan, dsn, up, tmp_path)
    assert result.code == 0, result.message
    document = manifest(up, plan)
    assert document["records"] == ROWS
    assert sorted(read_back(up, document, fmt, compression),
                  key=lambda r: int(r[0] or 0)) == source_rows(dsn)
    files = all_files(up, plan)
    assert files == sorted([*(e["key"].split("/", 2)[2] for e in document["files"]),
                            "_manifests/batch-0.json"])
    assert not any(name.endswith(".tmp") for name in files)
    if fmt == "csv" and compression == "none":
        assert len(document["files"]) > 1  # fileSplitSize split it
        assert result.message["manifest"] == f"items/{plan['run']}/_manifests/batch-0.json"


def test_a_retried_batch_replaces_its_files_and_sweeps_leftovers(
        up: sshd.SftpServer, dsn: str, tmp_path: Path) -> None:
    plan = plan_for(up)
    assert run(plan, dsn, up, tmp_path).code == 0
    first = manifest(up, plan)
    root = folder(up, plan)
    # What a killed attempt leaves: a temporary file and a data file no manifest lists.
    stale = [root / "items-0-0-deadbeef.csv.0a1b2c3d.tmp", root / "items-0-0-cafecafe.csv"]
    for path in stale:
        path.write_bytes(b"partial")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    second_run = run(plan, dsn, up, tmp_path)
    assert second_run.code == 0, second_run.message
    second = manifest(up, plan)
    assert second["attempt"] != first["attempt"]
    assert all_files(up, plan) == sorted([*(e["key"].split("/", 2)[2] for e in second["files"]),
                                          "_manifests/batch-0.json"])
    assert sorted(read_back(up, second, "csv", "none"),
                  key=lambda r: int(r[0] or 0)) == source_rows(dsn)


def _store(server: sshd.SftpServer) -> SftpStore:
    return SftpStore(SftpDestination("127.0.0.1", server.port, server.directory,
                                     server.host_key),
                     Secrets("", None, None, None, sftp_user=server.user,
                             sftp_private_key=server.private_key), budget_s=5)


def test_only_one_commit_wins_and_a_replace_checks_the_version(up: sshd.SftpServer) -> None:
    one, two = _store(up), _store(up)
    key = f"race-{next(_counter)}/_manifests/batch-0.json"
    one.put(key, b'{"attempt": "one"}', "application/json", "put", if_absent=True)
    with pytest.raises(ConflictError):
        two.put(key, b'{"attempt": "two"}', "application/json", "put", if_absent=True)
    found = two.read(key, "read")
    assert found is not None and found.body == b'{"attempt": "one"}'
    with pytest.raises(ConflictError):
        one.put(key, b"stale", "application/json", "put", if_match="0" * 64)
    assert (up.upload / key).read_bytes() == b'{"attempt": "one"}'
    two.put(key, b'{"attempt": "three"}', "application/json", "put", if_match=found.tag)
    with pytest.raises(ConflictError):  # the version it replaced is gone
        one.put(key, b"late", "application/json", "put", if_match=found.tag)
    assert (up.upload / key).read_bytes() == b'{"attempt": "three"}'
    assert sorted(p.name for p in (up.upload / key).parent.iterdir()) == ["batch-0.json"]
    one.close()
    two.close()


def test_seal_writes_the_run_marker_to_the_sftp_folder(
        up: sshd.SftpServer, dsn: str, tmp_path: Path) -> None:
    plan = plan_for(up, batchCount=2)
    assert run(plan, dsn, up, tmp_path).code == 0
    sealing = {**plan, "seal": {"runId": plan["run"], "outcome": "PartiallySucceeded"}}
    result = run(sealing, "", up, tmp_path, command="seal")
    assert result.code == 0, result.message
    marker = json.loads((folder(up, plan) / "_run.json").read_text())
    assert (marker["complete"], marker["missingBatches"], marker["records"]) == (False, [1], ROWS)


def _other_key(tmp_path: Path) -> Path:
    path = tmp_path / f"other-{next(_counter)}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True)
    return path


def test_a_changed_host_key_is_refused_before_anything_is_sent(
        up: sshd.SftpServer, dsn: str, tmp_path: Path) -> None:
    other = _other_key(tmp_path)
    pinned = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    log_before = up.log.read_text()
    plan = plan_for(up, host_key=pinned)
    result = run(plan, dsn, up, tmp_path)
    assert result.code == 3
    reason = result.message["reason"]
    assert reason.startswith(f"SFTP 127.0.0.1:{up.port}: refused the server's host key "
                             "ssh-ed25519 SHA256:")
    assert "it is not the pinned spec.output.sftp.hostKey" in reason
    assert "nothing was sent" in reason
    assert not folder(up, plan).exists()
    new_log = up.log.read_text()[len(log_before):]
    assert "Accepted" not in new_log and up.user not in new_log  # never got to log in


def test_no_pinned_host_key_is_refused_naming_the_key_to_pin(
        up: sshd.SftpServer, dsn: str, tmp_path: Path) -> None:
    plan = plan_for(up, host_key="")
    result = run(plan, dsn, up, tmp_path)
    assert result.code == 3
    assert "no spec.output.sftp.hostKey is pinned" in result.message["reason"]
    assert f"hostKey: '{up.host_key}'" in result.message["reason"]
    assert not folder(up, plan).exists()


def test_a_wrong_private_key_is_a_configuration_error(
        up: sshd.SftpServer, dsn: str, tmp_path: Path) -> None:
    wrong = _other_key(tmp_path).read_text()
    result = run(plan_for(up), dsn, up, tmp_path, private_key=wrong)
    assert result.code == 3
    assert result.message["reason"].startswith(
        f"SFTP 127.0.0.1:{up.port}: login as 'ferry-sftp' refused")
    assert "check the key or password in spec.output.sftp.credentialsSecretRef" in \
        result.message["reason"]
    assert wrong.splitlines()[1] not in result.raw_message


def test_a_read_only_directory_fails_naming_the_path(
        up: sshd.SftpServer, dsn: str, tmp_path: Path) -> None:
    plan = {**plan_for(up), "job": "readonly"}  # a job folder not made yet
    os.chmod(up.upload, 0o555)
    try:
        result = run(plan, dsn, up, tmp_path)
    finally:
        os.chmod(up.upload, 0o755)
    assert result.code == 3
    reason = result.message["reason"]
    assert reason.startswith("SFTP ") and "/upload/readonly" in reason
    assert "permission denied: make the directory writable for the SFTP user" in reason


def test_server_stopped_mid_file_retries_and_commits_once(
        up: sshd.SftpServer, dsn: str, tmp_path: Path) -> None:
    """sshd (and its sessions) stopped while the first file streams; started again 2 s
    later: the attempt fails, the next one commits, and the folder holds exactly its
    files (the first attempt's temporary file swept) and one error record."""
    plan = plan_for(up, compression="none")
    root = folder(up, plan)
    stopped = threading.Event()

    def stop_mid_file() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            temps = list(root.glob("*.tmp")) if root.exists() else []
            if any(t.stat().st_size > 0 for t in temps if t.exists()):
                up.stop()
                stopped.set()
                time.sleep(2)
                up.start()
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=stop_mid_file)
    watcher.start()
    try:
        result = run(plan, dsn, up, tmp_path, FERRY_MAX_ATTEMPTS="3",
                     FERRY_S3_RETRY_SECONDS="30")
    finally:
        watcher.join()
    assert stopped.is_set(), "the export finished before the server could be stopped"
    assert result.code == 0, result.message
    document = manifest(up, plan)
    assert sorted(read_back(up, document, "csv", "none"),
                  key=lambda r: int(r[0] or 0)) == source_rows(dsn)
    files = all_files(up, plan)
    errors = [f for f in files if f.startswith("_errors/")]
    assert errors == ["_errors/batch-0.jsonl"]
    records = [json.loads(line) for line in (root / errors[0]).read_text().splitlines()]
    assert len(records) == 1 and records[0]["attempt"] != document["attempt"]
    assert "SFTP" in records[0]["reason"]
    data = [f for f in files if not f.startswith("_")]
    # The failed attempt's temporary file is swept unless it is within the sweep margin
    # of the commit (SFTP times are whole seconds): never a second final file.
    assert [f for f in data if not f.endswith(".tmp")] == \
        [e["key"].split("/", 2)[2] for e in document["files"]]
