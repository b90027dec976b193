"""Cutting the record stream into files of at most ``fileSplitSize`` bytes.

Records arrive as :class:`Chunk` s: whole records back to back in one buffer. Text
formats (CSV, JSON Lines) are cut exactly: a chunk is written whole when the file's size
so far plus the codec's worst case for it fits; otherwise a binary search over the
chunk's record ends finds the longest prefix that fits, which is written, and the next
file starts with the rest. A record never straddles two files,
every CSV file starts with the header, and a record that cannot fit even into an empty
file is a :class:`DataError`.

Parquet files are cut by estimate (:mod:`ferry.worker.parquet`, on the same
bookkeeping).

A batch always produces at least one file, so an empty result is a valid empty file
(CSV: the header only; JSON Lines: zero bytes; Parquet: schema, no rows).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from array import array
from collections.abc import Callable, Iterable
from typing import Protocol

from ferry.worker.codecs import Bytes, Codec
from ferry.worker.errors import DataError, WorkerError


@dataclasses.dataclass(frozen=True)
class Chunk:
    """``records`` whole records back to back, as COPY's CSV with quote character
    ``quote`` wrote them.

    The reader counts records but does not note where each one ends: that bookkeeping
    was a tenth of the read loop's CPU, and the offsets are needed only where a file
    fills up in the middle of a chunk, about once per file. :attr:`ends` finds them
    then. COPY quotes every value that holds a line break or the quote character and
    doubles the quotes inside, so a quoted value holds an even number of quote
    characters and a line break is the end of a record exactly when the quotes since
    the record began are even in number.
    """

    data: bytes | bytearray
    records: int
    quote: bytes = b'"'

    @classmethod
    def of(cls, records: Iterable[bytes], quote: bytes = b'"') -> Chunk:
        """A chunk holding ``records`` (each ending with its own newline)."""
        whole = list(records)
        return cls(bytearray(b"".join(whole)), len(whole), quote)

    @functools.cached_property
    def ends(self) -> array[int]:
        """The offset just past each record."""
        data, quote = self.data, self.quote
        ends = array("q")
        pos = quotes = 0
        while (newline := data.find(b"\n", pos)) >= 0:
            quotes += data.count(quote, pos, newline)
            pos = newline + 1
            if quotes % 2 == 0:
                ends.append(pos)
                quotes = 0
        if len(ends) != self.records or pos != len(data):
            raise WorkerError(f"found {len(ends)} record ends where COPY sent {self.records} "
                              "records: a bug in ferry-worker, please report it")
        return ends


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """An object that is complete and visible in the bucket."""

    key: str
    size: int
    sha256: str
    etag: str


@dataclasses.dataclass(frozen=True)
class SplitFile:
    """One finished output file."""

    stored: StoredObject
    records: int


class Sink(Protocol):
    """Where one file's bytes go (an S3 multipart upload, or memory in tests)."""

    def write(self, data: Bytes) -> None:
        """Append bytes (copied: ``data`` may be reused once this returns)."""

    def close(self) -> StoredObject:
        """Finish; the object is complete and visible when this returns."""

    def abort(self) -> None:
        """Discard; nothing becomes visible."""


OpenFile = Callable[[int], Sink]
"""Opens output file number ``n`` (0, 1, 2, ...)."""

OnWrite = Callable[[int, int], None]
"""Progress callback: (records, bytes) just written."""


def no_progress(records: int, nbytes: int) -> None:
    del records, nbytes


class Output:
    """Bookkeeping shared by the text and Parquet splitters: open file, finished files,
    abort."""

    def __init__(self, open_file: OpenFile, on_write: OnWrite) -> None:
        self._open_file = open_file
        self._on_write = on_write
        self.files: list[SplitFile] = []
        self._sink: Sink | None = None
        self._size = 0
        self._records = 0

    def _start(self) -> Sink:
        self._sink = self._open_file(len(self.files))
        self._size = 0
        self._records = 0
        return self._sink

    def _emit(self, data: Bytes, records: int) -> None:
        assert self._sink is not None
        if data:
            self._sink.write(data)
        self._size += len(data)
        self._records += records
        self._on_write(records, len(data))

    def _finish_file(self) -> None:
        assert self._sink is not None
        stored = self._sink.close()
        self._sink = None
        self.files.append(SplitFile(stored, self._records))

    def abort(self) -> None:
        """Abort the file being written (finished files are the caller's to delete)."""
        if self._sink is not None:
            sink, self._sink = self._sink, None
            sink.abort()


class TextSplitter(Output):
    """CSV / JSON Lines: exact size limit, optional header, one codec stream per file."""

    def __init__(
        self,
        open_file: OpenFile,
        limit: int | None,
        make_codec: Callable[[], Codec],
        header: bytes = b"",
        on_write: OnWrite = no_progress,
    ) -> None:
        super().__init__(open_file, on_write)
        self._limit = limit
        self._make_codec = make_codec
        self._header = header
        self._codec: Codec | None = None

    def _open(self) -> None:
        self._start()
        self._codec = self._make_codec()
        if self._limit is not None and self._codec.bound(len(self._header)) > self._limit:
            raise DataError(f"fileSplitSize {self._limit} is smaller than the CSV header")
        if self._header:
            self._emit(self._codec.compress(self._header), 0)

    def _close(self) -> None:
        assert self._codec is not None
        self._emit(self._codec.finish(), 0)
        self._codec = None
        self._finish_file()

    def _fits(self, size: int) -> bool:
        assert self._codec is not None
        return self._limit is None or self._size + self._codec.bound(size) <= self._limit

    def write_chunk(self, chunk: Chunk) -> None:
        """Write whole records, starting new files where the limit says so."""
        data, count = chunk.data, chunk.records
        first, start = 0, 0  # the first record not written yet, and where it starts
        while first < count:
            if self._codec is None:
                self._open()
            assert self._codec is not None
            if self._fits(len(data) - start):
                last, end = count, len(data)
            else:
                ends = chunk.ends
                last = bisect.bisect_left(ends, True, first, count,
                                          key=lambda end: not self._fits(end - start))
                if last == first:
                    if self._records == 0:
                        raise DataError(
                            f"record {self.records_total() + 1} of this batch is "
                            f"{ends[first] - start} bytes and does not fit into "
                            f"fileSplitSize {self._limit}"
                        )
                    self._close()
                    continue
                end = ends[last - 1]
            part = data if start == 0 and end == len(data) else memoryview(data)[start:end]
            self._emit(self._codec.compress(part), last - first)
            first, start = last, end

    def records_total(self) -> int:
        """Records written so far over all files."""
        return sum(f.records for f in self.files) + self._records

    def finish(self) -> list[SplitFile]:
        """Close the last file (opening one if the batch had no records)."""
        if self._codec is None:
            self._open()
        self._close()
        return self.files
