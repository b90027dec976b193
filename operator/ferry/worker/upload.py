"""S3 access: streaming multipart uploads with bounded memory, retries, conditional puts.

Memory is bounded by ``part_size x (max_in_flight + 1)``: one part filling while at most
``max_in_flight`` parts upload on the pool's threads (boto3's transfer manager would buffer
~8 MiB x 10 instead). The part buffers are allocated once per file and reused: a fresh
buffer per part is mapped and faulted in page by page (uploading the benchmark's 1 GB CSV:
30-79k page faults and 0.72-0.78 s of system CPU fresh, 19k and 0.62-0.70 s reused).
A file smaller than one part is a single PutObject.
A multipart object becomes visible only at CompleteMultipartUpload; its response is
checked for an ETag and the object's size is confirmed with HeadObject, because the
call can fail after a 200 status. Anything not completed is aborted.

Retries: every call retries 5xx, throttling and connection errors with capped
exponential backoff and jitter for up to ``FERRY_S3_RETRY_SECONDS`` (default 120 s), so
an S3 outage of tens of seconds is survived; past the budget the failure is a
:class:`TransientError` and the batch as a whole is retried.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config

from ferry.contract.plan import Destination
from ferry.worker.codecs import Bytes
from ferry.worker.errors import ConfigError, TransientError
from ferry.worker.plan import Secrets
from ferry.worker.splitting import StoredObject

T = TypeVar("T")
Retry = Callable[[str, Callable[[], T]], T]
"""What runs an S3 call with retries: a :class:`Retrier`, named by what it does."""

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024
MAX_IN_FLIGHT = 2

_RETRY_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "Throttling", "ThrottlingException",
    "RequestTimeout", "RequestTimeTooSkewed", "ConditionalRequestConflict",
    "XMinioServerNotInitialized", "OperationAborted",
}
_FATAL_CODES = {
    "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "AllAccessDisabled", "InvalidBucketName", "AuthorizationHeaderMalformed",
}
_CONNECTION_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ResponseStreamingError,
)


def error_code(exc: BaseException) -> str:
    """The S3 error code of a ClientError ('' for anything else)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def is_retryable(exc: BaseException) -> bool:
    """5xx, throttling and connection failures are worth another try."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        return error_code(exc) in _RETRY_CODES or _status(exc) >= 500
    return False


class Retrier:
    """Runs S3 calls with capped exponential backoff within a time budget.

    The budget is spent whole: a backoff that would run past the deadline is shortened
    to end at it, and the call gets one last try there before the failure is reported.
    """

    def __init__(self, budget_s: float = 120.0, base_s: float = 0.5, cap_s: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_s = budget_s
        self.base_s = base_s
        self.cap_s = cap_s
        self._sleep = sleep
        self._clock = clock

    def __call__(self, what: str, call: Callable[[], T]) -> T:
        deadline = self._clock() + self.budget_s
        attempt = 0
        while True:
            try:
                return call()
            except Exception as exc:
                code = error_code(exc)
                if code in _FATAL_CODES:
                    raise ConfigError(f"S3 {what}: {code}: {_message(exc)}") from exc
                if not is_retryable(exc):
                    raise
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise TransientError(
                        f"S3 {what} still failing after {self.budget_s:.0f}s: "
                        f"{code or type(exc).__name__}: {_message(exc)}"
                    ) from exc
                delay = min(random.uniform(0, min(self.cap_s, self.base_s * 2**attempt)),
                            remaining)
                attempt += 1
                # Out loud: an outage survived in silence would look like a slow source.
                log.warning("S3 %s failed (%s: %s); retry %d in %.1fs", what,
                            code or type(exc).__name__, _message(exc), attempt, delay)
                self._sleep(delay)


def read_object(client: Any, retry: Retry[Any], bucket: str, key: str,
                what: str) -> tuple[bytes, str] | None:
    """An object's body and ETag, or None where there is no such object. The request and
    the body's read are one retried step: the body can drop too."""

    def get() -> tuple[bytes, str]:
        response = client.get_object(Bucket=bucket, Key=key)
        return bytes(response["Body"].read()), str(response["ETag"])

    try:
        return retry(what, get)  # type: ignore[no-any-return]
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise


def _message(exc: BaseException) -> str:
    """The server's message; a missing bucket is named, with what to do (S3's own
    message does not say which bucket, and this reason is what Ready=False shows)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        if error.get("Code") == "NoSuchBucket" and error.get("BucketName"):
            return (f'bucket "{error["BucketName"]}" does not exist: create it, or set '
                    "spec.output.s3.bucket to an existing bucket")
        return str(error.get("Message", "")) or str(exc)
    return str(exc)


def make_client(dest: Destination, secrets: Secrets) -> Any:
    """A boto3 S3 client for the destination; botocore's own retries kept short.

    Over HTTPS (AWS itself when no endpoint is set) the payload is not SHA-256 signed
    (``UNSIGNED-PAYLOAD``): TLS already protects it, and the hash would be a second
    pass over every byte besides the file checksum for the manifest (~0.15 CPU-s per
    200 MB in the worker and as much again in the server, measured against MinIO).
    Over plain HTTP the signature is all that protects the body, so it stays signed.
    """
    https = dest.endpoint is None or dest.endpoint.lower().startswith("https://")
    config = Config(
        s3={"addressing_style": "path" if dest.path_style else "auto",
            "payload_signing_enabled": not https},
        retries={"mode": "standard", "max_attempts": 2},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=MAX_IN_FLIGHT + 4,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=dest.endpoint,
        region_name=dest.region,
        aws_access_key_id=secrets.aws_access_key_id,
        aws_secret_access_key=secrets.aws_secret_access_key,
        aws_session_token=secrets.aws_session_token,
        config=config,
    )


class MultipartWriter:
    """One object written as it streams; implements splitting.Sink."""

    def __init__(self, client: Any, bucket: str, key: str, content_type: str,
                 pool: concurrent.futures.ThreadPoolExecutor, retrier: Retrier,
                 part_size: int = PART_SIZE, max_in_flight: int = MAX_IN_FLIGHT,
                 stranded: list[tuple[str, str]] | None = None) -> None:
        self._client = client
        self._bucket = bucket
        self.key = key
        self._content_type = content_type
        self._pool = pool
        self._retry = retrier
        self._part_size = part_size
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._buffer = bytearray()
        self._filled = 0
        self._spare: collections.deque[bytearray] = collections.deque()
        self._sha = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[concurrent.futures.Future[dict[str, Any]]] = []
        self._stranded = stranded

    def write(self, data: Bytes) -> None:
        """Copy bytes into the part buffer; each full part is handed to the upload pool
        (blocks while ``max_in_flight`` parts are uploading).

        A fresh buffer grows as bytes arrive (a small file never allocates a whole part);
        a reused one, as long as a part, is overwritten in place.
        """
        self._sha.update(data)
        self._size += len(data)
        view = memoryview(data)
        while view:
            if not self._filled and self._spare:
                self._buffer = self._spare.popleft()
            taken = min(self._part_size - self._filled, len(view))
            if len(self._buffer) == self._filled:
                self._buffer += view[:taken]
            else:
                self._buffer[self._filled:self._filled + taken] = view[:taken]
            self._filled += taken
            view = view[taken:]
            if self._filled == self._part_size:
                part, self._buffer, self._filled = self._buffer, bytearray(), 0
                self._submit(part)

    def _rest(self) -> bytes:
        """The bytes of a part buffer not yet uploaded (at most one part, once per file)."""
        rest = bytes(memoryview(self._buffer)[:self._filled])
        self._buffer, self._filled = bytearray(), 0
        return rest

    def _submit(self, part: bytes | bytearray) -> None:
        if self._upload_id is None:
            response = self._retry("CreateMultipartUpload", lambda: self._client
                                   .create_multipart_upload(Bucket=self._bucket, Key=self.key,
                                                            ContentType=self._content_type))
            self._upload_id = str(response["UploadId"])
        for done in [f for f in self._parts if f.done()]:
            done.result()  # surface a failed part early
        self._slots.acquire()
        number = len(self._parts) + 1
        try:
            future = self._pool.submit(self._upload_part, number, part)
        except BaseException:
            self._slots.release()
            raise
        self._parts.append(future)

    def _upload_part(self, number: int, body: bytes | bytearray) -> dict[str, Any]:
        """Upload one part. A full part is one of the writer's buffers (a ``bytearray``):
        it goes back for reuse once the call is over, never while a request may read it."""
        try:
            response = self._retry(f"UploadPart {number}", lambda: self._client.upload_part(
                Bucket=self._bucket, Key=self.key, UploadId=self._upload_id,
                PartNumber=number, Body=body))
            return {"PartNumber": number, "ETag": response["ETag"]}
        finally:
            if isinstance(body, bytearray):
                self._spare.append(body)
            self._slots.release()

    def close(self) -> StoredObject:
        """Upload the rest and complete; returns only once the object is visible."""
        if self._upload_id is None:
            body = self._rest()
            response = self._retry("PutObject", lambda: self._client.put_object(
                Bucket=self._bucket, Key=self.key, Body=body, ContentType=self._content_type))
            etag = str(response["ETag"])
        else:
            if self._filled:
                self._submit(self._rest())
            parts = [f.result() for f in self._parts]
            self._spare.clear()
            upload_id = self._upload_id
            response = self._retry("CompleteMultipartUpload", lambda: self._client
                                   .complete_multipart_upload(
                                       Bucket=self._bucket, Key=self.key, UploadId=upload_id,
                                       MultipartUpload={"Parts": parts}))
            if "ETag" not in response:
                raise TransientError(f"S3 CompleteMultipartUpload of {self.key} returned no ETag")
            etag = str(response["ETag"])
            self._upload_id = None
            head = self._retry("HeadObject", lambda: self._client.head_object(
                Bucket=self._bucket, Key=self.key))
            if int(head["ContentLength"]) != self._size:
                raise TransientError(f"S3 object {self.key} has {head['ContentLength']} bytes "
                                     f"after upload, expected {self._size}")
        return StoredObject(self.key, self._size, self._sha.hexdigest(), etag.strip('"'))

    def abort(self) -> None:
        """Abort the multipart upload, if one was started (best effort).

        One that cannot be aborted now (S3 still down past the budget) is added to
        ``stranded`` for the attempt that commits to abort by id: a later attempt's sweep
        cannot find it by listing, as MinIO lists no upload opened before a restart."""
        for future in self._parts:
            future.cancel()
        concurrent.futures.wait(self._parts)
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                self._retry("AbortMultipartUpload", lambda: self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self.key, UploadId=upload_id))
            except Exception:
                if self._stranded is not None:
                    self._stranded.append((self.key, upload_id))


def join_key(*parts: str) -> str:
    """Join key segments, skipping empty ones (an empty prefix)."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))
