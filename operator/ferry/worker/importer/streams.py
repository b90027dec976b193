"""A source file's bytes, streamed from S3 and decompressed as they arrive.

Memory is one block (1 MiB read, its decompressed output) whatever the file's size. The
GET is pinned to the ETag the listing saw (``IfMatch``), so the rows loaded are those of
the version the ledger records; a file replaced meanwhile fails the attempt as
transient and the next one lists again. Compression is read from the name (``.gz``,
``.zst``); a stream that does not decompress is a data error naming the file.
Parquet needs random access (its footer is at the end): :class:`RangeReader` serves
it from ranged GETs.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import botocore.exceptions
import zstandard
from isal import isal_zlib

from ferry.worker.errors import DataError, TransientError
from ferry.worker.importer.listing import SourceFile
from ferry.worker.upload import Retry, error_code

BLOCK = 1024 * 1024
_ISAL_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment] # stubs: an instance


def compression_of(key: str) -> str:
    """``gzip``, ``zstd`` or ``none``, from the key's last suffix."""
    lowered = key.lower()
    if lowered.endswith((".gz", ".gzip")):
        return "gzip"
    if lowered.endswith((".zst", ".zstd")):
        return "zstd"
    return "none"


class Stream:
    """Counts the compressed bytes read (what progress compares with the listed sizes)."""

    def __init__(self, client: Any, retry: Retry[Any], bucket: str, file: SourceFile) -> None:
        self._client = client
        self._retry = retry
        self._bucket = bucket
        self.file = file
        self.read_bytes = 0

    def _body(self) -> Any:
        try:
            response = self._retry(f"GetObject {self.file.key}", lambda: self._client.get_object(
                Bucket=self._bucket, Key=self.file.key, IfMatch=self.file.etag))
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("PreconditionFailed", "NoSuchKey", "412", "404"):
                raise TransientError(f"file {self.file.key} changed or disappeared since it "
                                     "was listed; the next attempt lists again") from None
            raise
        return response["Body"]

    def _raw(self) -> Iterator[bytes]:
        body = self._body()
        try:
            while True:
                try:
                    block = body.read(BLOCK)
                except (botocore.exceptions.BotoCoreError, OSError) as exc:
                    raise TransientError(f"reading {self.file.key}: {exc}") from None
                if not block:
                    return
                self.read_bytes += len(block)
                yield block
        finally:
            body.close()

    def blocks(self) -> Iterator[bytes]:
        """The file's decompressed bytes, block by block."""
        kind = compression_of(self.file.key)
        if kind == "gzip":
            return self._gunzip()
        if kind == "zstd":
            return self._unzstd()
        return self._raw()

    def _corrupt(self, what: str, exc: Exception | None = None) -> DataError:
        detail = f" ({exc})" if exc else ""
        return DataError(f"file {self.file.key}: not a valid {what} stream{detail}: replace "
                         "the file, or remove it from the source")

    def _gunzip(self) -> Iterator[bytes]:
        return self._inflate("gzip", lambda: isal_zlib.decompressobj(wbits=31),
                             (zlib.error, _ISAL_ERROR))

    def _unzstd(self) -> Iterator[bytes]:
        return self._inflate("zstd", lambda: zstandard.ZstdDecompressor().decompressobj(),
                             (zstandard.ZstdError,))

    def _inflate(self, what: str, fresh: Callable[[], Any],
                 errors: tuple[type[Exception], ...]) -> Iterator[bytes]:
        """Every member (gzip) or frame (zstd) of the file, one after the other (as
        ``gzip -d`` and ``zstd -d`` read concatenated ones); one cut short is corrupt."""
        inflate = fresh()
        pending = False
        try:
            for block in self._raw():
                data = block
                while data:
                    pending = True
                    out = inflate.decompress(data)
                    if out:
                        yield out
                    if not inflate.eof:
                        break
                    data = inflate.unused_data
                    inflate = fresh()
                    pending = False
        except errors as exc:
            raise self._corrupt(what, exc) from None
        if pending:
            raise self._corrupt(what, ValueError(f"the file ends inside a {what} stream"))


class RangeReader(io.RawIOBase):
    """A seekable file over ranged GETs of one object version (for Parquet)."""

    def __init__(self, client: Any, retry: Retry[Any], bucket: str, file: SourceFile) -> None:
        self._client = client
        self._retry = retry
        self._bucket = bucket
        self._file = file
        self._position = 0
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._file.size}
        self._position = max(0, base[whence] + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        end = min(self._file.size, self._position + len(buffer))
        if end <= self._position:
            return 0
        byte_range = f"bytes={self._position}-{end - 1}"

        def get() -> bytes:
            response = self._client.get_object(Bucket=self._bucket, Key=self._file.key,
                                               Range=byte_range, IfMatch=self._file.etag)
            return bytes(response["Body"].read())

        try:
            data = self._retry(f"GetObject {self._file.key}", get)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("PreconditionFailed", "412"):
                raise TransientError(f"file {self._file.key} changed since it was listed; "
                                     "the next attempt lists again") from None
            raise
        buffer[:len(data)] = data
        self._position += len(data)
        self.read_bytes += len(data)
        return len(data)
