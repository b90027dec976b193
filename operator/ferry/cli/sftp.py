"""Reading a run's folder on an SFTP server with the job's own settings.

The user and key (or password) come from the Secret in
spec.output.sftp.credentialsSecretRef, read with the user's kubeconfig (the same
permission boundary as for S3, ferry.cli.s3); the host key is the one the job pins,
so the plugin refuses the same servers the worker refuses. The connection and its
checks are the worker's (ferry.worker.sftp): one implementation of the protocol.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ferry.api.output import SftpDestination
from ferry.cli.errors import CliError
from ferry.cli.kube import Kube
from ferry.contract.plan import SftpDestination as PlanSftp
from ferry.worker.errors import WorkerError
from ferry.worker.plan import Secrets
from ferry.worker.sftp import SftpStore

T = TypeVar("T")
FIELD = "spec.output.sftp.credentialsSecretRef"


def _decode(data: dict[str, str], key: str, secret: str) -> str:
    if key not in data:
        raise CliError(f'secret "{secret}" has no key "{key}" ({FIELD})')
    return base64.b64decode(data[key]).decode()


class SftpFiles:
    """An ExportJob's SFTP directory, read like a bucket (keys relative to it)."""

    def __init__(self, store: SftpStore) -> None:
        self.store = store

    @classmethod
    def open(cls, kube: Kube, dest: SftpDestination) -> SftpFiles:
        """A reader for the destination of an ExportJob."""
        ref = dest.credentials_secret_ref
        data = kube.secret_data(ref.name)
        secrets = Secrets(
            "", None, None, None, sftp_user=_decode(data, ref.user_key, ref.name),
            sftp_private_key=(_decode(data, ref.private_key_key, ref.name)
                              if ref.private_key_key else None),
            sftp_password=(_decode(data, ref.password_key, ref.name)
                           if ref.password_key else None))
        plan = PlanSftp(dest.host, dest.port, dest.directory.rstrip("/") or "/",
                        dest.host_key or "")
        return cls(cls._call(lambda: SftpStore(plan, secrets, budget_s=10)))

    @staticmethod
    def _call(fn: Callable[[], T]) -> T:
        try:
            return fn()
        except WorkerError as exc:
            raise CliError(exc.reason) from exc

    def url(self, key: str) -> str:
        """The file's sftp:// URL, for messages."""
        return f"{self.store.where}/{key}"

    def keys(self, prefix: str) -> list[str]:
        """Every file under ``prefix``, sorted (temporary files of writes in flight left
        out: they are not the run's)."""
        listed = self._call(lambda: self.store.listing(prefix, "list"))
        return sorted(x.key for x in listed if not x.key.endswith(".tmp"))

    def read(self, key: str) -> bytes:
        """A whole (small) file: a manifest or an error report."""
        found = self._call(lambda: self.store.read(key, "read"))
        if found is None:
            raise CliError(f"{self.url(key)}: no such file")
        return found.body

    def read_json(self, key: str) -> dict[str, Any]:
        """A JSON document; a broken one is an error naming the file."""
        try:
            document = json.loads(self.read(key))
        except ValueError as exc:
            raise CliError(f"{self.url(key)} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise CliError(f"{self.url(key)} is not a JSON object")
        return document

    def stream(self, key: str) -> Iterator[bytes]:
        """A data file in chunks."""
        try:
            yield from self.store.stream(key)
        except WorkerError as exc:
            raise CliError(f"download of {self.url(key)} failed: {exc.reason}") from exc

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(Exception):
            self.store.close()
