"""Cutting the record stream into files of at most ``fileSplitSize`` bytes.

Text formats (CSV, JSON Lines) are cut exactly: before a chunk of records is written,
the file's size so far plus the codec's worst case for the chunk must fit; otherwise the
chunk is halved (at record boundaries) until it fits or a single record is left, which
then starts the next file. A record never straddles two files, every CSV file starts
with the header, and a record that cannot fit even into an empty file is a
:class:`DataError`.

Parquet sizes are only known after encoding, so Parquet is cut by estimate: the
encoded bytes per row seen so far (times a 1.25 safety factor) decide how many rows
still fit, with room reserved for the footer; in practice files end a little below the
limit. Every file is a complete Parquet file with the full schema.

A batch always produces at least one file, so an empty result is a valid empty file
(CSV: the header only; JSON Lines: zero bytes; Parquet: schema, no rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from ferry.worker.codecs import Codec
from ferry.worker.errors import DataError


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

    def write(self, data: bytes) -> None:
        """Append bytes."""

    def close(self) -> StoredObject:
        """Finish; the object is complete and visible when this returns."""

    def abort(self) -> None:
        """Discard; nothing becomes visible."""


OpenFile = Callable[[int], Sink]
"""Opens output file number ``n`` (0, 1, 2, ...)."""

OnWrite = Callable[[int, int], None]
"""Progress callback: (records, bytes) just written."""


def _no_progress(records: int, nbytes: int) -> None:
    del records, nbytes


class _Output:
    """Bookkeeping shared by both splitters: open file, finished files, abort."""

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

    def _emit(self, data: bytes, records: int) -> None:
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


class TextSplitter(_Output):
    """CSV / JSON Lines: exact size limit, optional header, one codec stream per file."""

    def __init__(
        self,
        open_file: OpenFile,
        limit: int | None,
        make_codec: Callable[[], Codec],
        header: bytes = b"",
        on_write: OnWrite = _no_progress,
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

    def write_rows(self, rows: list[bytes]) -> None:
        """Write whole records (each ends with its newline)."""
        if self._codec is None:
            self._open()
        assert self._codec is not None
        data = b"".join(rows)
        if self._fits(len(data)):
            self._emit(self._codec.compress(data), len(rows))
            return
        if len(rows) > 1:
            half = len(rows) // 2
            self.write_rows(rows[:half])
            self.write_rows(rows[half:])
            return
        if self._records == 0:
            raise DataError(
                f"record {self.records_total() + 1} of this batch is {len(data)} bytes "
                f"and does not fit into fileSplitSize {self._limit}"
            )
        self._close()
        self.write_rows(rows)

    def records_total(self) -> int:
        """Records written so far over all files."""
        return sum(f.records for f in self.files) + self._records

    def finish(self) -> list[SplitFile]:
        """Close the last file (opening one if the batch had no records)."""
        if self._codec is None:
            self._open()
        self._close()
        return self.files


class _Position:
    """File-like adapter for pyarrow: forwards writes to a sink and counts bytes."""

    def __init__(self, output: ParquetSplitter) -> None:
        self._output = output
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        self._output._emit(bytes(data), 0)
        return len(data)

    def tell(self) -> int:
        return self._output._size

    def flush(self) -> None:
        """Nothing buffered here."""

    def close(self) -> None:
        self.closed = True


class ParquetSplitter(_Output):
    """Parquet: row groups of ~``row_group_bytes`` (Arrow size), files cut by estimate."""

    SAFETY = 1.25

    def __init__(
        self,
        open_file: OpenFile,
        limit: int | None,
        schema: pa.Schema,
        compression: str,
        level: int,
        on_write: OnWrite = _no_progress,
        row_group_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        super().__init__(open_file, on_write)
        self._limit = limit
        self._schema = schema
        self._compression = "NONE" if compression == "none" else compression
        self._level = level if compression != "none" else None
        self._row_group_bytes = row_group_bytes
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._row_groups = 0
        self._bytes_per_row: float | None = None

    def _open(self) -> None:
        self._start()
        self._row_groups = 0
        self._writer = pq.ParquetWriter(
            _Position(self), self._schema, compression=self._compression,
            compression_level=self._level,
        )

    def _close(self) -> None:
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        self._finish_file()

    def _footer_reserve(self) -> int:
        return 4096 + 512 * len(self._schema) * (self._row_groups + 2)

    def _write_group(self, table: pa.Table) -> None:
        assert self._writer is not None
        before = self._size
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._row_groups += 1
        self._records += table.num_rows
        self._on_write(table.num_rows, 0)
        if table.num_rows:
            observed = (self._size - before) / table.num_rows
            self._bytes_per_row = max(observed, self._bytes_per_row or 0.0)

    def _place(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._writer is None:
                self._open()
            if self._limit is None:
                self._write_group(table)
                return
            per_row = self._bytes_per_row or table.nbytes / table.num_rows
            room = self._limit - self._size - self._footer_reserve()
            fit = int(room / (per_row * self.SAFETY)) if room > 0 else 0
            if fit >= table.num_rows:
                self._write_group(table)
                return
            if fit <= 0:
                if self._records:
                    self._close()
                    continue
                fit = 1
            self._write_group(table.slice(0, fit))
            table = table.slice(fit)
            self._close()

    def write_table(self, table: pa.Table) -> None:
        """Queue rows; a row group is written once enough are pending."""
        self._pending.append(table)
        self._pending_bytes += table.nbytes
        if self._pending_bytes >= self._row_group_bytes:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending).combine_chunks()
        self._pending, self._pending_bytes = [], 0
        self._place(table)

    def finish(self) -> list[SplitFile]:
        """Write what is pending and close the last file (an empty one if need be)."""
        self._flush_pending()
        if self._writer is None and not self.files:
            self._open()
        if self._writer is not None:
            self._close()
        for split in self.files:
            if self._limit is not None and split.stored.size > self._limit:
                raise DataError(
                    f"Parquet file {split.stored.key} came out at {split.stored.size} bytes, "
                    f"above fileSplitSize {self._limit}; use a larger fileSplitSize"
                )
        return self.files

    def abort(self) -> None:
        """Drop the writer and abort the open file."""
        self._writer = None
        self._pending = []
        super().abort()
