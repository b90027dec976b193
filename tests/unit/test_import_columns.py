"""The import's pure parts: column matching, CSV records and fields, COPY text values."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from ferry.contract.importplan import ColumnMapping, CsvOptions, ImportDestination, Table
from ferry.worker.errors import ConfigError
from ferry.worker.importer.listing import SourceFile
from ferry.worker.importer.readers import CsvReader, split_records, text_value
from ferry.worker.importer.table import Column, Match, TableInfo, match_columns

INFO = TableInfo("crm", "contacts", 1, (
    Column("id", not_null=True, has_default=True, generated=False),
    Column("email", not_null=True, has_default=False, generated=False),
    Column("note", not_null=False, has_default=False, generated=False),
    Column("search", not_null=False, has_default=False, generated=True),
))
DEST = ImportDestination(Table("contacts", "crm"))


def match(columns: list[str], dest: ImportDestination = DEST, *,
          positional: bool = False) -> Match:
    return match_columns("in/a.csv", columns, INFO, dest, positional=positional)


def test_by_name_in_any_order() -> None:
    assert match(["note", "email", "id"]) == Match(("note", "email", "id"), None)
    assert match(["email", "note"]) == Match(("email", "note"), None)  # id has a default


@pytest.mark.parametrize(("columns", "dest", "says"), [
    (["email", "note", "x", "y"], DEST, "in/a.csv: has columns table crm.contacts has not: x, y"),
    (["email"], DEST, "lacks columns of table crm.contacts that have no default: note"),
    (["note"], ImportDestination(Table("contacts"), missing_columns="Default"),
     "lacks NOT NULL columns of table crm.contacts without a default: email"),
    (["email", "email"], DEST, "column 'email' appears twice"),
    (["email", "note", "search"], DEST, "'search' of table crm.contacts is generated"),
    (["a", "b"], ImportDestination(Table("contacts"), unknown_columns="Ignore"), "none of"),
])
def test_refusals_name_the_file_and_columns(columns: list[str], dest: ImportDestination,
                                            says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        match(columns, dest)
    assert says in caught.value.reason and "in/a.csv" in caught.value.reason


def test_ignored_and_mapped_columns_pick_fields() -> None:
    ignore = ImportDestination(Table("contacts"), unknown_columns="Ignore")
    assert match(["x", "email", "note"], ignore) == Match(("email", "note"), [1, 2])
    mapped = ImportDestination(Table("contacts"), columns=(
        ColumnMapping("email", "E-Mail"), ColumnMapping("note", "Remark")))
    assert match(["Remark", "junk", "E-Mail"], mapped) == Match(("note", "email"), [0, 2])
    with pytest.raises(ConfigError, match="has no column 'E-Mail'"):
        match(["Remark"], mapped)
    assert match(["1", "2", "3"], positional=True) == Match(("id", "email", "note"), None)
    with pytest.raises(ConfigError, match="has 2 fields"):
        match(["1", "2"], positional=True)


def test_csv_records_keep_quoted_newlines_and_fields_keep_quotes() -> None:
    blocks = iter([b'1,"a\n', b'b",x\n2,,""\n3,c'])
    assert list(split_records(blocks, b'"')) == [
        (1, b'1,"a\nb",x\n'), (3, b'2,,""\n'), (4, b"3,c\n")]
    reader = CsvReader(None, None, "bucket", SourceFile("k", 1, "e"),  # type: ignore[arg-type]
                       CsvOptions(delimiter=";"))
    assert reader._fields(b'1;"a;""b""";;""\r\n') == [b"1", b'"a;""b"""', b"", b'""']
    assert reader._fields(b'1;"a"x"\n') is None


def test_text_values_are_copy_text() -> None:
    assert [text_value(v) for v in (None, True, False, 3, 1.5, Decimal("1.10"))] == [
        "\\N", "t", "f", "3", "1.5", "1.10"]
    assert text_value("a\tb\nc\\d\r") == "a\\tb\\nc\\\\d\\r"
    assert text_value({"k": ["v\t"]}) == '{"k": ["v\\\\t"]}'
    assert text_value(b"\x00\xff") == "\\\\x00ff"
    assert text_value(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == (
        "2024-01-02T03:04:05+00:00")
    assert text_value(dt.timedelta(minutes=1)) == "60.0 seconds"
