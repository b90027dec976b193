"""PostgreSQL-to-Arrow type mapping, CSV headers, names."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ferry.worker import formats
from ferry.worker.formats import ColumnInfo


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
    assert formats.arrow_type(column) == expected


def test_csv_header_quotes_like_rfc4180() -> None:
    cols = [ColumnInfo(n, formats.TEXT) for n in ["id", "a,b", 'say "hi"', "multi\nline"]]
    assert formats.csv_header(cols) == b'id,"a,b","say ""hi""","multi\nline"\n'


def test_extensions_and_content_types() -> None:
    assert formats.file_extension("csv", "gzip") == "csv.gz"
    assert formats.file_extension("jsonl", "zstd") == "jsonl.zst"
    assert formats.file_extension("parquet", "zstd") == "parquet"
    assert formats.content_type("parquet", "none") == "application/vnd.apache.parquet"
    assert formats.content_type("csv", "none").startswith("text/csv")
