"""Streaming gzip/zstd compressors that report exact sizes and worst-case growth.

Each output file is one standard gzip member or one zstd frame (readable by every
tool, unlike concatenated frames, which some readers stop after the first of). To keep
a file under ``fileSplitSize`` without ever cutting a record, the splitter asks
:meth:`Codec.bound` how large a chunk could possibly get before feeding it, and every
:meth:`Codec.compress` call flushes, so the compressed size so far is exact.

Levels: gzip defaults to 1 (throughput: level 6 runs near 36 MB/s, far below COPY),
zstd to 3; both can be set with ``compressionLevel``. gzip level 1 is ISA-L's igzip
(python-isal) at its level 1: standard gzip, about 4x the speed of zlib's level 1 here
(~360 MB/s against ~90 MB/s on the benchmark's CSV) with slightly smaller output
(ratio 0.28 against 0.31). Levels 2-9 are zlib's, for those who trade speed for size.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import zstandard
from isal import isal_zlib

Bytes = bytes | bytearray | memoryview
"""Any contiguous byte buffer (chunks arrive as bytearrays, slices as memoryviews)."""


class Codec(Protocol):
    """One file's compressor."""

    def compress(self, data: Bytes) -> Bytes:
        """Compress and flush ``data``; the output so far is complete up to here."""

    def finish(self) -> bytes:
        """End the stream (trailer)."""

    def bound(self, size: int) -> int:
        """Upper bound of ``compress(x) + finish()`` output for ``len(x) == size``."""


class Identity:
    """No compression."""

    def compress(self, data: Bytes) -> Bytes:
        """Return ``data`` unchanged."""
        return data

    def finish(self) -> bytes:
        """Nothing to add."""
        return b""

    def bound(self, size: int) -> int:
        """Exact."""
        return size


class Gzip:
    """A single gzip member, sync-flushed after each chunk."""

    def __init__(self, level: int) -> None:
        self._z = (isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31) if level == 1
                   else zlib.compressobj(level, zlib.DEFLATED, 31))

    def compress(self, data: Bytes) -> Bytes:
        """Deflate and Z_SYNC_FLUSH."""
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        """Final block and gzip trailer."""
        return self._z.flush(zlib.Z_FINISH)

    def bound(self, size: int) -> int:
        """Stored-block overhead plus header, sync-flush marker and trailer, rounded up.

        zlib's deflateBound is about size/4096; igzip, which cuts stored blocks smaller,
        was measured at up to ~size/2500 on random data, so this allows size/512.
        """
        return size + (size >> 9) + 128


class Zstd:
    """A single zstd frame, block-flushed after each chunk."""

    def __init__(self, level: int) -> None:
        self._z = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: Bytes) -> Bytes:
        """Compress and flush the current block."""
        out: bytes = self._z.compress(data)
        return out + self._z.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        """End the frame."""
        out: bytes = self._z.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
        return out

    def bound(self, size: int) -> int:
        """ZSTD_COMPRESSBOUND plus frame header, block headers and epilogue."""
        return size + (size >> 8) + (size >> 17) * 3 + 64


def make_codec(compression: str, level: int) -> Codec:
    """A fresh compressor for one file."""
    if compression == "gzip":
        return Gzip(level)
    if compression == "zstd":
        return Zstd(level)
    return Identity()
