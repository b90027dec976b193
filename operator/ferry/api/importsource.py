"""Where an ImportJob reads its files: objects under an S3 prefix, or an ExportJob's run.

The S3 fields are an ExportJob output's (``S3Bucket``): one type, so a bucket written by
an export reads back with the same names, rules and defaults. ``fromExport`` names the
export instead of its bucket, so the import follows the export's output settings and
reads exactly the files a run's manifests commit.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from ferry.api.base import (
    FerryModel,
    ResourceName,
    cel,
    count_set,
    exactly_one_rule,
    require,
    validations,
)
from ferry.api.output import BUCKET_DOTS_RULE, S3Bucket
from ferry.api.status import RunId

MAX_GLOB_CHARACTERS = 256
GLOB_PATTERN = r"^[^\x00-\x1f]*$"
"""No control characters: S3 keys the worker lists never hold them (its plan refuses them)."""

MSG_IMPORT_SOURCE_ONE_OF = "set exactly one of s3 or fromExport"
MSG_GLOB_RELATIVE = (
    "glob is matched against keys relative to prefix, which never start with /: "
    "remove the leading /"
)
MSG_RUN_OF_EXPORT = (
    "fromExport.run must be a run of fromExport.name: <name>.<n>, e.g. contact-history.42"
)


class S3Source(S3Bucket):
    """Objects in an S3-compatible bucket: every object under prefix whose key, relative
    to prefix, matches glob. Compression (gzip .gz, zstd .zst) is read from the name.
    Folder markers and objects in folders whose name starts with _ (an export's
    _manifests/) are never data."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            BUCKET_DOTS_RULE,
            cel("!has(self.glob) || !self.glob.startsWith('/')", MSG_GLOB_RELATIVE,
                field_path=".glob"),
        )
    )

    glob: Annotated[str, Field(min_length=1, max_length=MAX_GLOB_CHARACTERS,
                               pattern=GLOB_PATTERN)] | None = Field(
        default=None,
        description="Shell-style pattern (fnmatch: *, ?, [seq]; * also matches /) matched "
        'against each key relative to prefix, e.g. "*.csv.gz". Absent: every object under '
        "prefix.",
    )

    @model_validator(mode="after")
    def _check_glob(self) -> S3Source:
        require(self.glob is None or not self.glob.startswith("/"), MSG_GLOB_RELATIVE)
        return self


class FromExport(FerryModel):
    """The files of one ExportJob run: exactly those its batch manifests commit, nothing
    else in its folder. Bucket, endpoint and credentials are the ExportJob's
    spec.output.s3."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("!has(self.run) || self.run.startsWith(self.name + '.')", MSG_RUN_OF_EXPORT,
                field_path=".run")
        )
    )

    name: ResourceName = Field(description="An ExportJob in the same namespace.")
    run: RunId | None = Field(
        default=None,
        description="The run whose files to load, <name>.<n> (e.g. contact-history.42). "
        "Absent: the export's latest Succeeded run when the import run starts.",
    )

    @model_validator(mode="after")
    def _check_run(self) -> FromExport:
        require(self.run is None or self.run.startswith(f"{self.name}."), MSG_RUN_OF_EXPORT)
        return self


class ImportSource(FerryModel):
    """The files to import: set exactly one of s3 or fromExport."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(exactly_one_rule(["s3", "fromExport"]), MSG_IMPORT_SOURCE_ONE_OF)
        )
    )

    s3: S3Source | None = Field(
        default=None,
        description="Files under an S3 prefix (a landing folder). With spec.newFilesOnly "
        "each is loaded once, ever.",
    )
    from_export: FromExport | None = Field(
        default=None, description="The files of an ExportJob's run in this namespace."
    )

    @model_validator(mode="after")
    def _check(self) -> ImportSource:
        require(count_set(self, ["s3", "from_export"]) == 1, MSG_IMPORT_SOURCE_ONE_OF)
        return self
