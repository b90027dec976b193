"""Failure classes, exit codes and secret redaction for the worker.

The exit code is the worker's only channel to the Job controller before the pod is
gone, so it encodes what the controller should do: a podFailurePolicy rule
``FailIndex`` on exit codes 3 and 4 stops pointless retries of a batch whose plan or data
cannot succeed, while 75 (and any crash) uses the index's retry budget
(``backoffLimitPerIndex``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ferry.contract.exitcodes import ExitCode

__all__ = ["ConfigError", "DataError", "ExitCode", "LostRace", "Redactor", "TransientError",
           "WorkerError", "one_line"]


class WorkerError(Exception):
    """A failure with a one-line reason safe to show users (no secrets, no newlines)."""

    exit_code: ExitCode = ExitCode.INTERNAL
    kind: str = "internal"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = one_line(reason)


class ConfigError(WorkerError):
    """The plan, the secrets or the environment are wrong; retrying cannot help."""

    exit_code = ExitCode.CONFIG
    kind = "config"


class DataError(WorkerError):
    """The data cannot be written in the requested format; retrying cannot help."""

    exit_code = ExitCode.DATA
    kind = "data"


class TransientError(WorkerError):
    """A fault that a later attempt may not hit (network, server restart, throttling)."""

    exit_code = ExitCode.TRANSIENT
    kind = "transient"


class Terminated(BaseException):
    """SIGTERM: the pod is being deleted or evicted. A BaseException, so that no
    ``except Exception`` on the way swallows it: botocore wraps every Exception raised
    while it sends a request in a retryable HTTPClientError, which a retry loop then
    retried away (seen: a terminated import went on to commit). The attempt turns it
    into a TransientError that is never retried (`ferry.worker.main._attempt`)."""


class LostRace(Exception):  # noqa: N818 - a normal outcome, not an error
    """Another attempt committed this batch first; ours is discarded (exit 0)."""


def one_line(text: str, limit: int = 1000) -> str:
    """Collapse whitespace so a reason fits one line of a termination message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


class Redactor:
    """Removes known secret values (and password-looking DSN parts) from text.

    Every message that leaves the process (log line, termination message, error report)
    goes through one instance that knows the actual secret values, so even a library
    error message that echoes a DSN cannot leak the password.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        """Also redact this value from now on."""
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = _URL_PASSWORD.sub(r"\1***@", text)
        return _KV_PASSWORD.sub(r"\1***", text)
