"""Output formats: PostgreSQL column types to Arrow/Parquet, CSV headers, file names.

All three formats are produced from PostgreSQL's own COPY output, because the server's
C code formats values faster and more faithfully than any per-value Python path:

* CSV is COPY's CSV verbatim (RFC 4180 quoting: fields with comma, quote, CR or LF
  are double-quoted, quotes doubled; NULL is an empty unquoted field, an empty string
  is ``""``; lines end with LF). The worker adds a header line to every file.
* JSON Lines is ``row_to_json`` computed by the server, so numbers stay numbers
  (``numeric`` is written with all its digits, exact in the text), booleans stay
  booleans, NULL is ``null``, ``json``/``jsonb`` are nested values and ``timestamptz``
  is ISO 8601 in UTC (``2024-01-01T00:00:01+00:00``; the session runs with
  ``TimeZone=UTC``). Non-finite numerics and floats (NaN, Infinity) become strings.
  The worker escapes the line separators the server leaves raw
  (:func:`escape_line_separators`).
* Parquet is built from COPY's CSV parsed by Arrow's C++ CSV reader with an explicit
  schema derived from the column types (:func:`ferry.worker.parquet.arrow_type`).
"""

from __future__ import annotations

import csv
import dataclasses
import io

from ferry.worker.plan import Compression, Format
from ferry.worker.splitting import Chunk

# PostgreSQL type OIDs (pg_type.oid; stable across versions).
BOOL, BYTEA, INT8, INT2, INT4, TEXT, OID = 16, 17, 20, 21, 23, 25, 26
FLOAT4, FLOAT8 = 700, 701
DATE, TIME, TIMESTAMP, TIMESTAMPTZ = 1082, 1083, 1114, 1184
NUMERIC = 1700


@dataclasses.dataclass(frozen=True)
class ColumnInfo:
    """One output column as PostgreSQL describes it."""

    name: str
    type_oid: int
    precision: int | None = None  # numeric(p, s) only
    scale: int | None = None


_LINE_SEPARATORS = {
    b"\xc2": ((b"\xc2\x85", b"\\u0085"),),
    b"\xe2": ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029")),
}
"""U+0085, U+2028 and U+2029 in UTF-8 with their JSON escapes, by their lead byte."""


def escape_line_separators(chunk: Chunk) -> Chunk:
    """JSON Lines records with U+0085 (NEL), U+2028 and U+2029 escaped.

    ``row_to_json`` escapes only control characters below U+0020 and leaves these raw,
    which is valid JSON, but readers that split lines as Unicode does (Python's
    ``str.splitlines``; JavaScript's regexes, where they end a line) break a record in
    two at each. In JSON text they can only stand inside strings, and a session in UTF-8
    sends them as these bytes alone (UTF-8 never forms them across characters), so
    replacing the bytes with the escapes keeps every document equal and the record count
    unchanged.

    Every JSON Lines chunk passes here, so what most chunks pay is two ``memchr`` for the
    lead bytes 0xC2 and 0xE2: 60-120 us per MiB of a chunk fresh from the socket, at most
    2-3 % of the worker's CPU for JSON Lines (about 4 ms per MiB); exporting 500k rows of
    the benchmark table's shape, the worker's CPU did not change beyond run-to-run noise.
    Only a chunk holding a lead byte (text with a degree sign, a no-break space, curly
    quotes, dashes, ...) pays for the search of the whole sequence, 0.8-1 ms per MiB
    per separator (Python's search for a short needle is far slower than ``memchr``).
    """
    data = chunk.data
    for lead, separators in _LINE_SEPARATORS.items():
        if lead in data:
            for raw, escaped in separators:
                if raw in data:
                    data = data.replace(raw, escaped)
    return chunk if data is chunk.data else dataclasses.replace(chunk, data=data)


def csv_header(columns: list[ColumnInfo]) -> bytes:
    """The header line, quoted like the data (RFC 4180), LF-terminated like COPY."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([c.name for c in columns])
    return buf.getvalue().encode()


_EXTENSIONS: dict[Format, str] = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
_SUFFIXES: dict[Compression, str] = {"none": "", "gzip": ".gz", "zstd": ".zst"}


def file_extension(fmt: Format, compression: Compression) -> str:
    """``csv.gz``, ``jsonl.zst``, ... Parquet compresses inside the file (no suffix)."""
    if fmt == "parquet":
        return _EXTENSIONS[fmt]
    return _EXTENSIONS[fmt] + _SUFFIXES[compression]


def content_type(fmt: Format, compression: Compression) -> str:
    """MIME type stored with each object (compressed text is opaque bytes)."""
    if fmt == "parquet":
        return "application/vnd.apache.parquet"
    if compression == "gzip":
        return "application/gzip"
    if compression == "zstd":
        return "application/zstd"
    return "text/csv; charset=utf-8" if fmt == "csv" else "application/jsonl; charset=utf-8"
