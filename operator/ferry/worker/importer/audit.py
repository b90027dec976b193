"""The audit log: every row a batch did not load, with where, which column and why.

JSON Lines, gzip-compressed, spooled to a temporary file while the batch runs (memory
stays flat however many rows are rejected) and uploaded once at the end, also when the
batch fails for having rejected too many: that is when the user needs it most. Each
line: ``{"file", "line"|"row", "column", "reason", "value"}``; the value is the row's
raw text (or the column's, when the database named it) cut to 256 characters, and
every line passes through the worker's redactor, so no secret value the worker was
given can reach it.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from typing import Any

from ferry.worker.errors import Redactor
from ferry.worker.importer.readers import Reject
from ferry.worker.upload import Retry


class AuditLog:
    """Rejected rows of one batch attempt."""

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact
        self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._gzip = gzip.GzipFile(fileobj=self._spool, mode="wb", compresslevel=6)
        self.count = 0

    def add(self, file: str, unit: str, reject: Reject) -> None:
        """One rejected row."""
        entry = {"file": file, unit: reject.number, "column": reject.column,
                 "reason": reject.reason, "value": reject.value}
        line = self._redact(json.dumps(entry, ensure_ascii=False))
        self._gzip.write(line.encode() + b"\n")
        self.count += 1

    def upload(self, client: Any, retry: Retry[Any], bucket: str, key: str) -> None:
        """Write the log to ``bucket``/``key`` (a single PUT: it is small, and a retried
        attempt's log replaces the failed one's)."""
        self._gzip.close()

        def put() -> Any:
            self._spool.seek(0)
            return client.put_object(Bucket=bucket, Key=key, Body=self._spool,
                                     ContentType="application/gzip")

        retry(f"PutObject {key}", put)

    def close(self) -> None:
        """Drop the spool."""
        self._gzip.close()
        self._spool.close()
