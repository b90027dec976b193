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
  ``json`` values keep their text as stored, except that the line breaks between their
  tokens become spaces (:func:`join_quoted_records`); the worker also escapes the line
  separators the server leaves raw (:func:`escape_line_separators`).
* Parquet is built from COPY's CSV parsed by Arrow's C++ CSV reader with an explicit
  schema derived from the column types (:func:`ferry.worker.parquet.arrow_type`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable

from ferry.contract.plan import Compression, Format
from ferry.worker.errors import DataError
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


_LINE_BREAKS_TO_SPACES = bytes.maketrans(b"\r\n", b"  ")


def join_quoted_records(chunk: Chunk) -> Chunk:
    """JSON Lines records that COPY quoted, unquoted and on one line each.

    ``row_to_json`` writes a ``json`` value (a column, an element of a ``json[]``, a
    field of a composite, a cast to ``json``) as its stored text, and ``json`` keeps its
    input as written, line breaks included. COPY's CSV then wraps such a record in its
    quote character ``\\x01`` (:func:`ferry.worker.sql.copy_statement`). JSON text holds
    no raw control characters but whitespace: inside strings every one is escaped (the
    server rejects raw ones in ``json`` input and escapes them in the rest), so each CR
    or LF of a quoted record lies between two tokens, and a space there leaves the
    document equal, with its key order and duplicate keys (which a cast to ``jsonb``
    would sort and drop). Nor can a record hold a raw ``\\x01`` (COPY would double it),
    so splitting the chunk at the quotes leaves the quoted records at the odd places.

    What a chunk without such records pays is one ``memchr`` for the quote, about
    90 us per MiB of a chunk fresh from the socket (~1 % of the worker's CPU for JSON
    Lines), and only where a column's type can hold such a value (:func:`json_lines`).
    A chunk of quoted records costs ~4 ms per MiB (500k rows of the benchmark table with
    a pretty-printed ``json`` column: worker CPU 1.5 -> 2.3 s). Doing it in the SELECT
    (``translate(doc::text, ...)::json`` where a value has a line break) cost the
    server, JSON Lines' bottleneck, more for those rows (+1.1 CPU-s: it parses again).
    """
    data, quote = chunk.data, chunk.quote
    if quote not in data:
        return chunk
    parts: list[bytes | bytearray] = list(data.split(quote))
    # Outside the quotes (even places): unquoted records and the LF after each quoted
    # one, so empty only before the chunk's first record; an empty one further on, or an
    # even count, is a quote inside a record.
    if len(parts) % 2 == 0 or b"" in parts[2::2]:
        raise DataError("JSON Lines: a record holds a raw control character, which JSON text "
                        "cannot (a cast to json of a type whose output is not JSON?)")
    parts[1::2] = [part.translate(_LINE_BREAKS_TO_SPACES) for part in parts[1::2]]
    return dataclasses.replace(chunk, data=bytearray().join(parts))


ONE_LINE_TYPES = frozenset({
    BOOL, BYTEA, 18, 19, INT8, INT2, INT4, TEXT, OID, 142, 650, 869, FLOAT4, FLOAT8, 790,
    829, 1042, 1043, DATE, TIME, TIMESTAMP, TIMESTAMPTZ, 1186, 1266, 1560, 1562, NUMERIC,
    2950, 3802,
})
"""Built-in scalar types whose ``row_to_json`` text never holds a line break: the
numbers, booleans and date/times it formats itself, ``jsonb`` (its output has none) and
every other built-in scalar, which it writes as an escaped JSON string (char, name, xml,
cidr, inet, money, macaddr, bpchar, varchar, interval, timetz, bit, varbit, uuid). Not
``json`` (copied verbatim), arrays and composites (whose elements may be ``json``), nor
any type created in the database (a cast to ``json`` is copied verbatim too)."""


def _one_line_and_escaped(chunk: Chunk) -> Chunk:
    return escape_line_separators(join_quoted_records(chunk))


def json_lines(columns: list[ColumnInfo]) -> Callable[[Chunk], Chunk]:
    """What a JSON Lines file gets of each chunk of these columns: the line separators
    escaped (:func:`escape_line_separators`) and, unless every column is of one of the
    :data:`ONE_LINE_TYPES`, each record on one line (:func:`join_quoted_records`)."""
    if all(c.type_oid in ONE_LINE_TYPES for c in columns):
        return escape_line_separators
    return _one_line_and_escaped


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
