"""Names inside a run folder ``<prefix>/<job>/<run>/`` that writers and readers share.

The worker writes them (ferry.worker.layout builds whole keys from a plan), the CLI
reads them (download, errors, describe --run), and the operator's status points at
them (history's manifest, errorReport and runMarker URLs).
"""

from typing import Final

MANIFESTS: Final = "_manifests/"
"""Batch manifests, ``batch-<i>.json``: a batch's commit record, written last."""
ERRORS: Final = "_errors/"
"""Error reports, ``batch-<i>.jsonl``: one line per failed attempt."""
KEY_PLAN: Final = "_keyranges.json"
"""The run's key ranges (``source.keyColumn`` split into batches), committed once by the
first batch to start and read by every other batch and retry (ferry.worker.keyranges)."""
RUN_MARKER: Final = "_run.json"
"""Written once the run has ended (``ferry-worker seal``): what a downstream reader waits for."""


def manifest_name(batch: int) -> str:
    """A batch manifest's key within the run folder."""
    return f"{MANIFESTS}batch-{batch}.json"


def error_report_name(batch: int) -> str:
    """A batch's error report's key within the run folder."""
    return f"{ERRORS}batch-{batch}.jsonl"
