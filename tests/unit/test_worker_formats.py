"""PostgreSQL-to-Arrow type mapping, CSV headers, names."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ferry.worker import formats, parquet
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
        (ColumnInfo("a", formats.NUMERIC, 50, 10), pa.decimal256(50, 10)),
        (ColumnInfo("a", formats.NUMERIC), pa.string()),
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
