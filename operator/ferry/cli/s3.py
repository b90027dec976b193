"""Reading a run's folder in the bucket with the job's own S3 settings.

Credentials come from the Secret named in spec.output.s3.credentialsSecretRef, read
with the user's kubeconfig: whoever may read that Secret may read the exports, which
is the same permission boundary the worker pods have. Without a Secret reference,
boto3's default chain (environment, profile, instance role) applies.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config

from ferry.api.output import S3Destination
from ferry.cli.errors import CliError
from ferry.cli.kube import Kube

T = TypeVar("T")
CHUNK = 1024 * 1024


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (bucket, "a/b")."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def _decode(data: dict[str, str], key: str, secret: str) -> str:
    if key not in data:
        raise CliError(
            f'secret "{secret}" has no key "{key}" (spec.output.s3.credentialsSecretRef)'
        )
    return base64.b64decode(data[key]).decode()


class Bucket:
    """One bucket, with errors turned into one-line CliErrors."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    @classmethod
    def open(cls, kube: Kube, dest: S3Destination) -> Bucket:
        """A client for the destination of an ExportJob."""
        keys: dict[str, str] = {}
        ref = dest.credentials_secret_ref
        if ref is not None:
            data = kube.secret_data(ref.name)
            keys = {
                "aws_access_key_id": _decode(data, ref.access_key_id_key, ref.name),
                "aws_secret_access_key": _decode(data, ref.secret_access_key_key, ref.name),
            }
        style = "path" if dest.force_path_style else "auto"
        client = boto3.client(
            "s3", endpoint_url=dest.endpoint, region_name=dest.region or "us-east-1",
            config=Config(s3={"addressing_style": style}, retries={"max_attempts": 3}),
            **keys,
        )
        return cls(client, dest.bucket)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            raise CliError(f"{what}: {error.get('Code')}: {error.get('Message', '')}".rstrip(": ")
                           ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise CliError(f"{what}: {exc}") from exc

    def url(self, key: str) -> str:
        """The object's s3:// URL, for messages."""
        return f"s3://{self.name}/{key}"

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, sorted."""
        def collect() -> list[str]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.name, Prefix=prefix)
            return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
        return self._call(f"list s3://{self.name}/{prefix}", collect)

    def read(self, key: str) -> bytes:
        """A whole (small) object: a manifest or an error report."""
        return self._call(
            f"read s3://{self.name}/{key}",
            lambda: bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read()),
        )

    def read_json(self, key: str) -> dict[str, Any]:
        """A JSON document; a broken one is an error naming the key."""
        try:
            document = json.loads(self.read(key))
        except ValueError as exc:
            raise CliError(f"s3://{self.name}/{key} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise CliError(f"s3://{self.name}/{key} is not a JSON object")
        return document

    def stream(self, key: str) -> Iterator[bytes]:
        """A data file in chunks, so large files never sit in memory."""
        body = self._call(
            f"read s3://{self.name}/{key}",
            lambda: self.client.get_object(Bucket=self.name, Key=key)["Body"],
        )
        try:
            yield from iter(lambda: bytes(body.read(CHUNK)), b"")
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise CliError(f"download of s3://{self.name}/{key} failed: {exc}") from exc
