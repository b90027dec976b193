"""What an earlier ExportJob of the same name left in this run's folder.

Run folders are named ``<prefix>/<job>/<job>.<n>`` and run numbers start at 1 for
every ExportJob, so a job deleted and created again under the same name writes its
run 1 into the folder the old job's run 1 used (deleting a job never deletes its
files). A run's manifests are its commit record and readers trust them, so a folder
holding the new run's batches 0-1 next to the old run's batches 2-3 would present rows
of another run, from another window, as this run's.

Every manifest and error record carries the ExportJob's uid (``jobUid``). Before it
exports, each batch removes from the folder what carries another uid (or none: written
by a worker from before uids were recorded):

* its own index: the manifest (first, so no reader sees a manifest whose files are
  gone), then the files that manifest lists, and the error report if no record in it
  is this job's. Files of the earlier job's killed attempts are swept as usual once
  this batch commits (``batch._sweep``).
* batch 0 also removes the run marker ``_run.json`` of another uid (first, so that a
  reader waiting for it never takes the earlier run's for this one), and every index at
  or above the run's batch count, whoever wrote it: no batch of this run writes there,
  so nothing there can be this run's.

Only a batch whose plan carries ``jobUid`` does this; a plan written by hand keeps the
old behaviour (a batch replaces its own index's manifest, nothing else is touched).
Deletes are unconditional (S3, MinIO and SFTP alike), so an attempt racing on the same index that
commits between this check and the delete loses its commit; this attempt then commits
the batch itself, which is what a later attempt replacing an earlier one does anyway.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from ferry.contract.plan import Plan
from ferry.worker import layout
from ferry.worker.storage import Store

log = logging.getLogger(__name__)

_BATCH_FILE = re.compile(r"^batch-(\d+)\.jsonl?$")


def earlier_job(plan: Plan, document: dict[str, Any]) -> bool:
    """Whether a manifest or error record was written for another ExportJob."""
    return plan.job_uid is not None and document.get("jobUid") != plan.job_uid


def clear_earlier_jobs(store: Store, plan: Plan) -> list[str]:
    """Remove the earlier jobs' batches this batch is responsible for; returns the keys."""
    if plan.job_uid is None:
        return []
    run = layout.run_prefix(plan) + "/"
    doomed_manifests: list[str] = []
    doomed_files: list[str] = []
    own_manifest = _read_json(store, layout.manifest_key(plan))
    if own_manifest is not None and earlier_job(plan, own_manifest):
        doomed_manifests.append(layout.manifest_key(plan))
        doomed_files += [str(f["key"]) for f in own_manifest.get("files", [])
                         if isinstance(f, dict) and str(f.get("key", "")).startswith(run)]
    if _earlier_jobs_error_report(store, plan):
        doomed_files.append(layout.error_key(plan))
    if plan.batch_index == 0:
        marker = _read_json(store, layout.run_marker_key(plan))
        if marker is not None and earlier_job(plan, marker):
            # First of all: a reader waiting for _run.json must not take the earlier
            # job's "complete" for this run's.
            doomed_manifests.append(layout.run_marker_key(plan))
        manifests, files = _beyond_batch_count(store, plan)
        doomed_manifests += manifests
        doomed_files += files
    doomed_files = sorted(set(doomed_files) - set(doomed_manifests))
    store.delete(doomed_manifests)
    store.delete(doomed_files)
    removed = doomed_manifests + doomed_files
    if doomed_manifests:
        log.info("removed %d manifest(s) and %d other object(s) an earlier ExportJob named %s "
                 "left in %s", len(doomed_manifests), len(doomed_files), plan.job,
                 layout.run_prefix(plan))
    return removed


def _beyond_batch_count(store: Store, plan: Plan) -> tuple[list[str], list[str]]:
    """Manifests, and data files and error reports, of indexes >= the batch count."""
    run = layout.run_prefix(plan) + "/"
    data = f"{run}{plan.job}-"
    manifests: list[str] = []
    files: list[str] = []
    for listed in store.listing(run, "ListObjectsV2"):
        key = listed.key
        index = _index_of(key, run, data)
        if index is None or index < plan.batch_count:
            continue
        (manifests if key.endswith(".json") else files).append(key)
    return manifests, files


def _index_of(key: str, run: str, data: str) -> int | None:
    """The batch index in a run folder key (a manifest, an error report or a data file)."""
    rest = key.removeprefix(run)
    folder, _, name = rest.rpartition("/")
    if folder in ("_manifests", "_errors"):
        match = _BATCH_FILE.fullmatch(name)
        return int(match.group(1)) if match else None
    if folder == "" and key.startswith(data):
        head = key.removeprefix(data).split("-", 1)[0]
        return int(head) if head.isdigit() else None
    return None


def _read_json(store: Store, key: str) -> dict[str, Any] | None:
    found = store.read(key, "GetObject")
    if found is None:
        return None
    try:
        document = json.loads(found.body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _earlier_jobs_error_report(store: Store, plan: Plan) -> bool:
    """Whether this batch's error report exists and holds no record of this job."""
    found = store.read(layout.error_key(plan), "GetObject")
    if found is None:
        return False
    for line in found.body.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and not earlier_job(plan, record):
            return False
    return True
