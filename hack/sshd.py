"""A private OpenSSH server for the SFTP tests: Debian's sshd on a loopback port.

Each :class:`SftpServer` has its own folder under ``.cache/services/sshd/``: a fresh
ed25519 host key, a client key pair whose public half is the only authorized key, an
``sshd_config`` and a chroot directory. The user (``ferry-sftp``, a system account
created on first use, like PostgreSQL's OS user) is jailed in the chroot by
``ChrootDirectory`` and served by ``internal-sftp`` (sftp-server built into sshd: the
chroot holds no binaries); only ``<chroot>/upload`` is writable for it. Key
authentication only. sshd must run as root (it switches to the user per session), so
the tests that need it skip elsewhere.

``stop()`` ends the listener and every session process it forked (a stopped server
drops the connections in flight, which is the fault the tests inject); ``start()``
again reuses the keys, so the pinned host key stays valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent / ".cache" / "services" / "sshd"
JAILS = Path("/run/ferry-sftp")
"""Where the chroots live: sshd refuses a chroot with a group- or world-writable
directory anywhere on its path (a checkout under /tmp has one), and /run is root's own,
0755, on every Debian machine. One per checkout (a digest of ROOT) and server name."""
SSHD = Path("/usr/sbin/sshd")
USER = "ferry-sftp"
DIRECTORY = "/upload"
"""The writable directory, as the SFTP user sees it (inside the chroot)."""


class SshdError(RuntimeError):
    """sshd could not be prepared or started."""


def available() -> str | None:
    """Why an SFTP server cannot run here, or None when it can."""
    if not SSHD.exists():
        return "openssh-server is not installed (make sshd)"
    if os.geteuid() != 0:
        return "sshd needs root to switch to the SFTP user"
    return None


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/",
                        "--shell", "/usr/sbin/nologin", USER], check=True)
        # Not locked ("!"): sshd without PAM refuses a locked account even for a key.
        subprocess.run(["usermod", "-p", "*", USER], check=True)
        return pwd.getpwnam(USER)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True)


def _public(path: Path) -> str:
    """``<type> <base64>`` of a ``.pub`` file (no comment)."""
    kind, blob = path.read_text().split()[:2]
    return f"{kind} {blob}"


@dataclasses.dataclass
class SftpServer:
    """One sshd; ``host_key`` is what ``spec.output.sftp.hostKey`` pins."""

    name: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def folder(self) -> Path:
        return ROOT / self.name

    @property
    def chroot(self) -> Path:
        digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
        return JAILS / f"{digest}-{self.name}"

    @property
    def upload(self) -> Path:
        """The writable directory on this machine's side (``DIRECTORY`` inside)."""
        return self.chroot / DIRECTORY.lstrip("/")

    @property
    def user(self) -> str:
        return USER

    @property
    def directory(self) -> str:
        return DIRECTORY

    @property
    def host_key(self) -> str:
        return _public(self.folder / "host_ed25519.pub")

    @property
    def private_key(self) -> str:
        return (self.folder / "client_ed25519").read_text()

    @property
    def log(self) -> Path:
        return self.folder / "sshd.log"

    def prepare(self) -> SftpServer:
        """Keys, config and chroot (the chroot and its parents root-owned, 0755, as
        sshd requires), and a free port."""
        account = _ensure_user()
        for old in (self.folder, self.chroot):
            if old.exists():
                shutil.rmtree(old)
        for folder in (ROOT, self.folder, JAILS, self.chroot):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o755)
        self.upload.mkdir()
        os.chown(self.upload, account.pw_uid, account.pw_gid)
        os.chmod(self.upload, 0o755)
        _keygen(self.folder / "host_ed25519")
        _keygen(self.folder / "client_ed25519")
        shutil.copy(self.folder / "client_ed25519.pub", self.folder / "authorized_keys")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        self.port = self.port or free_port()
        (self.folder / "sshd_config").write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.folder}/host_ed25519
PidFile {self.folder}/sshd.pid
AuthorizedKeysFile {self.folder}/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers {USER}
AllowTcpForwarding no
X11Forwarding no
Subsystem sftp internal-sftp
Match User {USER}
    ChrootDirectory {self.chroot}
    ForceCommand internal-sftp
""")
        return self

    def start(self) -> None:
        """Start sshd and wait until it accepts connections (10 s)."""
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.folder / "sshd_config"), "-E", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SshdError(f"sshd exited with {self.process.returncode}: "
                                f"{self.log.read_text() if self.log.exists() else ''}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise SshdError(f"sshd did not listen on 127.0.0.1:{self.port} within 10 s")

    def stop(self) -> None:
        """Stop the listener and its session processes (connections in flight drop)."""
        if self.process is None:
            return
        process, self.process = self.process, None
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(process.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.send_signal(signal.SIGKILL)
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
