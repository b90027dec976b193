"""An SFTP directory as a :class:`ferry.worker.storage.Store`, through paramiko.

How the commit protocol's operations map onto SFTP (OpenSSH's sftp-server):

* **A file visible only complete**: written as ``<key>.tmp`` (pipelined writes, the
  SHA-256 computed on the way), then renamed to ``<key>``; the size is checked with a
  stat. The temporary name starts with the batch's data prefix, so the sweep of the
  attempt that commits removes what a killed attempt left.
* **Write if absent** (the first commit of a manifest): the body goes to a temporary
  name, then a plain SFTP rename, which OpenSSH carries out as ``link()`` + ``unlink()``
  and so refuses atomically when the target exists: exactly one attempt wins.
* **Replace version T** (a retry replacing a committed attempt): the current file is
  first renamed aside to a name unique to this attempt; only one attempt can move it
  (the others find it gone: :class:`ConflictError`). Its SHA-256 (the version tag) is
  compared with T, then the new body is renamed in (refusing an existing target as
  above). Between the two renames the batch shows no manifest; a reader sees it missing
  for that moment, never a wrong one.
* **Plain writes** (the run marker): a temporary name and ``posix-rename@openssh.com``,
  which replaces atomically.
* **Times** are the server's: a file's mtime after the write (the sweep compares those).

Failures: a refused or changed host key and a refused login are configuration errors
(exit 3, no retry: nothing is sent before the host key matched); a permission denied
names the path; a dropped connection is retried by reconnecting within the retry
budget, and a file being streamed when it dropped fails its attempt (the next attempt
writes it anew).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import io
import logging
import posixpath
import secrets as random_ids
import socket
import stat
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import paramiko

from ferry.contract.plan import SftpDestination
from ferry.worker.codecs import Bytes
from ferry.worker.errors import ConfigError, TransientError
from ferry.worker.plan import Secrets
from ferry.worker.splitting import StoredObject
from ferry.worker.storage import ConflictError, Found, Listed

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT_S = 15.0
_TEMP = ".tmp"
_CONNECTION_ERRORS = (paramiko.SSHException, EOFError, ConnectionError, socket.timeout,
                      TimeoutError)


def host_key_line(key: paramiko.PKey) -> str:
    """A key as the API's ``hostKey`` takes it (``<type> <base64>``)."""
    return f"{key.get_name()} {key.get_base64()}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint (what ``ssh-keygen -lf`` prints)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_key_refused(dest: SftpDestination, offered: paramiko.PKey) -> str:
    """Why a host key was refused, and how to pin it (the run's error, Ready=False)."""
    what = ("no spec.output.sftp.hostKey is pinned" if not dest.host_key else
            "it is not the pinned spec.output.sftp.hostKey (changed, or another server)")
    return (f"SFTP {dest.host}:{dest.port}: refused the server's host key "
            f"{offered.get_name()} {fingerprint(offered)}: {what}; nothing was sent. After "
            "checking the fingerprint with the server's owner, pin it: spec.output.sftp."
            f"hostKey: {host_key_line(offered)!r} (or ssh-keyscan -p {dest.port} {dest.host})")


def _key_types(host_key: str) -> tuple[str, ...]:
    """The host key algorithms to offer for a pinned key's type (an RSA key signs with
    SHA-2 under its own algorithm names)."""
    kind = host_key.split(" ", 1)[0]
    return ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa") if kind == "ssh-rsa" else (kind,)


def _private_key(text: str) -> paramiko.PKey:
    """Parse an OpenSSH or PEM private key of any type paramiko knows."""
    errors = []
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(str(exc))
    raise ConfigError("FERRY_SFTP_PRIVATE_KEY: not a private key paramiko can read "
                      "(an unencrypted OpenSSH or PEM ed25519, ECDSA or RSA key)")


@dataclasses.dataclass
class _Connection:
    transport: paramiko.Transport
    sftp: paramiko.SFTPClient


class SftpStore:
    """A directory on an SFTP server; keys are paths relative to it."""

    def __init__(self, dest: SftpDestination, secrets: Secrets, budget_s: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not secrets.sftp_user:
            raise ConfigError("FERRY_SFTP_USER: is required for an SFTP destination "
                              "(the user from spec.output.sftp.credentialsSecretRef)")
        if not (secrets.sftp_private_key or secrets.sftp_password):
            raise ConfigError("FERRY_SFTP_PRIVATE_KEY or FERRY_SFTP_PASSWORD: one is required "
                              "for an SFTP destination")
        self.dest = dest
        self.where = f"sftp://{dest.host}:{dest.port}{dest.directory}"
        self._user = secrets.sftp_user
        self._password = secrets.sftp_password
        self._key = _private_key(secrets.sftp_private_key) if secrets.sftp_private_key else None
        self._budget_s = budget_s
        self._sleep = sleep
        self._conn: _Connection | None = None
        self._made: set[str] = set()

    # ---------------------------------------------------------------- connection

    def _connect(self) -> _Connection:
        dest = self.dest
        try:
            sock = socket.create_connection((dest.host, dest.port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise TransientError(f"SFTP {dest.host}:{dest.port}: cannot connect: {exc}") from exc
        transport = paramiko.Transport(sock)
        try:
            if dest.host_key:
                transport.get_security_options().key_types = _key_types(dest.host_key)
            transport.start_client(timeout=CONNECT_TIMEOUT_S)
            offered = transport.get_remote_server_key()
            if host_key_line(offered) != dest.host_key:
                raise ConfigError(host_key_refused(dest, offered))
            if self._key is not None:
                transport.auth_publickey(self._user, self._key)
            else:
                transport.auth_password(self._user, self._password or "")
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise TransientError(f"SFTP {dest.host}:{dest.port}: no SFTP channel")
        except paramiko.AuthenticationException as exc:
            transport.close()
            raise ConfigError(
                f"SFTP {dest.host}:{dest.port}: login as {self._user!r} refused ({exc}): check "
                "the key or password in spec.output.sftp.credentialsSecretRef") from None
        except BaseException as exc:
            transport.close()
            if isinstance(exc, (ConfigError, TransientError)):
                raise
            if isinstance(exc, _CONNECTION_ERRORS):
                raise TransientError(f"SFTP {dest.host}:{dest.port}: {exc}") from exc
            raise
        sftp.get_channel().settimeout(60.0)
        return _Connection(transport, sftp)

    def _sftp(self) -> paramiko.SFTPClient:
        if self._conn is None or not self._conn.transport.is_active():
            self.close()
            self._conn = self._connect()
        return self._conn.sftp

    def _call(self, what: str, path: str, call: Callable[[paramiko.SFTPClient], T]) -> T:
        """Run one SFTP step, reconnecting after a dropped connection within the budget;
        a permission or space failure names the path."""
        deadline = time.monotonic() + self._budget_s
        attempt = 0
        while True:
            try:
                return call(self._sftp())
            except (FileNotFoundError, ConflictError):
                raise
            except PermissionError as exc:
                raise ConfigError(f"SFTP {what} {self._full(path)} on {self.dest.host}:"
                                  f"{self.dest.port}: permission denied: make the directory "
                                  "writable for the SFTP user") from exc
            except (*_CONNECTION_ERRORS, TransientError) as exc:
                self.close()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransientError(f"SFTP {what} {self._full(path)} still failing after "
                                         f"{self._budget_s:.0f}s: {exc}") from exc
                attempt += 1
                delay = min(2.0 ** attempt / 4, 10.0, remaining)
                log.warning("SFTP %s %s failed (%s); reconnecting, retry %d in %.1fs", what,
                            self._full(path), exc or type(exc).__name__, attempt, delay)
                self._sleep(delay)
            except OSError as exc:
                if exc.errno == errno.ENOSPC or "quota" in str(exc).lower():
                    raise TransientError(f"SFTP {what} {self._full(path)}: no space left on "
                                         "the server") from exc
                raise TransientError(f"SFTP {what} {self._full(path)} failed: "
                                     f"{exc.strerror or exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.transport.close()

    # ---------------------------------------------------------------- paths

    def _full(self, key: str) -> str:
        return posixpath.join(self.dest.directory, key) if key else self.dest.directory

    def _makedirs(self, sftp: paramiko.SFTPClient, folder: str) -> None:
        """``mkdir -p`` below the destination directory (which must exist)."""
        if folder in self._made or folder in ("", "/", self.dest.directory):
            return
        try:
            if stat.S_ISDIR(sftp.stat(folder).st_mode or 0):
                self._made.add(folder)
                return
        except FileNotFoundError:
            pass
        self._makedirs(sftp, posixpath.dirname(folder))
        try:
            sftp.mkdir(folder)
        except OSError as exc:
            try:  # made meanwhile by a racing attempt?
                made = stat.S_ISDIR(sftp.stat(folder).st_mode or 0)
            except OSError:
                made = False
            if not made:
                raise exc from None
        self._made.add(folder)

    def _temp(self, key: str) -> str:
        return f"{self._full(key)}.{random_ids.token_hex(4)}{_TEMP}"

    # ---------------------------------------------------------------- Store

    def read(self, key: str, what: str) -> Found | None:
        path = self._full(key)

        def get(sftp: paramiko.SFTPClient) -> Found:
            with sftp.open(path, "rb") as f:
                f.prefetch()
                body = f.read()
                mtime = f.stat().st_mtime or 0
            return Found(body, hashlib.sha256(body).hexdigest(),
                         dt.datetime.fromtimestamp(mtime, dt.UTC))

        try:
            return self._call(what, key, get)
        except FileNotFoundError:
            return None

    def stream(self, key: str, chunk: int = 1024 * 1024) -> Iterator[bytes]:
        """A file in chunks (``kubectl ferry download``); a drop mid-file is a
        TransientError (the caller discards what it got)."""
        path = self._full(key)
        f = self._call("open", key, lambda sftp: sftp.open(path, "rb"))
        try:
            f.prefetch()
            while data := f.read(chunk):
                yield bytes(data)
        except (*_CONNECTION_ERRORS, OSError) as exc:
            raise TransientError(f"SFTP read {path} failed: {exc or type(exc).__name__}") from exc
        finally:
            _close_quietly(f)

    def _upload(self, sftp: paramiko.SFTPClient, temp: str, body: bytes) -> None:
        self._makedirs(sftp, posixpath.dirname(temp))
        with sftp.open(temp, "wb") as f:
            f.set_pipelined(True)
            f.write(body)

    def _mtime(self, sftp: paramiko.SFTPClient, path: str) -> dt.datetime:
        return dt.datetime.fromtimestamp(sftp.stat(path).st_mtime or 0, dt.UTC)

    def put(self, key: str, body: bytes, content_type: str, what: str, *,
            if_absent: bool = False, if_match: str | None = None) -> dt.datetime:
        del content_type  # SFTP files have none
        path = self._full(key)
        temp = self._temp(key)

        def write(sftp: paramiko.SFTPClient) -> dt.datetime:
            self._upload(sftp, temp, body)
            try:
                if if_match is not None:
                    self._move_aside_checked(sftp, path, if_match)
                if if_match is not None or if_absent:
                    try:
                        sftp.rename(temp, path)  # refuses an existing target
                    except OSError as exc:
                        if isinstance(exc, PermissionError):
                            raise
                        raise ConflictError(key) from exc
                else:
                    sftp.posix_rename(temp, path)
            except BaseException:
                _remove_quietly(sftp, temp)
                raise
            return self._mtime(sftp, path)

        return self._call(what, key, write)

    def _move_aside_checked(self, sftp: paramiko.SFTPClient, path: str, tag: str) -> None:
        """Take the current version away if it is ``tag``: only one attempt can."""
        aside = f"{path}.replaced-{random_ids.token_hex(4)}{_TEMP}"
        try:
            sftp.rename(path, aside)
        except OSError as exc:
            if isinstance(exc, PermissionError):
                raise
            raise ConflictError(path) from exc
        with sftp.open(aside, "rb") as f:
            current = hashlib.sha256(f.read()).hexdigest()
        if current != tag:
            try:
                sftp.rename(aside, path)  # put it back unless a new one arrived meanwhile
            except OSError:
                _remove_quietly(sftp, aside)
            raise ConflictError(path)
        _remove_quietly(sftp, aside)

    def writer(self, key: str, content_type: str) -> SftpWriter:
        del content_type
        return SftpWriter(self, key)

    def listing(self, prefix: str, what: str) -> list[Listed]:
        folder, _, start = prefix.rpartition("/")

        def walk(sftp: paramiko.SFTPClient) -> list[Listed]:
            found: list[Listed] = []
            pending = [(folder, start)]
            while pending:
                rel, name_start = pending.pop()
                try:
                    entries = sftp.listdir_attr(self._full(rel))
                except FileNotFoundError:
                    continue
                for entry in entries:
                    if not entry.filename.startswith(name_start):
                        continue
                    key = f"{rel}/{entry.filename}" if rel else entry.filename
                    if stat.S_ISDIR(entry.st_mode or 0):
                        pending.append((key, ""))
                    else:
                        found.append(Listed(key, dt.datetime.fromtimestamp(entry.st_mtime or 0,
                                                                           dt.UTC)))
            return found

        return self._call(what, prefix, walk)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            def remove(sftp: paramiko.SFTPClient, path: str = self._full(key)) -> None:
                with contextlib.suppress(FileNotFoundError):
                    sftp.remove(path)

            self._call("remove", key, remove)

    def sweep_incomplete(self, prefix: str, cutoff: dt.datetime) -> int:
        """Nothing hidden: a killed attempt's temporary files are listed like any file
        and swept with them."""
        del prefix, cutoff
        return 0


def _close_quietly(f: paramiko.SFTPFile) -> None:
    """Close a file whose connection may be gone. paramiko marks a file closed only once
    its close request went through, so one whose connection dropped would try again from
    its finalizer, and warn there; it is marked closed here instead (nothing is left to
    flush: the connection is gone)."""
    try:
        f.close()
    except (*_CONNECTION_ERRORS, OSError):
        f._closed = True


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except (OSError, *_CONNECTION_ERRORS):
        pass


class SftpWriter:
    """One file streamed to ``<key>.<random>.tmp`` and renamed to ``<key>`` when closed;
    implements splitting.Sink. paramiko buffers and pipelines the writes."""

    def __init__(self, store: SftpStore, key: str) -> None:
        self._store = store
        self.key = key
        self._temp = store._temp(key)
        self._sha = hashlib.sha256()
        self._size = 0
        self._file: paramiko.SFTPFile | None = None

    def _open(self) -> paramiko.SFTPFile:
        def open_temp(sftp: paramiko.SFTPClient) -> paramiko.SFTPFile:
            self._store._makedirs(sftp, posixpath.dirname(self._temp))
            f = sftp.open(self._temp, "wb", bufsize=1024 * 1024)
            f.set_pipelined(True)
            return f

        return self._store._call("open", self.key + ".tmp", open_temp)

    def write(self, data: Bytes) -> None:
        if self._file is None:
            self._file = self._open()
        self._sha.update(data)
        self._size += len(data)
        try:
            self._file.write(bytes(data))
        except PermissionError as exc:
            raise ConfigError(f"SFTP write {self._temp} on {self._store.dest.host}: "
                              "permission denied") from exc
        except (*_CONNECTION_ERRORS, OSError) as exc:
            raise TransientError(f"SFTP write {self._temp} failed: {exc or type(exc).__name__}"
                                 " (the connection dropped mid-file)") from exc

    def close(self) -> StoredObject:
        if self._file is None:
            self._file = self._open()
        f, self._file = self._file, None
        try:
            f.close()
        except (*_CONNECTION_ERRORS, OSError) as exc:
            _close_quietly(f)
            raise TransientError(f"SFTP write {self._temp} failed at close: "
                                 f"{exc or type(exc).__name__}") from exc
        path = self._store._full(self.key)

        def publish(sftp: paramiko.SFTPClient) -> int:
            sftp.rename(self._temp, path)
            return sftp.stat(path).st_size or 0

        size = self._store._call("rename", self.key, publish)
        if size != self._size:
            raise TransientError(f"SFTP file {path} has {size} bytes after upload, "
                                 f"expected {self._size}")
        digest = self._sha.hexdigest()
        return StoredObject(self.key, self._size, digest, digest)

    def abort(self) -> None:
        """Close and remove the temporary file (best effort: a sweep catches the rest)."""
        if self._file is not None:
            f, self._file = self._file, None
            _close_quietly(f)
        conn = self._store._conn
        if conn is not None and conn.transport.is_active():
            _remove_quietly(conn.sftp, self._temp)
