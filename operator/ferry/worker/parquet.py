"""Parquet output: PostgreSQL types to Arrow, COPY's CSV to Arrow, files cut by estimate.

Only Parquet needs pyarrow (about a third of the worker's start-up CPU), so this module
is imported by the Parquet path alone.

Parquet sizes are only known after encoding, so Parquet is cut by estimate: the
encoded bytes per row seen so far (times a 1.25 safety factor) decide how many rows
still fit, with room reserved for the footer; in practice files end a little below the
limit. Every file is a complete Parquet file with the full schema.

Dictionary pages are capped at 64 KiB (Arrow's default is 1 MiB): a column with more
distinct values than that per row group falls back to plain encoding early instead of
building a large dictionary that is then thrown away. On the benchmark table this cut
the encoding CPU by about 3x and made files smaller (uncompressed 31.8 MB against
34.3 MB, zstd 7.5 MB against 10.0 MB per 200k rows); low-cardinality columns (flags,
codes, enums) still get dictionaries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg import sql

from ferry.worker.codecs import Bytes
from ferry.worker.errors import DataError
from ferry.worker.formats import (
    BOOL,
    DATE,
    FLOAT4,
    FLOAT8,
    INT2,
    INT4,
    INT8,
    NUMERIC,
    OID,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    ColumnInfo,
)
from ferry.worker.splitting import Chunk, OnWrite, OpenFile, Output, SplitFile, no_progress

DICTIONARY_PAGE_BYTES = 64 * 1024

_ARROW_CELL = re.compile(r"In CSV column #(\d+): Row #(\d+): (.*)", re.DOTALL)
"""How Arrow's CSV reader reports a value it cannot convert: the column's 0-based
position, the row's 1-based place in the parsed buffer, the problem."""

_SIMPLE: dict[int, pa.DataType] = {
    BOOL: pa.bool_(),
    INT2: pa.int16(),
    INT4: pa.int32(),
    INT8: pa.int64(),
    OID: pa.int64(),
    FLOAT4: pa.float32(),
    FLOAT8: pa.float64(),
    DATE: pa.date32(),
    TIME: pa.time64("us"),
    TIMESTAMP: pa.timestamp("us"),
    TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
}


def arrow_type(col: ColumnInfo) -> pa.DataType:
    """The Parquet/Arrow type for a PostgreSQL column.

    ``numeric(p, s)`` becomes ``decimal128(p, s)`` up to 38 digits and ``decimal256(p,
    s)`` up to 76, Arrow's limit; above that a UTF-8 string with the exact decimal text.
    PostgreSQL 15 also takes a negative scale (``numeric(5, -2)``: rounded to hundreds)
    and one above the precision (``numeric(2, 5)``: digits after the point only), which
    Parquet's decimals do not (0 <= scale <= precision); the decimal that holds the same
    values is taken instead: ``(p - s, 0)`` and ``(s, s)``.
    Unconstrained ``numeric`` has no fixed scale, and any fixed choice would round or
    overflow real values, so it becomes a UTF-8 string holding the exact decimal text.
    Types without a lossless Arrow equivalent (text, uuid, json, jsonb, interval,
    arrays, bytea as ``\\x`` hex, ...) are strings in PostgreSQL's text form.
    """
    if col.type_oid == NUMERIC:
        if col.precision is None or col.scale is None:
            return pa.string()
        scale = max(col.scale, 0)
        precision = max(col.precision - min(col.scale, 0), col.scale)
        if precision <= 38:
            return pa.decimal128(precision, scale)
        if precision <= 76:
            return pa.decimal256(precision, scale)
        return pa.string()
    return _SIMPLE.get(col.type_oid, pa.string())


def arrow_schema(columns: list[ColumnInfo]) -> pa.Schema:
    """Arrow schema of the output, in column order."""
    return pa.schema([pa.field(c.name, arrow_type(c)) for c in columns])


class CsvToArrow:
    """Parses chunks of COPY's CSV into Arrow tables of the output schema (Arrow's C++
    reader, explicit column types, so nothing is inferred).

    Arrow's reader is about twice as fast when told that no value contains a line break;
    a chunk's LFs are counted (one C pass) and compared with its record count, and it
    is searched for CR (which Arrow also takes for a line end), so values with embedded
    line breaks are still parsed exactly.

    The reader cannot convert to ``decimal256`` (ArrowNotImplementedError), so those
    columns are read as strings and cast afterwards (``pyarrow.compute.cast``, exact:
    COPY writes every value of ``numeric(p, s)`` with its s digits after the point).
    ``pyarrow.compute`` is imported only then (65 ms of CPU).
    """

    def __init__(self, columns: list[ColumnInfo]) -> None:
        self.schema = arrow_schema(columns)
        self._read = pacsv.ReadOptions(column_names=self.schema.names, use_threads=False)
        self._cast_later = [i for i, t in enumerate(self.schema.types)
                            if pa.types.is_decimal256(t)]
        self._cast: Callable[[Any, pa.DataType], Any] | None = None
        if self._cast_later:
            import pyarrow.compute as pc  # noqa: PLC0415 - see above

            self._cast = pc.cast
        read_types = [pa.string() if i in self._cast_later else t
                      for i, t in enumerate(self.schema.types)]
        self._convert = pacsv.ConvertOptions(
            column_types=dict(zip(self.schema.names, read_types, strict=True)),
            null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False,
            true_values=["t"], false_values=["f"],
        )
        self._plain = pacsv.ParseOptions(newlines_in_values=False)
        self._newlines = pacsv.ParseOptions(newlines_in_values=True)
        self._records = 0  # converted so far: numbers a bad record within the batch

    def table(self, chunk: Chunk) -> pa.Table:
        """The chunk's records as a table; a value Arrow cannot take is a DataError."""
        plain = chunk.data.count(b"\n") == chunk.records and b"\r" not in chunk.data
        try:
            table = pacsv.read_csv(pa.py_buffer(chunk.data), read_options=self._read,
                                   parse_options=self._plain if plain else self._newlines,
                                   convert_options=self._convert)
        except pa.ArrowInvalid as exc:
            raise self._conversion_error(str(exc)) from None
        for i in self._cast_later:
            assert self._cast is not None
            field = self.schema.field(i)
            try:
                cast = self._cast(table.column(i), field.type)
            except pa.ArrowInvalid:
                raise self._cast_error(i, table.column(i).combine_chunks()) from None
            table = table.set_column(i, field, cast)
        self._records += chunk.records
        return table

    def _cast_error(self, index: int, values: pa.Array) -> DataError:
        """The error of the first value of ``values`` that the cast to the column's type
        refuses (found by bisection: one vectorised cast per step)."""
        assert self._cast is not None
        target = self.schema.field(index).type
        lo, hi = 0, len(values)  # [lo, hi) holds a value the cast refuses
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                self._cast(values.slice(lo, mid - lo), target)
            except pa.ArrowInvalid:
                hi = mid
            else:
                lo = mid
        try:
            self._cast(values.slice(lo, 1), target)
        except pa.ArrowInvalid as exc:
            return self._cell_error(index, lo + 1, str(exc))
        column = sql.Identifier(self.schema.field(index).name).as_string()
        return DataError(f"Parquet conversion: column {column} cannot be cast to {target}")

    def _conversion_error(self, arrow: str) -> DataError:
        """Arrow's error in the user's terms (:meth:`_cell_error`)."""
        cell = _ARROW_CELL.match(arrow)
        if cell is None:
            return DataError(f"Parquet conversion: {arrow}")
        return self._cell_error(int(cell[1]), int(cell[2]), cell[3])

    def _cell_error(self, index: int, row: int, problem: str) -> DataError:
        """A value the column cannot hold, with what to do about it.

        Arrow names the column by its position and the row by its place in this chunk
        (``row``, from 1); the user knows the column's SQL name and the record's place in
        the batch, and can fix it only outside Parquet's types: as text, without the
        value, or in a text format (docs/worker.md, "Formats and types").
        """
        field = self.schema.field(index)
        column = sql.Identifier(field.name).as_string()
        return DataError(
            f"Parquet: column {column} ({field.type}) cannot hold the value of record "
            f"{self._records + row} of this batch: {problem}. Convert the column "
            f"in a query source (e.g. SELECT {column}::text, or NULLIF or CASE to drop such "
            "values) or export as csv or jsonl"
        )


class _Position:
    """File-like adapter for pyarrow: forwards writes to a sink and counts bytes."""

    def __init__(self, output: ParquetSplitter) -> None:
        self._output = output
        self.closed = False

    def write(self, data: Bytes) -> int:
        self._output._emit(data, 0)
        return len(data)

    def tell(self) -> int:
        return self._output._size

    def flush(self) -> None:
        """Nothing buffered here."""

    def close(self) -> None:
        self.closed = True


class ParquetSplitter(Output):
    """Parquet: row groups of ~``row_group_bytes`` (Arrow size), files cut by estimate."""

    SAFETY = 1.25

    def __init__(
        self,
        open_file: OpenFile,
        limit: int | None,
        schema: pa.Schema,
        compression: str,
        level: int,
        on_write: OnWrite = no_progress,
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
            compression_level=self._level, dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
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
