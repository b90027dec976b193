"""Where a run's files go: one small interface, an S3 bucket or an SFTP directory.

The commit protocol of :mod:`ferry.worker.batch` (files under attempt-unique names,
the manifest last with a conditional write, the winner sweeping leftovers older than
its commit) needs only these operations from a destination, so it is written once
against :class:`Store` and each destination implements them in its own terms:

* :class:`S3Store` (here): conditional PUTs (``If-None-Match: *`` / ``If-Match``),
  multipart uploads, server-side ``LastModified`` times.
* :class:`ferry.worker.sftp.SftpStore`: a temporary name and a rename (OpenSSH's
  rename refuses an existing target, which makes "write if absent" atomic), the
  files' server-side modification times.

Keys are ``/``-separated paths below the destination's root (the bucket, or the SFTP
directory); :mod:`ferry.worker.layout` names them.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import email.utils
import functools
import logging
from typing import Any, Protocol

import botocore.exceptions

from ferry.worker.splitting import Sink
from ferry.worker.upload import MultipartWriter, Retrier, error_code

log = logging.getLogger(__name__)


class ConflictError(Exception):
    """A conditional write found the object not in the state it expected."""


@dataclasses.dataclass(frozen=True)
class Found:
    """An object read whole: its bytes, a version tag for a conditional replace, and
    when the server last wrote it (the server's clock, as sweeps compare with it)."""

    body: bytes
    tag: str
    modified: dt.datetime


@dataclasses.dataclass(frozen=True)
class Listed:
    """One object under a prefix and when the server last wrote it."""

    key: str
    modified: dt.datetime


class Store(Protocol):
    """A destination's operations, as the commit protocol uses them."""

    where: str
    """The destination in words for messages (``s3://bucket``, ``sftp://host:22/dir``)."""

    def read(self, key: str, what: str) -> Found | None:
        """The object, or None where there is none."""

    def put(self, key: str, body: bytes, content_type: str, what: str, *,
            if_absent: bool = False, if_match: str | None = None) -> dt.datetime:
        """Write a small object whole, visible only complete; returns the server's time of
        the write. ``if_absent`` / ``if_match`` make it conditional: :class:`ConflictError`
        when the object exists / is not the version ``if_match`` names."""

    def writer(self, key: str, content_type: str) -> Sink:
        """A file written as it streams, visible under ``key`` only once closed."""

    def listing(self, prefix: str, what: str) -> list[Listed]:
        """Every object whose key starts with ``prefix`` (a ``/``-ending prefix: the
        whole folder, subfolders included)."""

    def delete(self, keys: list[str]) -> None:
        """Remove objects; one already gone is not an error."""

    def sweep_incomplete(self, prefix: str, cutoff: dt.datetime) -> int:
        """Discard unfinished writes under ``prefix`` begun before ``cutoff`` that
        :meth:`listing` does not show (S3's open multipart uploads); returns how many."""

    def close(self) -> None:
        """Release the connection."""


def _server_time(headers: dict[str, str]) -> dt.datetime:
    date = headers.get("date")
    return email.utils.parsedate_to_datetime(date) if date else dt.datetime.now(dt.UTC)


class S3Store:
    """A bucket through boto3, every call retried within the budget (:class:`Retrier`)."""

    def __init__(self, client: Any, bucket: str, retry: Retrier,
                 pool: concurrent.futures.ThreadPoolExecutor | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.retry = retry
        self.pool = pool
        self.where = f"s3://{bucket}"
        self.stranded: list[tuple[str, str]] = []
        """(key, upload id) of uploads in this process that could not be aborted; the
        attempt that commits aborts them by id (MinIO lists no upload opened before a
        restart, so a sweep by listing would miss them)."""

    def read(self, key: str, what: str) -> Found | None:
        def get() -> Found:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return Found(bytes(response["Body"].read()), str(response["ETag"]),
                         response["LastModified"])

        try:
            found: Found = self.retry(what, get)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        return found

    def put(self, key: str, body: bytes, content_type: str, what: str, *,
            if_absent: bool = False, if_match: str | None = None) -> dt.datetime:
        condition = ({"IfMatch": if_match} if if_match else
                     {"IfNoneMatch": "*"} if if_absent else {})
        try:
            response = self.retry(what, functools.partial(
                self.client.put_object, Bucket=self.bucket, Key=key, Body=body,
                ContentType=content_type, **condition))
        except botocore.exceptions.ClientError as exc:
            if condition and error_code(exc) in ("PreconditionFailed", "NoSuchKey", "412",
                                                 "ConditionalRequestConflict"):
                raise ConflictError(key) from exc
            raise
        return _server_time(response["ResponseMetadata"]["HTTPHeaders"])

    def writer(self, key: str, content_type: str) -> Sink:
        assert self.pool is not None, "S3Store.writer needs the upload pool"
        return MultipartWriter(self.client, self.bucket, key, content_type, self.pool,
                               self.retry, stranded=self.stranded)

    def listing(self, prefix: str, what: str) -> list[Listed]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self.retry(what, lambda: list(paginator.paginate(Bucket=self.bucket,
                                                                 Prefix=prefix)))
        return [Listed(str(o["Key"]), o["LastModified"])
                for page in pages for o in page.get("Contents", [])]

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            objects = [{"Key": k} for k in keys[start:start + 1000]]
            self.retry("DeleteObjects", functools.partial(
                self.client.delete_objects, Bucket=self.bucket,
                Delete={"Objects": objects, "Quiet": True}))

    def sweep_incomplete(self, prefix: str, cutoff: dt.datetime) -> int:
        """Abort open multipart uploads of ``prefix`` older than ``cutoff`` (listed
        without a prefix and filtered here: MinIO honours only a prefix that is a whole
        key), then those this process stranded."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        pages = self.retry("ListMultipartUploads",
                           lambda: list(paginator.paginate(Bucket=self.bucket)))
        uploads = [u for page in pages for u in page.get("Uploads", [])
                   if str(u["Key"]).startswith(prefix) and u["Initiated"] < cutoff]
        for upload in uploads:
            self.retry("AbortMultipartUpload", functools.partial(
                self.client.abort_multipart_upload, Bucket=self.bucket, Key=upload["Key"],
                UploadId=upload["UploadId"]))
        stranded = list(self.stranded)
        for key, upload_id in stranded:
            try:
                self.retry("AbortMultipartUpload", functools.partial(
                    self.client.abort_multipart_upload, Bucket=self.bucket, Key=key,
                    UploadId=upload_id))
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != "NoSuchUpload":
                    raise
            self.stranded.remove((key, upload_id))
        return len(uploads) + len(stranded)

    def close(self) -> None:
        """Nothing to release: boto3 pools its connections per client."""
