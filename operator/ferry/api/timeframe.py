"""Which slice of the source data a run exports: the Timeframe type.

Every kind except ``all`` selects rows by ``spec.source.timestampColumn`` over a
half-open window [from, to); the controller resolves the window of each run and
records it in the run's status (``window``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from ferry.api.base import FerryModel, cel, count_set, exactly_one_rule, require, validations
from ferry.api.units import DURATION_PATTERN, parse_duration

TIMEFRAME_KINDS = ["all", "fixed", "relative", "incremental"]
MSG_TIMEFRAME_ONE_KIND = "set exactly one of all, fixed, relative or incremental"
MSG_FIXED_ORDER = "end must be later than start: the window is [start, end)"
MSG_RELATIVE_POSITIVE = "last must be greater than zero, e.g. 4h, 90m or 1d"


class AllTimeframe(FerryModel):
    """Every row of the source, whatever its time (an empty object: all: {})."""


class FixedTimeframe(FerryModel):
    """Rows with start <= timestampColumn < end, the same for every run."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.start < self.end", MSG_FIXED_ORDER, field_path=".end")
        )
    )

    start: AwareDatetime = Field(
        description="Inclusive start (RFC 3339, e.g. 2024-01-01T00:00:00Z)."
    )
    end: AwareDatetime = Field(description="Exclusive end (RFC 3339); must be later than start.")

    @model_validator(mode="after")
    def _check(self) -> FixedTimeframe:
        require(self.start < self.end, MSG_FIXED_ORDER)
        return self


class RelativeTimeframe(FerryModel):
    """Rows in the last period before the run's scheduled time (its slot).

    With a daily schedule at 02:00 and last: 24h, the 02:00 run exports
    [yesterday 02:00, today 02:00). A manual run uses its start time as the slot.
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("!self.last.matches('^(0+[wdhms])+$')", MSG_RELATIVE_POSITIVE, field_path=".last")
        )
    )

    last: Annotated[str, Field(min_length=2, max_length=40, pattern=DURATION_PATTERN)] = Field(
        description="Length of the window, a duration with units w, d, h, m, s: 4h, 90m, 1d12h, 2w."
    )

    @model_validator(mode="after")
    def _check(self) -> RelativeTimeframe:
        require(parse_duration(self.last).total_seconds() > 0, MSG_RELATIVE_POSITIVE)
        return self


class IncrementalTimeframe(FerryModel):
    """Rows added since the last successful run: no gaps, no overlaps.

    Each run exports [previous successful run's window end, slot). Failed or
    canceled runs do not advance the window, so the next run picks their rows up.
    """

    initial_start: AwareDatetime | None = Field(
        default=None,
        description="Start of the first run's window (RFC 3339). Absent: the first run "
        "exports everything before its slot.",
    )


class Timeframe(FerryModel):
    """Which rows a run exports. Set exactly one of all, fixed, relative or incremental.

    fixed, relative and incremental need spec.source.timestampColumn.
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(exactly_one_rule(TIMEFRAME_KINDS), MSG_TIMEFRAME_ONE_KIND)
        )
    )

    all: AllTimeframe | None = None
    fixed: FixedTimeframe | None = None
    relative: RelativeTimeframe | None = None
    incremental: IncrementalTimeframe | None = None

    @model_validator(mode="after")
    def _check(self) -> Timeframe:
        require(count_set(self, TIMEFRAME_KINDS) == 1, MSG_TIMEFRAME_ONE_KIND)
        return self

    @property
    def kind(self) -> str:
        """The name of the kind that is set: all, fixed, relative or incremental."""
        return next(k for k in TIMEFRAME_KINDS if getattr(self, k) is not None)


def all_data() -> Timeframe:
    """The default timeframe: all data."""
    return Timeframe(all=AllTimeframe())
