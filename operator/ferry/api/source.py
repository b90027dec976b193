"""Where an ExportJob reads from: a PostgreSQL table or query, plus row filters.

Column and table names are identifiers (checked by pattern, quoted by the worker
exactly as written, so case matters); filter values are data, always sent as bound
query parameters. Nothing in a filter is ever spliced into SQL text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from ferry.api.base import (
    FerryModel,
    cel,
    count_set,
    exactly_one_rule,
    require,
    validations,
)
from ferry.api.common import SecretKeyRef

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
"""Each part at most 63 bytes, PostgreSQL's limit, which the worker enforces too."""

Identifier = Annotated[str, Field(min_length=1, max_length=63, pattern=IDENTIFIER_PATTERN)]
FilterValue = Annotated[str, Field(max_length=1024)]

FILTER_OPS = ["in_", "not_in", "equals", "is_null"]
MSG_FILTER_ONE_OP = "set exactly one of in, notIn, equals or isNull in each filter"
MSG_SOURCE_ONE_OF = "set exactly one of table or query"


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
    in_: Annotated[list[FilterValue], Field(min_length=1, max_length=100)] | None = Field(
        default=None,
        alias="in",
        description="Keep rows whose column equals one of these values (1-100 values).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    not_in: Annotated[list[FilterValue], Field(min_length=1, max_length=100)] | None = Field(
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
    table: Annotated[str, Field(min_length=1, max_length=127, pattern=TABLE_PATTERN)] | None = (
        Field(default=None, description="Table or view to export, optionally schema-qualified.")
    )
    query: Annotated[str, Field(min_length=1, max_length=16384)] | None = Field(
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
    columns: Annotated[list[Identifier], Field(max_length=256)] | None = Field(
        default=None,
        description="Columns to export, in this order. Absent: all columns.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    filters: Annotated[list[Filter], Field(max_length=32)] | None = Field(
        default=None, description="Row filters, all of which must hold (AND), at most 32."
    )

    @model_validator(mode="after")
    def _check(self) -> Source:
        require(count_set(self, ["table", "query"]) == 1, MSG_SOURCE_ONE_OF)
        return self
