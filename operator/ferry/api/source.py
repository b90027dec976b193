"""Where an ExportJob reads from: a PostgreSQL table or query, plus row filters.

Column and table names are identifiers (checked by pattern, quoted by the worker
exactly as written, so case matters); filter values are data, always sent as bound
query parameters. Nothing in a filter is ever spliced into SQL text.

PostgreSQL identifiers are at most 63 *bytes* (NAMEDATALEN - 1; longer ones are
silently truncated by the server, so a 64-byte name would address another column),
and the worker refuses longer ones. The identifier patterns admit ASCII letters,
digits and underscores only, so a character is a byte and the schema's character
limits (``maxLength``, and a CEL rule per part of a schema-qualified table) are
exactly the byte limit: no byte-counting rule is needed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator

from ferry.api.base import (
    FerryModel,
    cel,
    count_set,
    exactly_one_rule,
    require,
    validations,
)
from ferry.api.common import SecretKeyRef
from ferry.contract.limits import (
    MAX_FILTER_VALUES,
    MAX_FILTERS,
    MAX_IDENTIFIER_BYTES,
    MAX_QUERY_CHARACTERS,
    MAX_SELECTED_COLUMNS,
)

IDENTIFIER_MAX_BYTES = MAX_IDENTIFIER_BYTES
"""PostgreSQL's identifier limit (NAMEDATALEN - 1), the contract's, which the worker
enforces too."""
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
TABLE_MAX_LENGTH = 2 * IDENTIFIER_MAX_BYTES + 1
TABLE_PARTS_RULE = (
    f"self.matches('^[^.]{{1,{IDENTIFIER_MAX_BYTES}}}([.][^.]{{1,{IDENTIFIER_MAX_BYTES}}})?$')"
)
MSG_TABLE_PART_TOO_LONG = (
    f"schema and table name may each have at most {IDENTIFIER_MAX_BYTES} characters "
    "(PostgreSQL's identifier limit)"
)


def _check_table_parts(value: str) -> str:
    """The per-part limit as its own rule, so a too-long name is reported as too long
    (with the limit) rather than as a pattern mismatch the user has to decode."""
    require(
        all(len(part) <= IDENTIFIER_MAX_BYTES for part in value.split(".")),
        MSG_TABLE_PART_TOO_LONG,
    )
    return value


def _check_unique(columns: list[str]) -> list[str]:
    """The API server refuses duplicates in a list-type set; the same rule in Python keeps
    a spec the webhook or the controller accepts one the worker accepts too."""
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise ValueError(f"duplicate column {duplicates[0]!r}")
    return columns


Identifier = Annotated[
    str, Field(min_length=1, max_length=IDENTIFIER_MAX_BYTES, pattern=IDENTIFIER_PATTERN)
]
ColumnList = Annotated[
    list[Identifier], Field(max_length=MAX_SELECTED_COLUMNS), AfterValidator(_check_unique)
]
TableName = Annotated[
    str,
    Field(min_length=1, max_length=TABLE_MAX_LENGTH, pattern=TABLE_PATTERN),
    AfterValidator(_check_table_parts),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": TABLE_MAX_LENGTH,
            "pattern": TABLE_PATTERN,
            **validations(cel(TABLE_PARTS_RULE, MSG_TABLE_PART_TOO_LONG)),
        }
    ),
]
FilterValue = Annotated[str, Field(max_length=1024)]

FILTER_OPS = ["in_", "not_in", "equals", "is_null"]
MSG_FILTER_ONE_OP = "set exactly one of in, notIn, equals or isNull in each filter"
MSG_SOURCE_ONE_OF = "set exactly one of table or query"


FilterValues = Annotated[list[FilterValue], Field(min_length=1, max_length=MAX_FILTER_VALUES)]


class SourceType(StrEnum):
    """Kinds of data source."""

    POSTGRES = "postgres"


class Filter(FerryModel):
    """A condition on one column; all filters of a source must hold (AND).

    Example: {column: media_type, in: [chat, email]}. Values are compared as text
    parameters cast to the column's type by PostgreSQL.
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            # CEL reserves "in"; a reserved word is escaped as __in__ in CEL field access.
            cel(
                exactly_one_rule(["__in__", "notIn", "equals", "isNull"]),
                MSG_FILTER_ONE_OP,
            )
        )
    )

    column: Identifier = Field(description="Column to filter on (an identifier, e.g. media_type).")
    in_: FilterValues | None = Field(
        default=None,
        alias="in",
        description="Keep rows whose column equals one of these values (1-100 values).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    not_in: FilterValues | None = Field(
        default=None,
        description="Keep rows whose column equals none of these values (NULLs are dropped).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    equals: FilterValue | None = Field(
        default=None, description="Keep rows whose column equals this value."
    )
    is_null: bool | None = Field(
        default=None, description="true: keep rows where the column is NULL; false: NOT NULL."
    )

    @model_validator(mode="after")
    def _check(self) -> Filter:
        require(count_set(self, FILTER_OPS) == 1, MSG_FILTER_ONE_OP)
        return self


class Source(FerryModel):
    """The data to export: a table or a read-only query on a PostgreSQL database."""

    model_config = ConfigDict(
        json_schema_extra=validations(cel(exactly_one_rule(["table", "query"]), MSG_SOURCE_ONE_OF))
    )

    type: SourceType = Field(description="Kind of database. Only postgres for now.")
    connection_secret_ref: SecretKeyRef = Field(
        description="Secret key holding a libpq connection URI "
        "(postgresql://user:password@host:5432/db?sslmode=require). Use a read-only role."
    )
    table: TableName | None = Field(
        default=None,
        description="Table or view to export, optionally schema-qualified (schema.table); "
        "each part at most 63 characters.",
    )
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARACTERS)] | None = Field(
        default=None,
        description="A single SELECT statement to export instead of a table. The worker wraps "
        "it as a subquery (filters and the time window apply to its result columns) and runs "
        "it in a read-only transaction.",
    )
    timestamp_column: Identifier | None = Field(
        default=None,
        description="Column that places a row in time (timestamptz preferred); required by "
        "fixed, relative and incremental timeframes.",
    )
    key_column: Identifier | None = Field(
        default=None,
        description="Unique, indexed column used to split work into batches (rowsPerBatch) "
        "and to read in a stable order.",
    )
    columns: ColumnList | None = Field(
        default=None,
        description="Columns to export, in this order. Absent: all columns.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    filters: Annotated[list[Filter], Field(max_length=MAX_FILTERS)] | None = Field(
        default=None, description="Row filters, all of which must hold (AND), at most 32."
    )

    @model_validator(mode="after")
    def _check(self) -> Source:
        require(count_set(self, ["table", "query"]) == 1, MSG_SOURCE_ONE_OF)
        return self
