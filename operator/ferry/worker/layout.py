"""Object keys of a run in the bucket (one place, so readers and writers agree).

::

    <prefix>/<job>/<run>/<job>-<batch>-<n>-<attempt>.<ext>   data files
    <prefix>/<job>/<run>/_manifests/batch-<batch>.json        commit record, written last
    <prefix>/<job>/<run>/_errors/batch-<batch>.jsonl          error report (appended)
    <prefix>/<job>/<run>/_keyranges.json                      key ranges (keyColumn batches)
    <prefix>/<job>/<run>/_run.json                            run marker (ferry-worker seal)

``<attempt>`` is 8 random hex digits chosen by each worker attempt. Two attempts of the
same batch (a retry, or two pods racing on one index) therefore never write the same
key, and the manifest, written last with a conditional PUT, decides which attempt's
files are the batch. Readers must list the manifests, not the data files.

The run marker is written once a run has ended (by a one-pod Job the operator starts,
which must run after the run's batch pods are gone: it counts what is committed when it
looks). It lists the batches whose manifests are committed and those missing, so a
reader can tell a complete run from a canceled or failed one's partial folder. A retry
exports into the same folder and its seal rewrites the marker.
"""

from __future__ import annotations

from ferry.contract import layout as names
from ferry.contract.plan import Plan
from ferry.worker.formats import file_extension
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


def manifests_prefix(plan: Plan) -> str:
    """The folder of the run's batch manifests (with its trailing slash)."""
    return f"{run_prefix(plan)}/{names.MANIFESTS}"


def manifest_key(plan: Plan, batch: int | None = None) -> str:
    """Key of the manifest of ``batch`` (default: the plan's own batch)."""
    index = plan.batch_index if batch is None else batch
    return f"{run_prefix(plan)}/{names.manifest_name(index)}"


def key_plan_key(plan: Plan) -> str:
    """Key of the run's committed key ranges ``_keyranges.json``."""
    return f"{run_prefix(plan)}/{names.KEY_PLAN}"


def run_marker_key(plan: Plan) -> str:
    """Key of the run marker ``_run.json`` that ``ferry-worker seal`` writes."""
    return f"{run_prefix(plan)}/{names.RUN_MARKER}"


def error_key(plan: Plan) -> str:
    """Key of the batch's error report."""
    return f"{run_prefix(plan)}/{names.error_report_name(plan.batch_index)}"
