"""The batch/v1 Job of a run: one Indexed Job, one completion index per batch.

The Job's name is derived from the run number alone, so creating it is idempotent:
an operator that restarts between writing the run into status and creating the Job
creates the same name again and adopts the existing one on AlreadyExists.
Secrets reach the worker only as `secretKeyRef` env vars: their values are never in
the Job spec, the operator never reads them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ferry.api.exportjob import ExportJobSpec
from ferry.api.status import HistoryEntry
from ferry.constants import API_VERSION, EXPORTJOB_KIND, LABEL_JOB, LABEL_RUN, LABEL_SEAL
from ferry.contract.exitcodes import FATAL_EXIT_CODES
from ferry.reconcile.batches import Slice

WORKER_CONTAINER = "worker"

RESTRICTED_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class WorkerDefaults:
    """Operator-wide settings for worker pods that a spec may override."""

    image: str
    service_account: str
    run_as_user: int = 65532


@dataclass(frozen=True)
class Owner:
    """The ExportJob that owns the Job (garbage collection deletes the Job with it)."""

    name: str
    namespace: str
    uid: str


def job_name(export_job: str, run_number: int) -> str:
    """`<job>-<n>`: API validation keeps ExportJob names short enough for 63 characters."""
    return f"{export_job}-{run_number}"


def _timestamp(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else None


def worker_plan(
    owner: Owner, spec: ExportJobSpec, run_dir: str, slices: list[Slice],
    reuse_committed_since: dt.datetime | None = None,
) -> dict[str, Any]:
    """The FERRY_PLAN document (docs/worker.md): everything but the secrets."""
    source = spec.source
    plan_source: dict[str, Any]
    if source.table is not None:
        schema, _, table = source.table.rpartition(".")
        plan_source = {"table": table, **({"schema": schema} if schema else {})}
    else:
        plan_source = {"query": source.query}
    filters = []
    for f in source.filters or []:
        if f.in_ is not None:
            filters.append({"column": f.column, "op": "in", "values": list(f.in_)})
        elif f.not_in is not None:
            filters.append({"column": f.column, "op": "notIn", "values": list(f.not_in)})
        elif f.equals is not None:
            filters.append({"column": f.column, "op": "eq", "value": f.equals})
        else:
            filters.append({"column": f.column, "op": "isNull" if f.is_null else "notNull"})
    s3 = spec.output.s3
    destination: dict[str, Any] = {"bucket": s3.bucket, "pathStyle": s3.force_path_style}
    for key, value in (("prefix", s3.prefix), ("endpoint", s3.endpoint), ("region", s3.region)):
        if value:
            destination[key] = value
    plan: dict[str, Any] = {
        "job": owner.name,
        **({"jobUid": owner.uid} if owner.uid else {}),
        "run": run_dir,
        "source": plan_source,
        "filters": filters,
        "format": spec.output.format.value,
        "compression": spec.output.compression.value,
        "destination": destination,
        "batchCount": slices[0].total,
        "slices": [
            {
                "batchIndex": s.index,
                **(
                    {
                        "window": {
                            "column": source.timestamp_column,
                            **({"from": _timestamp(s.start)} if s.start else {}),
                            **({"to": _timestamp(s.end)} if s.end else {}),
                        }
                    }
                    if source.timestamp_column and (s.start or s.end)
                    else {}
                ),
                **(
                    {"keyPartition": {"column": source.key_column, "index": s.index,
                                      "count": s.total}}
                    if s.by_key and source.key_column
                    else {}
                ),
            }
            for s in slices
        ],
    }
    if source.columns:
        plan["columns"] = list(source.columns)
    split = spec.output.file_split_bytes
    if split:
        plan["fileSplitSize"] = split
    if reuse_committed_since is not None:
        plan["reuseCommittedSince"] = _timestamp(reuse_committed_since)
    return plan


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _worker_pod(spec: ExportJobSpec, defaults: WorkerDefaults, args: list[str],
                plan: dict[str, Any], with_source: bool) -> dict[str, Any]:
    """The worker pod of a batch (``export``) or of a run's seal (``seal``: the bucket
    only, no database Secret)."""
    worker = spec.worker
    env: list[dict[str, Any]] = [
        {"name": "FERRY_PLAN", "value": json.dumps(plan, separators=(",", ":"))}]
    if with_source:
        env.append(_secret_env(
            "FERRY_SOURCE_DSN",
            spec.source.connection_secret_ref.name,
            spec.source.connection_secret_ref.key,
        ))
    env += [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    credentials = spec.output.s3.credentials_secret_ref
    if credentials is not None:
        env += [
            _secret_env("AWS_ACCESS_KEY_ID", credentials.name, credentials.access_key_id_key),
            _secret_env(
                "AWS_SECRET_ACCESS_KEY", credentials.name, credentials.secret_access_key_key
            ),
        ]
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": (worker.image if worker and worker.image else defaults.image),
        "args": args,
        "env": env,
        "securityContext": RESTRICTED_SECURITY_CONTEXT,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if worker and worker.resources:
        container["resources"] = worker.resources.to_k8s()
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": (
            worker.service_account_name
            if worker and worker.service_account_name
            else defaults.service_account
        ),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": defaults.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if worker and worker.node_selector:
        pod_spec["nodeSelector"] = dict(worker.node_selector)
    if worker and worker.tolerations:
        pod_spec["tolerations"] = [t.to_k8s() for t in worker.tolerations]
    return pod_spec


def _metadata(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": EXPORTJOB_KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def _fatal_exit_codes_fail_the_index() -> dict[str, Any]:
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {
                "action": "FailIndex",
                "onExitCodes": {
                    "containerName": WORKER_CONTAINER,
                    "operator": "In",
                    "values": [int(c) for c in FATAL_EXIT_CODES],
                },
            },
        ]
    }


def build_job(
    owner: Owner,
    spec: ExportJobSpec,
    run_number: int,
    run_dir: str,
    slices: list[Slice],
    defaults: WorkerDefaults,
    reuse_committed_since: dt.datetime | None = None,
) -> dict[str, Any]:
    """The Job manifest for one run (or for the failed batches of a retried run).

    ``reuse_committed_since`` (the run's start) lets a Job created again for the same
    run skip the batches whose manifests that run already committed (docs/worker.md)."""
    plan = worker_plan(owner, spec, run_dir, slices, reuse_committed_since)
    labels = {LABEL_JOB: owner.name, LABEL_RUN: str(run_number)}
    batching = spec.batching
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(owner, job_name(owner.name, run_number), labels),
        "spec": {
            "completionMode": "Indexed",
            "completions": len(slices),
            "parallelism": min(len(slices), batching.parallelism if batching else 1),
            "backoffLimitPerIndex": batching.retries_per_batch if batching else 2,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": _fatal_exit_codes_fail_the_index(),
            "template": {"metadata": {"labels": labels},
                         "spec": _worker_pod(spec, defaults, ["export"], plan, True)},
        },
    }


SEAL_RETRIES = 3
"""Pods a seal gets (each retries S3 within FERRY_S3_RETRY_SECONDS): only S3 can fail it."""


def seal_job_name(export_job: str, run_number: int) -> str:
    """``<job>-<n>-seal``, shortened with a hash of the name where it would pass 63."""
    name = f"{export_job}-{run_number}-seal"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(export_job.encode()).hexdigest()[:6]
    keep = 63 - len(f"-{digest}-{run_number}-seal")
    return f"{export_job[:keep].rstrip('-')}-{digest}-{run_number}-seal"


def build_seal_job(
    owner: Owner,
    spec: ExportJobSpec,
    run: HistoryEntry,
    run_dir: str,
    batch_count: int,
    defaults: WorkerDefaults,
) -> dict[str, Any]:
    """The one-pod Job that writes a finished run's marker ``_run.json`` (``ferry-worker
    seal``): the run's plan over all its batches, plus which run ended and how."""
    slices = [Slice(i, batch_count, None, None) for i in range(batch_count)]
    plan = worker_plan(owner, spec, run_dir, slices)
    plan["seal"] = {"runId": run.id, "outcome": run.phase.value}
    labels = {LABEL_JOB: owner.name, LABEL_SEAL: str(run.number)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(owner, seal_job_name(owner.name, run.number), labels),
        "spec": {
            "completionMode": "Indexed",
            "completions": 1,
            "backoffLimitPerIndex": SEAL_RETRIES,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": _fatal_exit_codes_fail_the_index(),
            "template": {"metadata": {"labels": labels},
                         "spec": _worker_pod(spec, defaults, ["seal"], plan, False)},
        },
    }
