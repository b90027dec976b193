"""Object keys of a run in the bucket (one place, so readers and writers agree).

::

    <prefix>/<job>/<run>/<job>-<batch>-<n>-<attempt>.<ext>   data files
    <prefix>/<job>/<run>/_manifests/batch-<batch>.json        commit record, written last
    <prefix>/<job>/<run>/_errors/batch-<batch>.jsonl          error report (appended)

``<attempt>`` is 8 random hex digits chosen by each worker attempt. Two attempts of the
same batch (a retry, or two pods racing on one index) therefore never write the same
key, and the manifest, written last with a conditional PUT, decides which attempt's
files are the batch. Readers must list the manifests, not the data files.
"""

from __future__ import annotations

from ferry.worker.formats import file_extension
from ferry.worker.plan import Plan
from ferry.worker.upload import join_key


def run_prefix(plan: Plan) -> str:
    """``<prefix>/<job>/<run>`` (no trailing slash)."""
    return join_key(plan.destination.prefix, plan.job, plan.run)


def batch_data_prefix(plan: Plan) -> str:
    """The key prefix shared by every data file of this batch, of any attempt."""
    return f"{run_prefix(plan)}/{plan.job}-{plan.batch_index}-"


def data_key(plan: Plan, attempt: str, n: int) -> str:
    """Key of data file ``n`` of this attempt."""
    ext = file_extension(plan.format, plan.compression)
    return f"{batch_data_prefix(plan)}{n}-{attempt}.{ext}"


def manifest_key(plan: Plan) -> str:
    """Key of the batch manifest."""
    return f"{run_prefix(plan)}/_manifests/batch-{plan.batch_index}.json"


def error_key(plan: Plan) -> str:
    """Key of the batch's error report."""
    return f"{run_prefix(plan)}/_errors/batch-{plan.batch_index}.jsonl"
