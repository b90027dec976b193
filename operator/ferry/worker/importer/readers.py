"""Source files as COPY input: the file's columns, then its rows, two ways.

``fast()`` is the bytes of one COPY of the whole file: a CSV whose every column is
loaded passes through untouched (the database parses it: the fastest path there is), the
other formats are converted to COPY's text format row by row. ``records()`` is the same
rows one :class:`Record` each, numbered by line (CSV, JSON Lines) or row (Parquet): what
the loader falls back to when the database refused the fast COPY, to find the rows it
refuses. Rows the reader itself cannot read (a JSON line that does not parse, a CSV
record with the wrong number of fields where fields must be picked) are
:class:`Reject`\\ s from either.

One record is one COPY line, for the database as for the reader: PostgreSQL numbers a
CSV record with quoted newlines as one line, so its error's ``line N`` is record N of
the COPY.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Protocol

from psycopg import sql

from ferry.contract.importplan import CsvOptions, ImportFormat
from ferry.worker.errors import DataError
from ferry.worker.importer.listing import SourceFile
from ferry.worker.importer.streams import RangeReader, Stream
from ferry.worker.upload import Retry

RAW_VALUE_CHARACTERS = 256
"""A rejected row's value as the audit log keeps it: at most this many characters."""


@dataclasses.dataclass(frozen=True)
class Record:
    """One row as a COPY line (newline-terminated), with its line or row number."""

    number: int
    data: bytes


@dataclasses.dataclass(frozen=True)
class Reject:
    """A row that is not loaded: where, which column if known, why, its raw text."""

    number: int
    column: str | None
    reason: str
    value: str


def raw_text(data: bytes | str) -> str:
    """A value for the audit log: text, cut to RAW_VALUE_CHARACTERS."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.rstrip("\r\n")
    return text if len(text) <= RAW_VALUE_CHARACTERS else text[:RAW_VALUE_CHARACTERS] + "..."


class FileReader(Protocol):
    """One source file, opened once per pass."""

    unit: str
    """``line`` or ``row``: what :attr:`Record.number` counts."""

    def columns(self) -> list[str]:
        """The file's column names (a CSV header, the first JSON object's keys, the
        Parquet schema; positions "1".."n" for a CSV without header)."""

    def select(self, keep: list[int] | None) -> None:
        """Load only the file's columns at these positions (None: all, in file order)."""

    def copy_options(self) -> sql.Composable:
        """The COPY's ``WITH (...)`` options for what :meth:`fast`/:meth:`records` give."""

    def fast(self, rejects: list[Reject]) -> Iterator[bytes]:
        """The whole file's COPY input; rows the reader rejects are appended."""

    def records(self) -> Iterator[Record | Reject]:
        """The file's rows one by one."""

    @property
    def read_bytes(self) -> int:
        """Bytes of the stored (compressed) file read so far in this pass."""


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def text_value(value: Any) -> str:
    """A JSON or Parquet value in COPY's text format (``\\N`` is NULL); the database's
    input function of the column's type does the conversion, and refuses what it cannot
    take, like any other bad value."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False).translate(_ESCAPES)
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds()} seconds"
    return str(value).translate(_ESCAPES)


def _lines(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Physical lines without their ``\\n`` (a last line without one included)."""
    pending = b""
    for block in blocks:
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending


def split_records(blocks: Iterator[bytes], quote: bytes) -> Iterator[tuple[int, bytes]]:
    """CSV records as (first line number, record with its newline), a quoted newline
    kept inside: a line ends a record when the quotes so far are balanced."""
    line = 1
    parts: list[bytes] = []
    quotes = 0
    for text in _lines(blocks):
        parts.append(text)
        quotes += text.count(quote)
        if quotes % 2 == 0:
            yield line, b"\n".join(parts) + b"\n"
            line += len(parts)
            parts, quotes = [], 0
    if parts:
        yield line, b"\n".join(parts) + b"\n"


class _Base:
    unit = "line"

    def __init__(self, client: Any, retry: Retry[Any], bucket: str, file: SourceFile) -> None:
        self._client = client
        self._retry = retry
        self._bucket = bucket
        self.file = file
        self._stream: Stream | RangeReader | None = None
        self._keep: list[int] | None = None

    def _open(self) -> Iterator[bytes]:
        stream = Stream(self._client, self._retry, self._bucket, self.file)
        self._stream = stream
        return stream.blocks()

    @property
    def read_bytes(self) -> int:
        return self._stream.read_bytes if self._stream else 0

    def select(self, keep: list[int] | None) -> None:
        self._keep = keep

    def _text_records(self) -> Iterator[Record | Reject]:
        raise NotImplementedError

    def fast(self, rejects: list[Reject]) -> Iterator[bytes]:
        """Records joined into blocks of about 1 MiB."""
        parts: list[bytes] = []
        size = 0
        for item in self._text_records():
            if isinstance(item, Reject):
                rejects.append(item)
                continue
            parts.append(item.data)
            size += len(item.data)
            if size >= 1024 * 1024:
                yield b"".join(parts)
                parts, size = [], 0
        if parts:
            yield b"".join(parts)

    def records(self) -> Iterator[Record | Reject]:
        return self._text_records()

    def copy_options(self) -> sql.Composable:
        return sql.SQL("")


class CsvReader(_Base):
    """RFC 4180 with the plan's delimiter, quote and null string."""

    def __init__(self, client: Any, retry: Retry[Any], bucket: str, file: SourceFile,
                 options: CsvOptions) -> None:
        super().__init__(client, retry, bucket, file)
        self._options = options
        self._quote = options.quote.encode()
        self._delimiter = options.delimiter.encode()
        d, q = re.escape(self._delimiter), re.escape(self._quote)
        self._field = re.compile(b"(?:" + q + b"(?:[^" + q + b"]|" + q + q + b")*" + q
                                 + b"|[^" + d + q + b"\r\n])*")
        self._header_bytes = 0
        self._names: list[str] | None = None

    def _split(self, blocks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
        return split_records(blocks, self._quote)

    def _fields(self, record: bytes) -> list[bytes] | None:
        """A record's fields as written (quotes kept, so NULL stays apart from "")."""
        body = record.rstrip(b"\n").removesuffix(b"\r")
        fields, position = [], 0
        while True:
            match = self._field.match(body, position)
            assert match is not None
            fields.append(match.group())
            position = match.end()
            if position == len(body):
                return fields
            if body[position:position + 1] != self._delimiter:
                return None
            position += 1

    def columns(self) -> list[str]:
        if self._names is not None:
            return self._names
        first = next(self._split(self._open()), None)
        if first is None:
            raise DataError(f"file {self.file.key}: is empty (no header): remove it from "
                            "the source, or set format.header: false")
        record = first[1]
        if self._options.header:
            self._header_bytes = len(record)
            text = record.decode("utf-8-sig", "replace").rstrip("\r\n")
            row = next(csv.reader(io.StringIO(text), delimiter=self._options.delimiter,
                                  quotechar=self._options.quote), [])
            self._names = [name.strip() for name in row]
        else:
            fields = self._fields(record) or []
            self._names = [str(i) for i in range(1, len(fields) + 1)]
        return self._names

    def copy_options(self) -> sql.Composable:
        return sql.SQL("(FORMAT csv, DELIMITER {}, QUOTE {}, NULL {})").format(
            sql.Literal(self._options.delimiter), sql.Literal(self._options.quote),
            sql.Literal(self._options.null_string))

    def _body_blocks(self) -> Iterator[bytes]:
        """The file's bytes after its header."""
        skip = self._header_bytes
        for block in self._open():
            if skip >= len(block):
                skip -= len(block)
                continue
            yield block[skip:] if skip else block
            skip = 0

    def fast(self, rejects: list[Reject]) -> Iterator[bytes]:
        if self._keep is None:
            return self._body_blocks()
        return super().fast(rejects)

    def _text_records(self) -> Iterator[Record | Reject]:
        offset = 1 if self._options.header else 0
        width = len(self.columns())
        for line, record in self._split(self._body_blocks()):
            if self._keep is None:
                yield Record(line + offset, record)
                continue
            fields = self._fields(record)
            if fields is None or len(fields) != width:
                got = "malformed quoting" if fields is None else f"{len(fields)} fields"
                yield Reject(line + offset, None, f"expected {width} fields, got {got}",
                             raw_text(record))
                continue
            picked = [fields[i] for i in self._keep]
            yield Record(line + offset, self._delimiter.join(picked) + b"\n")


class JsonLinesReader(_Base):
    """One JSON object per line; the first object's keys are the file's columns, a key
    absent from a later object is NULL there."""

    def columns(self) -> list[str]:
        for number, line in enumerate(_lines(self._open()), 1):
            if not line.strip():
                continue
            try:
                first = json.loads(line)
            except ValueError as exc:
                raise DataError(f"file {self.file.key}: line {number} is not JSON ({exc}): "
                                "the first object names the file's columns") from None
            if not isinstance(first, dict) or not first:
                raise DataError(f"file {self.file.key}: line {number} is not a JSON object "
                                "with keys: the first object names the file's columns")
            self._names = list(first)
            return self._names
        raise DataError(f"file {self.file.key}: has no JSON object: remove it from the "
                        "source")

    def _text_records(self) -> Iterator[Record | Reject]:
        names = self._names
        keep = self._keep if self._keep is not None else list(range(len(names)))
        picked = [names[i] for i in keep]
        known = set(names)
        for number, line in enumerate(_lines(self._open()), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                yield Reject(number, None, f"not valid JSON: {exc}", raw_text(line))
                continue
            if not isinstance(row, dict):
                yield Reject(number, None, "not a JSON object", raw_text(line))
                continue
            extra = [key for key in row if key not in known]
            if extra:
                yield Reject(number, extra[0], f"key {extra[0]!r} is not among the file's "
                             "columns (the keys of its first line)", raw_text(line))
                continue
            text = "\t".join(text_value(row.get(name)) for name in picked)
            yield Record(number, (text + "\n").encode())

    _names: list[str]


class ParquetReader(_Base):
    """Read by batches of rows (a row group at most at a time), never whole.

    Where every loaded column has a type Arrow's CSV writer renders as PostgreSQL reads
    it (numbers, booleans, text, dates, times, timestamps), each batch becomes CSV in
    Arrow's C++ (about 10x the Python conversion's rate); other types (binary, lists,
    structs, maps) take the row-by-row conversion to COPY text.
    """

    unit = "row"
    BATCH_ROWS = 16384

    def _file(self) -> Any:
        # glibc's malloc instead of Arrow's default mimalloc, which keeps the freed
        # buffers of earlier row groups (peak RSS of a 1M-row import 251 -> 174 MB).
        # Arrow's C++ reads it once, at its first allocation in the process, which is
        # here: nothing before the Parquet reader loads pyarrow.
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
        import pyarrow.parquet as pq  # noqa: PLC0415 - a third of start-up, Parquet only
        reader = RangeReader(self._client, self._retry, self._bucket, self.file)
        self._stream = reader
        try:
            return pq.ParquetFile(io.BufferedReader(reader, 4 * 1024 * 1024), pre_buffer=False,
                                  buffer_size=4 * 1024 * 1024)
        except Exception as exc:
            raise self._corrupt(exc) from None

    def _corrupt(self, exc: Exception) -> DataError:
        return DataError(f"file {self.file.key}: not a readable Parquet file "
                         f"({type(exc).__name__}: {exc}): replace the file, or remove it "
                         "from the source")

    def columns(self) -> list[str]:
        schema = self._file().schema_arrow
        self._names = list(schema.names)
        self._types = list(schema.types)
        return self._names

    def _picked(self) -> list[str]:
        return [self._names[i] for i in (self._keep if self._keep is not None
                                         else range(len(self._names)))]

    def _as_csv(self) -> bool:
        import pyarrow as pa  # noqa: PLC0415

        checks = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal,
                  pa.types.is_boolean, pa.types.is_string, pa.types.is_large_string,
                  pa.types.is_date, pa.types.is_time, pa.types.is_timestamp)
        by_name = dict(zip(self._names, self._types, strict=True))
        return all(any(check(by_name[name]) for check in checks) for name in self._picked())

    def copy_options(self) -> sql.Composable:
        if self._as_csv():
            return sql.SQL("(FORMAT csv, NULL '')")
        return sql.SQL("")

    def _batches(self) -> Iterator[Any]:
        parquet = self._file()
        try:
            yield from parquet.iter_batches(batch_size=self.BATCH_ROWS,
                                            columns=self._picked())
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise self._corrupt(exc) from None

    def _csv_blocks(self) -> Iterator[bytes]:
        import pyarrow.csv as pc  # noqa: PLC0415

        options = pc.WriteOptions(include_header=False, batch_size=self.BATCH_ROWS)
        for batch in self._batches():
            buffer = io.BytesIO()
            pc.write_csv(batch, buffer, options)
            yield buffer.getvalue()

    def fast(self, rejects: list[Reject]) -> Iterator[bytes]:
        if self._as_csv():
            return self._csv_blocks()
        return super().fast(rejects)

    def _text_records(self) -> Iterator[Record | Reject]:
        if self._as_csv():
            for number, (_, record) in enumerate(split_records(self._csv_blocks(), b'"'), 1):
                yield Record(number, record)
            return
        picked = self._picked()
        number = 0
        for batch in self._batches():
            for row in batch.to_pylist():
                number += 1
                text = "\t".join(text_value(row[name]) for name in picked)
                yield Record(number, (text + "\n").encode())

    _names: list[str]
    _types: list[Any]


def open_reader(fmt: ImportFormat, options: CsvOptions, client: Any, retry: Retry[Any],
                bucket: str, file: SourceFile) -> FileReader:
    """The reader of ``file`` in the plan's format."""
    if fmt == "csv":
        return CsvReader(client, retry, bucket, file, options)
    if fmt == "jsonl":
        return JsonLinesReader(client, retry, bucket, file)
    return ParquetReader(client, retry, bucket, file)
