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
from dataclasses import dataclass
from typing import Any, cast

from ferry.api.exportjob import ExportJobSpec
from ferry.api.output import Output, S3CredentialsSecretRef, SftpCredentialsSecretRef
from ferry.api.pod import WorkerPod
from ferry.api.source import Filter as SourceFilter
from ferry.api.status import HistoryEntry
from ferry.constants import API_VERSION, EXPORTJOB_KIND, LABEL_JOB, LABEL_RUN, LABEL_SEAL
from ferry.contract.exitcodes import FATAL_EXIT_CODES
from ferry.contract.plan import (
    DEFAULT_LEVELS,
    BatchSlice,
    Compression,
    Destination,
    Filter,
    KeyPartition,
    KeySplit,
    Plan,
    RunOutcome,
    Seal,
    SftpDestination,
    Source,
    Window,
    encode_plan,
)
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
    """The ExportJob or ImportJob that owns the Job (garbage collection deletes the Job
    with it); ``label`` is the Job label that names it (one key per kind, so an ExportJob
    and an ImportJob of the same name never see each other's Jobs)."""

    name: str
    namespace: str
    uid: str
    kind: str = EXPORTJOB_KIND
    label: str = LABEL_JOB


def job_name(export_job: str, run_number: int) -> str:
    """`<job>-<n>`: API validation keeps ExportJob names short enough for 63 characters."""
    return f"{export_job}-{run_number}"


def suffixed_name(owner: str, suffix: str) -> str:
    """``<owner><suffix>``, shortened with a hash of the owner's name where it would pass
    63 characters (a Job name is a label value): distinct owners keep distinct names."""
    name = f"{owner}{suffix}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(owner.encode()).hexdigest()[:6]
    keep = 63 - len(f"-{digest}{suffix}")
    return f"{owner[:keep].rstrip('-')}-{digest}{suffix}"


def _filter(item: SourceFilter) -> Filter:
    if item.in_ is not None:
        return Filter(item.column, "in", tuple(item.in_))
    if item.not_in is not None:
        return Filter(item.column, "notIn", tuple(item.not_in))
    if item.equals is not None:
        return Filter(item.column, "eq", (item.equals,))
    return Filter(item.column, "isNull" if item.is_null else "notNull")


def _slice(spec: ExportJobSpec, part: Slice) -> BatchSlice:
    """A batch's time slice on the timestamp column and, split by key, its partition."""
    source = spec.source
    window = (Window(source.timestamp_column, part.start, part.end)
              if source.timestamp_column and (part.start or part.end) else None)
    if not (part.by_key and source.key_column):
        return BatchSlice(part.index, window=window)
    if source.query is not None:
        # A query has no table to sample, nor an index a range could use: hash it is.
        return BatchSlice(part.index, window=window, key_partition=KeyPartition(
            source.key_column, part.index, part.total))
    return BatchSlice(part.index, window=window,
                      key_split=KeySplit(source.key_column, part.index, part.total))


def worker_plan(
    owner: Owner, spec: ExportJobSpec, run_dir: str, slices: list[Slice],
    reuse_committed_since: dt.datetime | None = None, seal: Seal | None = None,
) -> Plan:
    """The FERRY_PLAN of a run's Job (docs/worker.md): everything but the secrets, one
    slice per completion index; with ``seal``, the plan of the run's seal Job."""
    source = spec.source
    if source.table is not None:
        schema, _, table = source.table.rpartition(".")
        plan_source = Source(table=table, schema=schema or None)
    else:
        plan_source = Source(query=source.query)
    compression: Compression = spec.output.compression.value
    return Plan(
        job=owner.name,
        job_uid=owner.uid or None,
        run=run_dir,
        source=plan_source,
        columns=tuple(source.columns or ()),
        filters=tuple(_filter(f) for f in source.filters or []),
        format=spec.output.format.value,
        compression=compression,
        compression_level=DEFAULT_LEVELS[compression],
        file_split_size=spec.output.file_split_bytes or None,
        destination=plan_destination(spec.output),
        batch_index=0,
        batch_count=slices[0].total,
        slices=tuple(_slice(spec, s) for s in slices),
        reuse_committed_since=reuse_committed_since,
        seal=seal,
    )


def plan_destination(output: Output) -> Destination | SftpDestination:
    """The plan's destination: the bucket, or the SFTP server and directory."""
    if output.sftp is not None:
        sftp = output.sftp
        return SftpDestination(host=sftp.host, port=sftp.port,
                               directory=sftp.directory.rstrip("/") or "/",
                               host_key=sftp.host_key or "")
    s3 = output.s3
    assert s3 is not None, "the API requires s3 or sftp"
    return Destination(bucket=s3.bucket, prefix=s3.prefix or "", endpoint=s3.endpoint,
                       region=s3.region, path_style=s3.force_path_style)


def sftp_credentials_env(credentials: SftpCredentialsSecretRef) -> list[dict[str, Any]]:
    """The SFTP user and private key (or password) as FERRY_SFTP_* env vars."""
    env = [secret_env("FERRY_SFTP_USER", credentials.name, credentials.user_key)]
    if credentials.private_key_key is not None:
        env.append(secret_env("FERRY_SFTP_PRIVATE_KEY", credentials.name,
                              credentials.private_key_key))
    if credentials.password_key is not None:
        env.append(secret_env("FERRY_SFTP_PASSWORD", credentials.name, credentials.password_key))
    return env


def destination_env(output: Output) -> list[dict[str, Any]]:
    """Secret refs of the run's destination: SFTP login, or the bucket's keys."""
    if output.sftp is not None:
        return sftp_credentials_env(output.sftp.credentials_secret_ref)
    assert output.s3 is not None, "the API requires s3 or sftp"
    return s3_credentials_env(output.s3.credentials_secret_ref)


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def s3_credentials_env(credentials: S3CredentialsSecretRef | None) -> list[dict[str, Any]]:
    """The bucket's keys as AWS_* env vars (none: the pod's own identity, e.g. IRSA)."""
    if credentials is None:
        return []
    return [
        secret_env("AWS_ACCESS_KEY_ID", credentials.name, credentials.access_key_id_key),
        secret_env("AWS_SECRET_ACCESS_KEY", credentials.name, credentials.secret_access_key_key),
    ]


def worker_pod(worker: WorkerPod | None, defaults: WorkerDefaults, args: list[str],
               env: list[dict[str, Any]]) -> dict[str, Any]:
    """A worker pod running ``ferry-worker <args>`` with ``env`` (plan and Secret refs)
    first, then the pod's own name and namespace (its progress annotations)."""
    env = [*env,
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
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


def _export_pod(spec: ExportJobSpec, defaults: WorkerDefaults, args: list[str],
                plan: Plan, with_source: bool) -> dict[str, Any]:
    """The worker pod of a batch (``export``) or of a run's seal (``seal``: the bucket
    only, no database Secret)."""
    env: list[dict[str, Any]] = [{"name": "FERRY_PLAN", "value": encode_plan(plan)}]
    if with_source:
        ref = spec.source.connection_secret_ref
        env.append(secret_env("FERRY_SOURCE_DSN", ref.name, ref.key))
    env += destination_env(spec.output)
    return worker_pod(spec.worker, defaults, args, env)


def job_metadata(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": owner.kind,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def fatal_exit_codes_fail_the_index() -> dict[str, Any]:
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


def indexed_job(owner: Owner, name: str, labels: dict[str, str], completions: int,
                parallelism: int, retries: int, pod: dict[str, Any]) -> dict[str, Any]:
    """An Indexed Job, one completion index per batch: a batch's pods are retried
    ``retries`` times, except on an exit code that says retrying cannot help."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_metadata(owner, name, labels),
        "spec": {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": min(completions, parallelism),
            "backoffLimitPerIndex": retries,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": fatal_exit_codes_fail_the_index(),
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
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
    batching = spec.batching
    return indexed_job(owner, job_name(owner.name, run_number),
                       {owner.label: owner.name, LABEL_RUN: str(run_number)}, len(slices),
                       batching.parallelism if batching else 1,
                       batching.retries_per_batch if batching else 2,
                       _export_pod(spec, defaults, ["export"], plan, True))


SEAL_RETRIES = 3
"""Pods a seal gets (each retries S3 within FERRY_S3_RETRY_SECONDS): only S3 can fail it."""


def seal_job_name(export_job: str, run_number: int) -> str:
    """``<job>-<n>-seal``, shortened with a hash of the name where it would pass 63."""
    return suffixed_name(export_job, f"-{run_number}-seal")


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
    plan = worker_plan(owner, spec, run_dir, slices,
                       seal=Seal(run.id, cast(RunOutcome, run.phase.value)))
    return indexed_job(owner, seal_job_name(owner.name, run.number),
                       {owner.label: owner.name, LABEL_SEAL: str(run.number)}, 1, 1,
                       SEAL_RETRIES, _export_pod(spec, defaults, ["seal"], plan, False))
