"""Where an ImportJob writes: a PostgreSQL table, and how the files' columns meet it.

The connection and the table name are an ExportJob source's types (``SecretKeyRef``,
``TableName``): the same identifier rules, quoted by the worker exactly as written, so
case matters. Column names from the files are data: they are matched against the
table's columns, never spliced into SQL. What happens to a column on one side only is
a field whose default refuses, naming the columns, rather than guessing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from ferry.api.base import FerryModel, cel, validations
from ferry.api.common import SecretKeyRef
from ferry.api.source import Identifier, SourceType, TableName
from ferry.contract.limits import MAX_SELECTED_COLUMNS

MAX_FIELD_NAME_CHARACTERS = 256

MSG_FROM_UNIQUE = (
    "each file column fills one table column: spec.destination.columns[].from (name when "
    "from is absent) must be unique"
)
FROM_UNIQUE_RULE = (
    "!has(self.columns) || self.columns.all(c, self.columns.exists_one(d, "
    "(has(d.from) ? d.from : d.name) == (has(c.from) ? c.from : c.name)))"
)


class UnknownColumns(StrEnum):
    """What a run does with a file column no table column has (without an explicit
    mapping; with one, unmapped file columns are always left out)."""

    REFUSE = "Refuse"
    """Refuse the file, naming the columns: its batch fails as a configuration error."""
    IGNORE = "Ignore"
    """Leave those columns out."""


class MissingColumns(StrEnum):
    """What a run does with a table column the file does not give and the database
    cannot fill (no default, not serial, identity or generated)."""

    REFUSE = "Refuse"
    """Refuse the file, naming the columns: its batch fails as a configuration error."""
    DEFAULT = "Default"
    """Load NULL into it (a NOT NULL column still refuses the file)."""


class ColumnMapping(FerryModel):
    """One table column and the file column (CSV header, JSON field, Parquet column)
    that fills it."""

    name: Identifier = Field(description="Column of the destination table (an identifier).")
    from_: Annotated[str, Field(min_length=1, max_length=MAX_FIELD_NAME_CHARACTERS)] | None = (
        Field(
            default=None,
            alias="from",
            description="The file column: a CSV header, JSON key or Parquet field name, "
            "matched exactly (case matters); with csv.header false, the field's position "
            'counted from 1 ("1"). Absent: the same as name.',
        )
    )

    @property
    def source_name(self) -> str:
        """The file column this table column is read from."""
        return self.from_ or self.name


def _check_unique_names(columns: list[ColumnMapping]) -> list[ColumnMapping]:
    """The API server refuses duplicates in a list-type map, and the CEL rule a file
    column read twice (which the worker refuses); the same rules in Python."""
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate column {duplicates[0]!r}")
    sources = [c.source_name for c in columns]
    if len(set(sources)) != len(sources):
        raise ValueError(MSG_FROM_UNIQUE)
    return columns


ColumnMappings = Annotated[
    list[ColumnMapping],
    Field(min_length=1, max_length=MAX_SELECTED_COLUMNS),
    AfterValidator(_check_unique_names),
]


class Destination(FerryModel):
    """The PostgreSQL table the rows are loaded into."""

    model_config = ConfigDict(
        json_schema_extra=validations(cel(FROM_UNIQUE_RULE, MSG_FROM_UNIQUE, field_path=".columns"))
    )

    type: SourceType = Field(description="Kind of database. Only postgres for now.")
    connection_secret_ref: SecretKeyRef = Field(
        description="Secret key holding a libpq connection URI "
        "(postgresql://user:password@host:5432/db?sslmode=require). Use a role with only "
        "the privileges the mode needs."
    )
    table: TableName = Field(
        description="Table to load, optionally schema-qualified (schema.table); each part "
        "at most 63 characters. It must exist: an import never creates or alters a table.",
    )
    columns: ColumnMappings | None = Field(
        default=None,
        description="Explicit mapping: only these table columns are loaded, each from its "
        "file column (1-256, names unique). Absent: file columns map to table columns of "
        "the same name (CSV by header, JSON Lines by key, Parquet by field).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    unknown_columns: UnknownColumns = Field(
        default=UnknownColumns.REFUSE,
        description="A file column no table column has. Refuse (default): refuse the file, "
        "naming the columns. Ignore: leave them out. With columns, unmapped file columns "
        "are always left out.",
    )
    missing_columns: MissingColumns = Field(
        default=MissingColumns.REFUSE,
        description="A table column the file does not give, with no default (columns with "
        "one, serial, identity and generated columns are filled by the database). Refuse "
        "(default): refuse the file, naming the columns. Default: load NULL (a NOT NULL "
        "column still refuses the file). With Merge, updated rows keep their value.",
    )
