"""PostgreSQL-to-Arrow type mapping, CSV headers, names."""

from __future__ import annotations

import json
from decimal import Decimal

import pyarrow as pa
import pytest

from ferry.worker import formats, parquet
from ferry.worker.errors import DataError
from ferry.worker.formats import ColumnInfo
from ferry.worker.splitting import Chunk


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (ColumnInfo("a", formats.BOOL), pa.bool_()),
        (ColumnInfo("a", formats.INT2), pa.int16()),
        (ColumnInfo("a", formats.INT4), pa.int32()),
        (ColumnInfo("a", formats.INT8), pa.int64()),
        (ColumnInfo("a", formats.FLOAT8), pa.float64()),
        (ColumnInfo("a", formats.DATE), pa.date32()),
        (ColumnInfo("a", formats.TIMESTAMP), pa.timestamp("us")),
        (ColumnInfo("a", formats.TIMESTAMPTZ), pa.timestamp("us", tz="UTC")),
        (ColumnInfo("a", formats.NUMERIC, 12, 2), pa.decimal128(12, 2)),
        (ColumnInfo("a", formats.NUMERIC, 38, 38), pa.decimal128(38, 38)),
        (ColumnInfo("a", formats.NUMERIC, 39, 0), pa.decimal256(39, 0)),
        (ColumnInfo("a", formats.NUMERIC, 50, 10), pa.decimal256(50, 10)),
        (ColumnInfo("a", formats.NUMERIC, 76, 76), pa.decimal256(76, 76)),
        (ColumnInfo("a", formats.NUMERIC, 77, 2), pa.string()),  # beyond Arrow's decimals
        (ColumnInfo("a", formats.NUMERIC, 1000, 0), pa.string()),
        (ColumnInfo("a", formats.NUMERIC, 5, -2), pa.decimal128(7, 0)),  # to hundreds
        (ColumnInfo("a", formats.NUMERIC, 2, 5), pa.decimal128(5, 5)),  # 0.000dd
        (ColumnInfo("a", formats.NUMERIC, 70, -10), pa.string()),
        (ColumnInfo("a", formats.NUMERIC), pa.string()),  # unconstrained: exact text
        (ColumnInfo("a", formats.TEXT), pa.string()),
        (ColumnInfo("a", 3802), pa.string()),  # jsonb
        (ColumnInfo("a", 2950), pa.string()),  # uuid
    ],
)
def test_arrow_type(column: ColumnInfo, expected: pa.DataType) -> None:
    assert parquet.arrow_type(column) == expected


def test_csv_header_quotes_like_rfc4180() -> None:
    cols = [ColumnInfo(n, formats.TEXT) for n in ["id", "a,b", 'say "hi"', "multi\nline"]]
    assert formats.csv_header(cols) == b'id,"a,b","say ""hi""","multi\nline"\n'


def test_extensions_and_content_types() -> None:
    assert formats.file_extension("csv", "gzip") == "csv.gz"
    assert formats.file_extension("jsonl", "zstd") == "jsonl.zst"
    assert formats.file_extension("parquet", "zstd") == "parquet"
    assert formats.content_type("parquet", "none") == "application/vnd.apache.parquet"
    assert formats.content_type("csv", "none").startswith("text/csv")


@pytest.mark.parametrize("value", ["plain", "two\nlines", "carriage\rreturn", "crlf\r\nend"])
def test_csv_to_arrow_keeps_line_breaks_in_values(value: str) -> None:
    """Chunks without line breaks in values take Arrow's faster parser; the others must
    still come through exactly (a bare CR counts: Arrow takes it for a line end). The
    chunk spans several of Arrow's 1 MiB blocks, where a wrong choice breaks parsing."""
    convert = parquet.CsvToArrow([ColumnInfo("id", formats.INT4), ColumnInfo("s", formats.TEXT)])
    quoted = '"' + value + '"' if any(c in value for c in "\r\n") else value
    rows = 150_000
    chunk = Chunk.of([f"{i},{quoted}\n".encode() for i in range(rows)] + [b"-1,\n", b'-2,""\n'])
    table = convert.table(chunk)
    assert table.num_rows == rows + 2
    assert table.slice(0, 2).to_pylist() == [{"id": 0, "s": value}, {"id": 1, "s": value}]
    assert set(table.column("s").to_pylist()[:rows]) == {value}
    assert table.slice(rows).to_pylist() == [{"id": -1, "s": None}, {"id": -2, "s": ""}]


def test_a_value_parquet_cannot_hold_names_the_column_and_the_record() -> None:
    """Arrow says "In CSV column #1: Row #2"; the user reads the column's SQL name, the
    record's number within the batch (across chunks) and what to do."""
    convert = parquet.CsvToArrow([ColumnInfo("id", formats.INT4),
                                  ColumnInfo('total "net"', formats.NUMERIC, 10, 2)])
    convert.table(Chunk.of([b"1,1.50\n", b"2,\n", b"3,-0.25\n"]))
    with pytest.raises(DataError) as failure:
        convert.table(Chunk.of([b"4,2.00\n", b"5,NaN\n"]))
    assert failure.value.reason == (
        'Parquet: column "total ""net""" (decimal128(10, 2)) cannot hold the value of record 5 '
        "of this batch: The string 'NaN' is not a valid decimal128 number. Convert the column "
        'in a query source (e.g. SELECT "total ""net"""::text, or NULLIF or CASE to drop such '
        "values) or export as csv or jsonl")


def test_decimal256_columns_are_cast_from_their_text_and_name_a_bad_record() -> None:
    """Arrow's CSV reader cannot convert to decimal256: such columns are read as text and
    cast, exactly, and a value the cast refuses is reported like the reader's own errors
    (column, record within the batch across chunks, Arrow's words)."""
    convert = parquet.CsvToArrow([ColumnInfo("id", formats.INT4),
                                  ColumnInfo("big", formats.NUMERIC, 50, 4),
                                  ColumnInfo("small", formats.NUMERIC, 10, 2)])
    wide = "12345678901234567890123456789012345678901234.5678"
    rows = [f"{i},-{i}.0001,{i}.25\n".encode() for i in range(150_000)]  # several blocks
    table = convert.table(Chunk.of([f"-1,{wide},\n".encode(), *rows]))
    assert table.schema == convert.schema
    assert table.slice(0, 2).to_pylist() == [
        {"id": -1, "big": Decimal(wide), "small": None},
        {"id": 0, "big": Decimal("-0.0001"), "small": Decimal("0.25")}]
    assert table.column("big")[150_000].as_py() == Decimal("-149999.0001")
    bad = [f"{i},{i}.0000,1.00\n".encode() for i in range(1000)]
    bad[700] = b"700,NaN,1.00\n"
    bad[900] = b"900,NaN,1.00\n"
    with pytest.raises(DataError) as failure:
        convert.table(Chunk.of(bad))
    assert failure.value.reason == (
        'Parquet: column "big" (decimal256(50, 4)) cannot hold the value of record 150702 '
        "of this batch: The string 'NaN' is not a valid decimal256 number. Convert the "
        'column in a query source (e.g. SELECT "big"::text, or NULLIF or CASE to drop such '
        "values) or export as csv or jsonl")


def test_a_malformed_chunk_is_a_data_error_in_arrows_words() -> None:
    """A chunk Arrow cannot even split into columns names no column (it would be a bug in
    the worker, not in the data), but is still a data error with Arrow's reason."""
    convert = parquet.CsvToArrow([ColumnInfo("id", formats.INT4), ColumnInfo("s", formats.TEXT)])
    with pytest.raises(DataError, match=r"^Parquet conversion: CSV parse error: .*Expected 2 "):
        convert.table(Chunk.of([b"1\n"]))


def test_json_lines_escape_the_line_separators_unicode_readers_split_at() -> None:
    """Raw U+2028, U+2029 and U+0085 (as row_to_json leaves them) would make
    ``str.splitlines`` see eight lines here; escaped, it sees the three documents."""
    docs = [{"s": "a\u2028b"}, {"s": "c\u2029d\u0085e", "doc": {"k": ["\u2028\u2028"]}},
            {"s": "no-break\u00a0space, 20°C, “quoted” – dash"}]
    chunk = Chunk.of([json.dumps(d, ensure_ascii=False).encode() + b"\n" for d in docs], b"\x01")
    escaped = formats.escape_line_separators(chunk)
    lines = escaped.data.decode().splitlines()
    assert [json.loads(line) for line in lines] == docs
    assert (escaped.records, len(escaped.ends)) == (3, 3)
    assert lines[1] == r'{"s": "c\u2029d\u0085e", "doc": {"k": ["\u2028\u2028"]}}'


def test_json_lines_without_line_separators_pass_as_they_are() -> None:
    chunk = Chunk.of([b'{"s": "plain \xe2\x80\x9cquoted\xe2\x80\x9d \xc2\xb0"}\n'], b"\x01")
    assert formats.escape_line_separators(chunk) is chunk


def test_json_lines_records_copy_quoted_for_their_line_breaks_are_one_line_each() -> None:
    """A ``json`` value keeps its line breaks, so COPY wraps its record in the quote
    \\x01; the records come out unwrapped, one line each, the line breaks (whitespace
    between tokens) as spaces and the documents equal, key order and duplicates kept."""
    records = [b'{"id":1,"doc":{"b": 1}}\n',
               b'\x01{"id":2,"doc":{"b":\n 1,\r\n "a": [\r2], "b": "x\\ny"}}\x01\n',
               b'{"id":3,"doc":null}\n',
               b'\x01{"id":4,"doc":\n[1,\n2]}\x01\n', b'\x01{"id":5,"doc":\r\n3}\x01\n']
    joined = formats.join_quoted_records(Chunk.of(records, b"\x01"))
    lines = joined.data.decode().splitlines()
    assert lines == ['{"id":1,"doc":{"b": 1}}',
                     '{"id":2,"doc":{"b":  1,   "a": [ 2], "b": "x\\ny"}}',
                     '{"id":3,"doc":null}', '{"id":4,"doc": [1, 2]}', '{"id":5,"doc":  3}']
    assert json.loads(lines[1], object_pairs_hook=list) == [
        ("id", 2), ("doc", [("b", 1), ("a", [2]), ("b", "x\ny")])]
    assert (joined.records, len(joined.ends)) == (5, 5)
    plain = Chunk.of([b'{"id":1}\n', b'{"id":2}\n'], b"\x01")
    assert formats.join_quoted_records(plain) is plain
    to_lines = formats.json_lines([ColumnInfo("s", formats.TEXT), ColumnInfo("t", 114)])
    assert to_lines(Chunk.of([b'\x01{"s":"\xe2\x80\xa8",\n"t":1}\x01\n'], b"\x01")
                    ).data == b'{"s":"\\u2028", "t":1}\n'


@pytest.mark.parametrize(("type_oids", "joins"), [
    ([formats.INT4, formats.TEXT, formats.NUMERIC, formats.TIMESTAMPTZ, 3802], False),
    ([formats.INT4, 114], True),  # json: its text verbatim
    ([199], True),  # json[]
    ([1007], True),  # int4[]: arrays and composites are not looked into
    ([16500], True),  # a type of the database's own (an enum, a composite, hstore, ...)
])
def test_only_columns_that_can_bring_a_line_break_pay_for_the_search(
        type_oids: list[int], joins: bool) -> None:
    """The common case (built-in scalars, jsonb) skips the search for quoted records."""
    to_lines = formats.json_lines([ColumnInfo(f"c{i}", oid) for i, oid in enumerate(type_oids)])
    assert (to_lines is not formats.escape_line_separators) == joins


def test_a_json_lines_record_with_a_raw_quote_character_is_a_data_error() -> None:
    """JSON text cannot hold a raw \\x01 (COPY would double it in a quoted record):
    rather than drop it, the batch fails."""
    with pytest.raises(DataError, match="raw control character"):
        formats.join_quoted_records(Chunk.of([b'\x01{"s":"a\x01\x01b",\n"t":1}\x01\n'], b"\x01"))
