"""Which files a batch loads: the source listed (sorted by key), then the batch's share.

A prefix is listed whole and filtered by the glob on the key relative to the prefix;
keys ending in ``/`` (folder markers) and keys in a folder whose name starts with ``_``
(Ferry's own ``_manifests/``, ``_errors/``, ``_rejects/``) are never data. An export's
run folder is not listed for data at all: its manifests name the files they commit,
and exactly those are loaded (an export's uncommitted attempts leave files in the folder
that no manifest names).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
from typing import Any

from ferry.contract import layout
from ferry.contract.importplan import ImportPlan, batch_share
from ferry.worker.errors import ConfigError
from ferry.worker.upload import Retry, join_key, read_object


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One object to load, as listed: the ETag pins the version the ledger records."""

    key: str
    size: int
    etag: str


def _list(client: Any, retry: Retry[Any], bucket: str, prefix: str) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = retry(f"ListObjectsV2 {prefix}", functools.partial(client.list_objects_v2,
                                                                  **kwargs))
        objects.extend(page.get("Contents", []))
        token = page.get("NextContinuationToken")
        if not token:
            return objects


def _is_data(relative: str) -> bool:
    if not relative or relative.endswith("/"):
        return False
    return not any(part.startswith("_") for part in relative.split("/")[:-1])


def list_prefix(client: Any, retry: Retry[Any], plan: ImportPlan) -> list[SourceFile]:
    """The source prefix's data files matching the glob, sorted by key."""
    assert plan.files is not None
    source = plan.files
    prefix = f"{source.prefix}/" if source.prefix else ""
    found = []
    for item in _list(client, retry, source.bucket, prefix):
        relative = str(item["Key"])[len(prefix):]
        if not _is_data(relative):
            continue
        if source.glob is not None and not fnmatch.fnmatchcase(relative, source.glob):
            continue
        found.append(SourceFile(str(item["Key"]), int(item["Size"]),
                                str(item["ETag"]).strip('"')))
    if not found:
        where = f"s3://{source.bucket}/{prefix}"
        matching = f" matching {source.glob!r}" if source.glob else ""
        raise ConfigError(f"source: no files under {where}{matching}: check "
                          "source.s3.prefix and glob, or upload the files first")
    return sorted(found, key=lambda f: f.key)


def list_export(client: Any, retry: Retry[Any], plan: ImportPlan) -> list[SourceFile]:
    """The files the export run's committed manifests name, sorted by key."""
    assert plan.from_export is not None
    export = plan.from_export
    folder = join_key(export.prefix, export.run_folder)
    manifests = f"{folder}/{layout.MANIFESTS}"
    keys = sorted(str(item["Key"]) for item in _list(client, retry, export.bucket, manifests)
                  if str(item["Key"]).endswith(".json"))
    if not keys:
        raise ConfigError(f"source.fromExport: no committed batch under "
                          f"s3://{export.bucket}/{manifests}: the export run has not "
                          "committed any batch (or runFolder is wrong)")
    files: dict[str, SourceFile] = {}
    for key in keys:
        found = read_object(client, retry, export.bucket, key, f"GetObject {key}")
        if found is None:
            continue
        try:
            document = json.loads(found[0])
            entries = document["files"]
            for entry in entries:
                files[entry["key"]] = SourceFile(str(entry["key"]), int(entry["size"]),
                                                 str(entry["etag"]).strip('"'))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"source.fromExport: manifest {key} is not a Ferry batch "
                              f"manifest ({type(exc).__name__}: {exc})") from None
    return sorted(files.values(), key=lambda f: f.key)


def batch_files(client: Any, retry: Retry[Any], plan: ImportPlan) -> list[SourceFile]:
    """This batch's share of the source's files (possibly none: more batches than
    files)."""
    listed = list_export(client, retry, plan) if plan.from_export else list_prefix(
        client, retry, plan)
    return batch_share(listed, plan.batch_index, plan.batch_count)
