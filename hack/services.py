"""Local backing services for the integration tests and the benchmark.

``python -m hack.services up|down|status`` (from the repo root) starts, stops or reports
a private PostgreSQL 15 and an S3 server (MinIO, or moto's standalone server when MinIO has not
been built). Importable too: ``ensure_up()`` starts whatever is not running and returns
the endpoints, which is what the pytest fixtures in ``tests/fixtures/services.py`` call.

Why it looks like this:

* Everything lives under ``.cache/services/`` in the repo (git-ignored), so several
  checkouts on one machine do not share state, and ``down`` + ``rm -rf`` is a full reset.
* Ports are fixed and unusual (PostgreSQL 55432, S3 59000, MinIO console 59001) so they
  never collide with a developer's own services; a port that is taken by something that
  is not ours is reported by number instead of silently talking to a stranger.
* ``initdb`` and ``postgres`` refuse to run as root. When this script runs as root (CI,
  the dev containers) it creates the unprivileged system user ``ferrypg`` once with
  ``useradd`` and runs the server through ``runuser``; as a normal user it runs directly.
* The superuser ``ferry`` has a password (scram over TCP, trust on the private socket),
  so tests can exercise "wrong password" and "secrets never leak" for real.
* ``up`` is idempotent: a running service is left alone.

Environment: ``FERRY_S3_BACKEND`` = ``auto`` (default: MinIO if built, else moto) |
``minio`` | ``moto``; ``FERRY_MINIO_BIN`` overrides the MinIO binary path;
``FERRY_PG_BIN`` the PostgreSQL bin directory (default /usr/lib/postgresql/15/bin).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from hack.ports import reserve, wait_bindable

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".cache" / "services"
PG_BIN = Path(os.environ.get("FERRY_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_DIR = STATE / "pg"
PG_DATA = PG_DIR / "data"
PG_SOCKET_DIR = PG_DIR / "sock"
PG_LOG = PG_DIR / "postgres.log"
PG_HOST = "127.0.0.1"
PG_PORT = 55432
PG_USER = "ferry"
PG_PASSWORD = "ferry-test-pg-secret"  # test-only value for a loopback-only server
PG_OS_USER = "ferrypg"

S3_HOST = "127.0.0.1"
S3_PORT = 59000
S3_CONSOLE_PORT = 59001
S3_ACCESS_KEY = "ferry-test-access"
S3_SECRET_KEY = "ferry-test-s3-secret-key"  # test-only value for a loopback-only server
S3_REGION = "us-east-1"
S3_DIR = STATE / "s3"
S3_PIDFILE = S3_DIR / "server.pid"
S3_BACKEND_FILE = S3_DIR / "backend"
S3_LOG = S3_DIR / "server.log"
MINIO_DATA = S3_DIR / "minio-data"


class ServiceError(RuntimeError):
    """A service could not be started; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """Where the services listen and how to log in (test-only credentials)."""

    pg_dsn: str
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_socket_dir: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str
    s3_backend: str


def endpoints() -> Endpoints:
    """The fixed endpoints; does not start anything."""
    backend = S3_BACKEND_FILE.read_text().strip() if S3_BACKEND_FILE.exists() else "none"
    return Endpoints(
        pg_dsn=f"postgresql://{PG_USER}:{PG_PASSWORD}@{PG_HOST}:{PG_PORT}/postgres",
        pg_host=PG_HOST,
        pg_port=PG_PORT,
        pg_user=PG_USER,
        pg_password=PG_PASSWORD,
        pg_socket_dir=str(PG_SOCKET_DIR),
        s3_endpoint=f"http://{S3_HOST}:{S3_PORT}",
        s3_access_key=S3_ACCESS_KEY,
        s3_secret_key=S3_SECRET_KEY,
        s3_region=S3_REGION,
        s3_backend=backend,
    )


# --------------------------------------------------------------------------- helpers


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _require_free(host: str, port: int, what: str) -> None:
    if _port_open(host, port):
        raise ServiceError(
            f"port {host}:{port} is busy but {what} is not ours: stop whatever listens on "
            f"port {port} (e.g. `ss -ltnp 'sport = :{port}'`) and run `up` again"
        )
    reserve([port])
    if not wait_bindable(port, host=host):
        raise ServiceError(
            f"port {host}:{port} for {what} is held by a connection's local end: see "
            f"`ss -tanp 'sport = :{port}'`"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid) else None


def _is_root() -> bool:
    return os.geteuid() == 0


def _as_pg_user(cmd: list[str]) -> list[str]:
    """Prefix a command so it runs as the unprivileged PostgreSQL user when we are root."""
    return ["runuser", "-u", PG_OS_USER, "--", *cmd] if _is_root() else cmd


def _ensure_pg_os_user() -> None:
    if not _is_root():
        return
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             PG_OS_USER],
            check=True,
        )


def _chown_pg(path: Path) -> None:
    if _is_root():
        entry = pwd.getpwnam(PG_OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


# --------------------------------------------------------------------------- PostgreSQL


def pg_running() -> bool:
    """True when our cluster's postmaster is alive (its pid file names a live process)."""
    return _read_pid(PG_DATA / "postmaster.pid") is not None


def _pg_init() -> None:
    _ensure_pg_os_user()
    PG_DIR.mkdir(parents=True, exist_ok=True)
    PG_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    _chown_pg(PG_DIR)
    _chown_pg(PG_SOCKET_DIR)
    pwfile = PG_DIR / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    pwfile.chmod(0o600)
    _chown_pg(pwfile)
    try:
        subprocess.run(
            _as_pg_user([
                str(PG_BIN / "initdb"), "-D", str(PG_DATA), "-U", PG_USER,
                f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            ]),
            check=True, capture_output=True, text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise ServiceError(f"initdb failed: {exc.stderr.strip()}") from exc
    finally:
        pwfile.unlink(missing_ok=True)
    # Throwaway test/bench cluster: durability off, enough memory for 5M-row tables.
    conf = PG_DATA / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write(
            "\n# ferry hack/services.py\n"
            f"listen_addresses = '{PG_HOST}'\n"
            f"port = {PG_PORT}\n"
            f"unix_socket_directories = '{PG_SOCKET_DIR}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "shared_buffers = 256MB\nmax_connections = 100\n"
            "timezone = 'UTC'\n"
        )


def pg_up() -> None:
    """Start PostgreSQL (initdb on first use). No-op when already running."""
    if pg_running():
        return
    if not (PG_BIN / "postgres").exists():
        raise ServiceError(
            f"PostgreSQL 15 not found in {PG_BIN}: run `apt-get install -y postgresql-15` "
            "(or set FERRY_PG_BIN)"
        )
    _require_free(PG_HOST, PG_PORT, "PostgreSQL")
    if not (PG_DATA / "PG_VERSION").exists():
        if PG_DATA.exists():
            shutil.rmtree(PG_DATA)
        _pg_init()
    PG_LOG.touch()
    _chown_pg(PG_LOG)
    try:
        subprocess.run(
            _as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(PG_DATA), "-l", str(PG_LOG),
                         "-w", "-t", "60", "start"]),
            check=True, capture_output=True, text=True,
        )
    except subprocess.CalledProcessError as exc:
        tail = PG_LOG.read_text(errors="replace")[-2000:] if PG_LOG.exists() else ""
        raise ServiceError(f"PostgreSQL did not start: {exc.stderr.strip()}\n{tail}") from exc


def pg_down() -> None:
    """Stop PostgreSQL (fast shutdown). No-op when not running."""
    if not pg_running():
        return
    subprocess.run(
        _as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(PG_DATA), "-m", "fast", "-w",
                     "stop"]),
        check=True, capture_output=True, text=True,
    )


# --------------------------------------------------------------------------- S3


def minio_version() -> str:
    """MINIO_VERSION from hack/versions.mk (the single place versions are pinned)."""
    for line in (REPO / "hack" / "versions.mk").read_text().splitlines():
        key, _, value = line.partition(":=")
        if key.strip() == "MINIO_VERSION":
            return value.strip()
    raise ServiceError("MINIO_VERSION missing from hack/versions.mk")


def minio_binary() -> Path:
    """Where the Makefile's `go install` puts the pinned MinIO build."""
    override = os.environ.get("FERRY_MINIO_BIN")
    if override:
        return Path(override)
    return REPO / ".cache" / "minio" / minio_version() / "minio"


def _choose_backend() -> str:
    wanted = os.environ.get("FERRY_S3_BACKEND", "auto")
    if wanted not in {"auto", "minio", "moto"}:
        raise ServiceError(f"FERRY_S3_BACKEND must be auto, minio or moto, not {wanted!r}")
    if wanted == "auto":
        return "minio" if minio_binary().exists() else "moto"
    if wanted == "minio" and not minio_binary().exists():
        raise ServiceError(f"MinIO binary not found at {minio_binary()}: run `make minio`")
    return wanted


def s3_running() -> bool:
    """True when our S3 server process is alive."""
    return _read_pid(S3_PIDFILE) is not None


def _s3_healthy() -> bool:
    url = f"http://{S3_HOST}:{S3_PORT}/minio/health/live"
    backend = S3_BACKEND_FILE.read_text().strip() if S3_BACKEND_FILE.exists() else ""
    if backend == "moto":
        url = f"http://{S3_HOST}:{S3_PORT}/moto-api/"
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def s3_up() -> None:
    """Start MinIO (or moto when MinIO is not built). No-op when already running.

    A moto server left over from before MinIO was built is replaced by MinIO, so the
    tests run against the real server as soon as it exists.
    """
    backend = _choose_backend()
    if s3_running():
        if endpoints().s3_backend == backend:
            return
        s3_down()
    _require_free(S3_HOST, S3_PORT, "the S3 server")
    if backend == "minio":
        _require_free(S3_HOST, S3_CONSOLE_PORT, "the MinIO console")
    S3_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if backend == "minio":
        MINIO_DATA.mkdir(parents=True, exist_ok=True)
        env.update(
            MINIO_ROOT_USER=S3_ACCESS_KEY,
            MINIO_ROOT_PASSWORD=S3_SECRET_KEY,
            MINIO_BROWSER="off",
            MINIO_UPDATE="off",
            MINIO_REGION=S3_REGION,
        )
        cmd = [str(minio_binary()), "server", "--quiet",
               "--address", f"{S3_HOST}:{S3_PORT}",
               "--console-address", f"{S3_HOST}:{S3_CONSOLE_PORT}", str(MINIO_DATA)]
    else:
        cmd = [sys.executable, "-m", "moto.server", "-H", S3_HOST, "-p", str(S3_PORT)]
    S3_BACKEND_FILE.write_text(backend + "\n")
    with S3_LOG.open("ab") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=S3_DIR,
        )
    S3_PIDFILE.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = S3_LOG.read_text(errors="replace")[-2000:]
            raise ServiceError(f"{backend} exited with {proc.returncode}:\n{tail}")
        if _s3_healthy():
            return
        time.sleep(0.2)
    raise ServiceError(f"{backend} did not become healthy on port {S3_PORT} within 60 s")


def s3_down() -> None:
    """Stop our S3 server (SIGTERM, then SIGKILL after 10 s). No-op when not running."""
    pid = _read_pid(S3_PIDFILE)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    S3_PIDFILE.unlink(missing_ok=True)


# --------------------------------------------------------------------------- entry points


def empty_bucket(client: Any, bucket: str) -> None:
    """Delete every object and abort every multipart upload in a bucket (``client``: a
    boto3 S3 client on the local server)."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(
            Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )


def ensure_up() -> Endpoints:
    """Start both services if needed and return their endpoints."""
    pg_up()
    s3_up()
    return endpoints()


def down() -> None:
    """Stop both services; their data stays in .cache/services/."""
    s3_down()
    pg_down()


def status() -> dict[str, object]:
    """What is running, where, and with which S3 backend."""
    ep = endpoints()
    return {
        "postgres": {
            "running": pg_running(),
            "dsn": ep.pg_dsn,
            "socket_dir": ep.pg_socket_dir,
        },
        "s3": {
            "running": s3_running() and _s3_healthy(),
            "backend": ep.s3_backend,
            "endpoint": ep.s3_endpoint,
            "minio_binary": str(minio_binary()),
            "minio_built": minio_binary().exists(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: up | down | status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            ensure_up()
        elif args.command == "down":
            down()
    except ServiceError as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 1
    report = status()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
