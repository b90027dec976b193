"""``ferry-worker seal``: the run marker ``_run.json``, written when a run has ended.

A run's batches commit one by one (each manifest is its own batch's commit record), so
the folder of a canceled or failed run holds committed batches and nothing says that the
others are missing: a reader taking the folder for the run would take a part for the
whole. And the operator, which holds no bucket credentials, saw a canceled run's
progress only up to the cancel, while a batch may have committed after it.

So once a run has ended the operator starts a one-pod Job running ``seal`` with the
run's own plan plus ``seal: {runId, outcome}``, and no database access. It lists
``_manifests/``, reads the manifest of every batch ``0..batchCount-1`` found there
(skipping another ExportJob's, see :mod:`ferry.worker.leftovers`), and PUTs
``_run.json`` last: what is committed, what is missing, and the sums. The termination
message carries the same sums (and, when it fits, the batches) to the operator's
history.

The PUT is plain, not conditional: the marker is a function of the folder's manifests
when the seal looked, so writing it again is harmless, and a retry of the run, which
exports into the same folder, seals it again with the folder now more complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any

from ferry.contract.plan import Plan
from ferry.contract.summary import RunSealed, SealedBatch, encode_summary
from ferry.worker import layout
from ferry.worker.leftovers import earlier_job
from ferry.worker.manifest import utc_now
from ferry.worker.storage import Store

log = logging.getLogger(__name__)

MARKER_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Committed:
    """One committed batch as the marker lists it (the manifest has the file detail)."""

    batch: int
    manifest: str
    records: int
    files: int
    bytes: int
    started_at: str | None
    finished_at: str | None

    def to_json(self) -> dict[str, Any]:
        """The marker's entry for this batch."""
        return {"batch": self.batch, "manifest": self.manifest, "records": self.records,
                "files": self.files, "bytes": self.bytes, "startedAt": self.started_at,
                "finishedAt": self.finished_at}


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _time(value: object) -> str | None:
    return value if isinstance(value, str) else None


def committed(batch: int, key: str, document: object) -> Committed | None:
    """The marker's view of a manifest document; None when it is not one a worker wrote
    (then the batch counts as missing: the seal cannot vouch for its files)."""
    if not isinstance(document, dict):
        return None
    records, size = _count(document.get("records")), _count(document.get("bytes"))
    files = document.get("files")
    if records is None or size is None or not isinstance(files, list):
        return None
    return Committed(batch, key, records, len(files), size, _time(document.get("startedAt")),
                     _time(document.get("finishedAt")))


def run_marker(plan: Plan, batches: Sequence[Committed], sealed_at: str) -> dict[str, Any]:
    """The ``_run.json`` document for ``plan`` (which carries ``seal``)."""
    assert plan.seal is not None
    found = sorted(batches, key=lambda b: b.batch)
    done = {b.batch for b in found}
    missing = [i for i in range(plan.batch_count) if i not in done]
    return {
        "version": MARKER_VERSION,
        "job": plan.job,
        **({"jobUid": plan.job_uid} if plan.job_uid else {}),
        "run": plan.run,
        "runId": plan.seal.run_id,
        "outcome": plan.seal.outcome,
        "complete": not missing,
        "batchCount": plan.batch_count,
        "batches": [b.to_json() for b in found],
        "missingBatches": missing,
        "records": sum(b.records for b in found),
        "files": sum(b.files for b in found),
        "bytes": sum(b.bytes for b in found),
        "sealedAt": sealed_at,
    }


def sealed_message(marker: dict[str, Any], marker_key: str) -> str:
    """The seal's termination message: the marker's sums and batch rows, shortened by
    the contract's encoder to fit (ferry.contract.summary; the marker has everything)."""
    return encode_summary(RunSealed(
        complete=marker["complete"], records=marker["records"], files=marker["files"],
        bytes=marker["bytes"], marker=marker_key, missing=tuple(marker["missingBatches"]),
        batches=tuple(SealedBatch(b["batch"], b["records"], b["files"], b["bytes"],
                                  b["startedAt"], b["finishedAt"]) for b in marker["batches"])))


def _listed_manifests(store: Store, plan: Plan) -> set[str]:
    """Every key under ``_manifests/`` (all pages): one listing instead of a GET per
    batch that may not exist."""
    return {listed.key for listed in store.listing(layout.manifests_prefix(plan),
                                                "ListObjectsV2 manifests")}


def _read_committed(store: Store, plan: Plan, batch: int) -> Committed | None:
    """The batch's manifest if it is this ExportJob's and readable, else None (missing)."""
    key = layout.manifest_key(plan, batch)
    found = store.read(key, "GetObject manifest")
    if found is None:
        return None  # listed, then removed (an earlier job's, by a batch of this one)
    try:
        document = json.loads(found.body)
    except ValueError:
        document = None
    if isinstance(document, dict) and earlier_job(plan, document):
        log.info("not counted: %s was written for another ExportJob (jobUid %s)", key,
                 document.get("jobUid"))
        return None
    entry = committed(batch, key, document)
    if entry is None:
        log.warning("not counted: %s is not a batch manifest", key)
    return entry


def seal_run(store: Store, plan: Plan) -> dict[str, Any]:
    """Read what the run's folder commits, write ``_run.json`` last; returns the marker."""
    listed = _listed_manifests(store, plan)
    batches = [entry for batch in range(plan.batch_count)
               if layout.manifest_key(plan, batch) in listed
               and (entry := _read_committed(store, plan, batch)) is not None]
    marker = run_marker(plan, batches, utc_now())
    body = json.dumps(marker, indent=1, ensure_ascii=False).encode()
    store.put(layout.run_marker_key(plan), body, "application/json", "PutObject run marker")
    return marker
