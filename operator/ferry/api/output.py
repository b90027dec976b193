"""Where and how an ExportJob writes: an S3-compatible bucket or an SFTP directory,
file format, compression and file splitting. The bucket type is shared with ImportJob
sources."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator

from ferry.api.base import (
    FerryModel,
    SecretDataKey,
    SecretName,
    cel,
    exactly_one_rule,
    require,
    validations,
)
from ferry.api.units import QUANTITY_PATTERN, parse_quantity
from ferry.contract.limits import MAX_PREFIX_CHARACTERS, MIN_FILE_SPLIT_BYTES
from ferry.contract.plan import (
    BUCKET_PATTERN,
    ENDPOINT_PATTERN,
    HOST_KEY_PATTERN,
    SFTP_HOST_PATTERN,
)

# Segments of S3-safe characters, none empty, "." or ".." (the worker's own rule,
# docs/worker.md), written without look-arounds: CRD patterns are Go regular expressions.
_PREFIX_CHAR = r"[A-Za-z0-9!_.*'()=+-]"
_PREFIX_START = r"[A-Za-z0-9!_*'()=+-]"
_PREFIX_SEGMENT = (rf"(?:{_PREFIX_START}|\.{_PREFIX_START}|\.\.{_PREFIX_CHAR})"
                   rf"{_PREFIX_CHAR}*")
PREFIX_PATTERN = rf"^{_PREFIX_SEGMENT}(?:/{_PREFIX_SEGMENT})*/?$"
REGION_PATTERN = r"^[a-z0-9-]+$"

MSG_BUCKET_DOTS = (
    "bucket must not contain two adjacent periods (S3 bucket naming rules): rename it, "
    "e.g. my.bucket instead of my..bucket"
)
MIN_FILE_SPLIT_QUANTITY = f"{MIN_FILE_SPLIT_BYTES // 2**20}Mi"
MSG_FILE_SPLIT_MIN = (f"fileSplitSize must be at least {MIN_FILE_SPLIT_QUANTITY} "
                      "(a Kubernetes quantity such as 1024Mi)")


def _check_file_split_size(value: int | str) -> int | str:
    require(parse_quantity(value) >= MIN_FILE_SPLIT_BYTES, MSG_FILE_SPLIT_MIN)
    return value


def int_or_string_schema(pattern: str, **extra: Any) -> dict[str, Any]:
    """The structural-schema spelling of an int-or-string field (like resource.Quantity)."""
    return {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": pattern,
        "maxLength": 64,
        **extra,
    }


FileSplitSize = Annotated[
    int | str,
    AfterValidator(_check_file_split_size),
    WithJsonSchema(
        int_or_string_schema(
            QUANTITY_PATTERN,
            **validations(
                cel(
                    f"type(self) == int ? self >= {MIN_FILE_SPLIT_BYTES} : "
                    f"(isQuantity(self) && quantity(self).compareTo(quantity("
                    f"'{MIN_FILE_SPLIT_QUANTITY}')) >= 0)",
                    MSG_FILE_SPLIT_MIN,
                )
            ),
        )
    ),
]


class S3CredentialsSecretRef(FerryModel):
    """A Secret holding an S3 access key pair."""

    name: SecretName = Field(description="Name of the Secret, in the same namespace.")
    access_key_id_key: SecretDataKey = Field(
        default="AWS_ACCESS_KEY_ID", description="Key holding the access key id."
    )
    secret_access_key_key: SecretDataKey = Field(
        default="AWS_SECRET_ACCESS_KEY", description="Key holding the secret access key."
    )


BucketName = Annotated[str, Field(min_length=3, max_length=63, pattern=BUCKET_PATTERN)]
KeyPrefix = Annotated[str, Field(min_length=1, max_length=MAX_PREFIX_CHARACTERS,
                                 pattern=PREFIX_PATTERN)]


BUCKET_DOTS_RULE = cel("!self.bucket.contains('..')", MSG_BUCKET_DOTS, field_path=".bucket")
"""S3Bucket's CEL rule; a subclass declaring rules of its own lists it again (pydantic
replaces a parent's json_schema_extra rather than merging it)."""


class S3Bucket(FerryModel):
    """An S3-compatible bucket and how to reach it: the fields an ExportJob's output and
    an ImportJob's source share (the same names, rules and defaults in both)."""

    model_config = ConfigDict(json_schema_extra=validations(BUCKET_DOTS_RULE))

    bucket: BucketName = Field(
        description="Bucket name (3-63 characters: lowercase letters, digits, dots, hyphens)."
    )
    prefix: KeyPrefix | None = (
        Field(default=None, description="Key prefix, without a leading slash: segments of "
              "letters, digits and !_.*'()=+- separated by /, none empty, . or .. "
              "(e.g. team-a/exports). Absent: bucket root.")
    )
    endpoint: Annotated[str, Field(max_length=2048, pattern=ENDPOINT_PATTERN)] | None = Field(
        default=None,
        description="Endpoint URL of an S3-compatible service (https://minio.example:9000). "
        "Absent: AWS S3.",
    )
    region: Annotated[str, Field(min_length=1, max_length=64, pattern=REGION_PATTERN)] | None = (
        Field(default=None, description="Region, e.g. eu-central-1.")
    )
    credentials_secret_ref: S3CredentialsSecretRef | None = Field(
        default=None,
        description="Secret with the access key pair. Absent: the worker pod's ambient "
        "credentials (e.g. IRSA / workload identity).",
    )
    force_path_style: bool = Field(
        default=False,
        description="Address the bucket as <endpoint>/<bucket> (needed by most "
        "S3-compatible servers such as MinIO) instead of <bucket>.<endpoint>.",
    )

    @model_validator(mode="after")
    def _check(self) -> S3Bucket:
        require(".." not in self.bucket, MSG_BUCKET_DOTS)
        return self


class S3Destination(S3Bucket):
    """An S3-compatible bucket. Files land under <prefix>/<job>/<run>/."""


DIRECTORY_PATTERN = rf"^/(?:{_PREFIX_SEGMENT}(?:/{_PREFIX_SEGMENT})*)?/?$"
"""An absolute SFTP directory of S3-safe segments (none empty, . or ..)."""
MSG_PASSWORD_OR_KEY = ("set exactly one of privateKeyKey and passwordKey (the Secret key "
                       "holding the private key, or the password)")
MSG_ONE_DESTINATION = "set exactly one of spec.output.s3 and spec.output.sftp"


class SftpCredentialsSecretRef(FerryModel):
    """A Secret holding the SFTP user and a private key (or a password). The key names
    default to those of a kubernetes.io/ssh-auth Secret plus ``username``."""

    model_config = ConfigDict(json_schema_extra=validations(
        cel("has(self.privateKeyKey) != has(self.passwordKey)", MSG_PASSWORD_OR_KEY)))

    name: SecretName = Field(description="Name of the Secret, in the same namespace.")
    user_key: SecretDataKey = Field(default="username", description="Key holding the user name.")
    private_key_key: SecretDataKey | None = Field(
        default=None, description="Key holding an unencrypted OpenSSH or PEM private key "
        "(ed25519, ECDSA or RSA), e.g. ssh-privatekey.")
    password_key: SecretDataKey | None = Field(
        default=None, description="Key holding the password, instead of a private key.")

    @model_validator(mode="after")
    def _check(self) -> SftpCredentialsSecretRef:
        require((self.private_key_key is None) != (self.password_key is None),
                MSG_PASSWORD_OR_KEY)
        return self


class SftpDestination(FerryModel):
    """A directory on an SFTP server. Files land under <directory>/<job>/<run>/, each
    written under a temporary name and renamed when complete; the run's manifests last."""

    host: Annotated[str, Field(min_length=1, max_length=253, pattern=SFTP_HOST_PATTERN)] = Field(
        description="Host name or IP address of the SSH server.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(default=22, description="SSH port.")
    directory: Annotated[str, Field(min_length=1, max_length=MAX_PREFIX_CHARACTERS,
                                    pattern=DIRECTORY_PATTERN)] = Field(
        description="Absolute directory as the SFTP user sees it (inside a chroot: relative "
        "to its root), e.g. /upload/exports. It must exist and be writable; the job and run "
        "folders below it are created.")
    host_key: Annotated[str, Field(max_length=16384, pattern=HOST_KEY_PATTERN)] | None = Field(
        default=None,
        description="The server's public host key, pinned: '<type> <base64>' as in "
        "known_hosts (ssh-keyscan -p <port> <host> prints it). The worker refuses any other "
        "key before sending anything; absent, every key is refused and the run's error "
        "names the key the server offered, to pin after checking it.")
    credentials_secret_ref: SftpCredentialsSecretRef = Field(
        description="Secret with the user and a private key or password.")


class Format(StrEnum):
    """File formats."""

    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


class Compression(StrEnum):
    """Compression codecs."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


class Output(FerryModel):
    """Destination and file layout of the exported data."""

    model_config = ConfigDict(json_schema_extra=validations(
        cel(exactly_one_rule(["s3", "sftp"]), MSG_ONE_DESTINATION)))

    s3: S3Destination | None = Field(
        default=None, description="An S3-compatible bucket (this or sftp).")
    sftp: SftpDestination | None = Field(
        default=None, description="A directory on an SFTP server (this or s3).")
    format: Format = Field(
        default=Format.CSV, description="File format: csv (default), jsonl or parquet."
    )
    compression: Compression = Field(
        default=Compression.NONE,
        description="none (default), gzip or zstd. csv/jsonl files get a .gz/.zst suffix; for "
        "parquet the codec is applied inside the file (column chunks).",
    )
    file_split_size: FileSplitSize | None = Field(
        default=None,
        description="Split each batch's output into numbered files "
        "<job>-<batch>-<n>-<attempt>.<ext> of about "
        "this size: a Kubernetes quantity such as 1024Mi or 1Gi, at least 1Mi. Absent: one "
        "file per batch.",
    )

    @model_validator(mode="after")
    def _check_destination(self) -> Output:
        require((self.s3 is None) != (self.sftp is None), MSG_ONE_DESTINATION)
        return self

    def location(self, job: str, run_dir: str) -> str:
        """URL of a run's folder (files, _manifests/, _errors/): s3://bucket/prefix/job/run
        or sftp://host:port/directory/job/run."""
        if self.sftp is not None:
            path = "/".join(p.strip("/") for p in (self.sftp.directory, job, run_dir)
                            if p.strip("/"))
            return f"sftp://{self.sftp.host}:{self.sftp.port}/{path}"
        assert self.s3 is not None
        parts = [p.strip("/") for p in (self.s3.prefix or "", job, run_dir) if p and p.strip("/")]
        return f"s3://{self.s3.bucket}/{'/'.join(parts)}"

    @property
    def file_split_bytes(self) -> int | None:
        """fileSplitSize in bytes, or None for one file per batch."""
        return None if self.file_split_size is None else parse_quantity(self.file_split_size)
