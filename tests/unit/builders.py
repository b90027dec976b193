"""Fluent builders for the controller's inputs (after velero's pkg/builder).

A test states only what matters to it: `spec().hourly(every=4, minute=15).build()` for
the pure reconcile functions, `exportjob("contacts").hourly().with_status(...).build()`
and `jobgroup("nightly", "a", "b").build()` for whole objects as the API server
stores them (the controller's I/O tests, tests/unit/test_controller_loop.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from ferry.api.exportjob import ExportJobSpec
from ferry.api.importjob import ImportJobSpec
from ferry.api.jobgroup import JobGroupSpec, JobGroupStatus
from ferry.api.status import ExportJobStatus, ImportJobStatus, RunPhase, RunStatus, run_id
from ferry.constants import (
    EXPORTJOB_KIND,
    FINALIZER,
    IMPORTJOB_KIND,
    JOBGROUP_KIND,
    LABEL_IMPORTJOB,
)
from ferry.reconcile.importrules import IMPORT_RULES, ExportView
from ferry.reconcile.jobspec import Owner, WorkerDefaults
from ferry.reconcile.progress import JobObservation, PodObservation
from ferry.reconcile.runs import Observation, QueueView

T0 = dt.datetime(2026, 11, 22, 0, 0, tzinfo=dt.UTC)


class SpecBuilder:
    def __init__(self) -> None:
        self.doc: dict[str, Any] = {
            "title": "Contact history",
            "source": {
                "type": "postgres",
                "connectionSecretRef": {"name": "warehouse-db", "key": "dsn"},
                "table": "interactions",
                "timestampColumn": "created_at",
            },
            "output": {
                "s3": {"bucket": "exports", "prefix": "ferry",
                       "credentialsSecretRef": {"name": "bucket", "accessKeyIdKey": "id",
                                                "secretAccessKeyKey": "secret"}},
                "format": "csv",
            },
        }

    def set(self, path: str, value: Any) -> SpecBuilder:
        target = self.doc
        *parents, leaf = path.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
        return self

    def hourly(self, every: int = 1, minute: int = 0) -> SpecBuilder:
        return self.set("schedule", {"hourly": {"every": every, "minute": minute}})

    def once(self, at: str | None = None) -> SpecBuilder:
        return self.set("schedule", {"once": {"at": at} if at else {}})

    def relative(self, last: str) -> SpecBuilder:
        return self.set("timeframe", {"relative": {"last": last}})

    def incremental(self, initial_start: str | None = None) -> SpecBuilder:
        body = {"initialStart": initial_start} if initial_start else {}
        return self.set("timeframe", {"incremental": body})

    def batches(self, count: int, retries: int = 1) -> SpecBuilder:
        return self.set("batching", {"batches": count, "retriesPerBatch": retries})

    def build(self) -> ExportJobSpec:
        return ExportJobSpec.model_validate(self.doc)


def spec() -> SpecBuilder:
    return SpecBuilder()


def observation(
    job_spec: ExportJobSpec,
    now: dt.datetime,
    status: ExportJobStatus | None = None,
    jobs: list[JobObservation] | None = None,
    annotations: dict[str, str] | None = None,
    queue: QueueView | None = None,
    created_at: dt.datetime = T0 - dt.timedelta(minutes=1),
) -> Observation:
    return Observation(
        owner=Owner(name="contacts", namespace="team-a", uid="uid-1"),
        generation=1,
        created_at=created_at,
        annotations=annotations or {},
        spec=job_spec,
        status=status or ExportJobStatus(),
        jobs=jobs or [],
        queue=queue or QueueView(),
        now=now,
        worker=WorkerDefaults(image="ferry-worker:test", service_account="ferry-worker"),
    )


def finished_job(run_number: int, completions: int, failed: set[int] | None = None,
                 records: int = 10) -> JobObservation:
    """A Job whose indexes all ended; ``failed`` ones exhausted their retries."""
    failed = failed or set()
    pods = [
        PodObservation(
            completion_index=i, phase="Failed" if i in failed else "Succeeded",
            created_at=T0,
            summary=({"reason": "relation \"x\" does not exist"} if i in failed else
                     {"records": records, "bytes": 100, "files": [{"key": f"f{i}"}]}),
        )
        for i in range(completions)
    ]
    return JobObservation(
        name=f"contacts-{run_number}", run_number=run_number, completions=completions,
        finished="Failed" if failed else "Complete",
        completed_indexes=frozenset(set(range(completions)) - failed),
        failed_indexes=frozenset(failed), pods=pods,
    )


class ExportJobBuilder:
    """An ExportJob object: metadata, a typed spec (`SpecBuilder`) and a typed status."""

    def __init__(self, name: str, namespace: str) -> None:
        self.name, self.namespace = name, namespace
        self.spec = SpecBuilder()
        self.status: ExportJobStatus | None = None
        self.annotations: dict[str, str] = {}
        self.finalizers: list[str] = []

    def hourly(self, every: int = 1, minute: int = 0) -> ExportJobBuilder:
        self.spec.hourly(every, minute)
        return self

    def once(self, at: str | None = None) -> ExportJobBuilder:
        self.spec.once(at)
        return self

    def suspended(self) -> ExportJobBuilder:
        self.spec.set("suspend", True)
        return self

    def annotated(self, key: str, value: str) -> ExportJobBuilder:
        self.annotations[key] = value
        return self

    def finalized(self) -> ExportJobBuilder:
        """As the operator leaves it after its first pass: holding Ferry's finalizer."""
        self.finalizers = [FINALIZER]
        return self

    def with_status(self, status: ExportJobStatus) -> ExportJobBuilder:
        self.status = status
        return self

    def running(self, number: int, phase: RunPhase = RunPhase.IN_PROGRESS,
                trigger: str = "manual") -> ExportJobBuilder:
        """A status whose current run is ``number``, in ``phase``."""
        self.status = ExportJobStatus(
            run_counter=number,
            current_run=RunStatus(id=run_id(self.name, number), number=number,
                                  trigger=trigger, phase=phase, queued_at=T0,
                                  job_name=f"{self.name}-{number}"))
        return self

    def build(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        if self.finalizers:
            meta["finalizers"] = list(self.finalizers)
        body: dict[str, Any] = {"apiVersion": "ferry.dev/v1alpha1", "kind": EXPORTJOB_KIND,
                                "metadata": meta, "spec": self.spec.build().to_k8s()}
        if self.status is not None:
            body["status"] = self.status.to_k8s()
        return body


def exportjob(name: str = "contacts", namespace: str = "team-a") -> ExportJobBuilder:
    return ExportJobBuilder(name, namespace)


class JobGroupBuilder:
    """A JobGroup object: its members in order, a typed status."""

    def __init__(self, name: str, namespace: str, members: list[str]) -> None:
        self.name, self.namespace = name, namespace
        self.doc: dict[str, Any] = {"title": "Nightly load", "members": members}
        self.status: JobGroupStatus | None = None

    def hourly(self, every: int = 1, minute: int = 0) -> JobGroupBuilder:
        self.doc["schedule"] = {"hourly": {"every": every, "minute": minute}}
        return self

    def with_status(self, status: JobGroupStatus) -> JobGroupBuilder:
        self.status = status
        return self

    def build(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": "ferry.dev/v1alpha1", "kind": JOBGROUP_KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": JobGroupSpec.model_validate(self.doc).to_k8s()}
        if self.status is not None:
            body["status"] = self.status.to_k8s()
        return body


def jobgroup(name: str = "nightly", *members: str, namespace: str = "team-a"
             ) -> JobGroupBuilder:
    return JobGroupBuilder(name, namespace, list(members) or ["contacts"])


class ImportSpecBuilder:
    """An ImportJobSpec: CSV files under an S3 prefix appended to one table, unless told."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {
            "title": "Partner lists",
            "source": {"s3": {"bucket": "landing", "prefix": "partner/lists",
                              "credentialsSecretRef": {"name": "bucket", "accessKeyIdKey": "id",
                                                       "secretAccessKeyKey": "secret"}}},
            "format": "csv",
            "destination": {"type": "postgres",
                            "connectionSecretRef": {"name": "crm-db", "key": "dsn"},
                            "table": "crm.lists"},
        }

    def set(self, key: str, value: Any) -> ImportSpecBuilder:
        self.doc[key] = value
        return self

    def from_export(self, name: str, run: str | None = None) -> ImportSpecBuilder:
        return self.set("source", {"fromExport": {"name": name, **({"run": run} if run
                                                                    else {})}})

    def build(self) -> ImportJobSpec:
        return ImportJobSpec.model_validate(self.doc)


def import_spec() -> ImportSpecBuilder:
    return ImportSpecBuilder()


def import_observation(job_spec: ImportJobSpec, now: dt.datetime,
                       status: ImportJobStatus | None = None,
                       jobs: list[JobObservation] | None = None,
                       annotations: dict[str, str] | None = None,
                       inputs: ExportView | None = None) -> Observation:
    """An ImportJob "lists" in team-a, as `ferry.controller.importjobs` observes it."""
    return dataclasses.replace(
        observation(job_spec, now, status or ImportJobStatus(), jobs, annotations),  # type: ignore[arg-type]
        owner=Owner(name="lists", namespace="team-a", uid="uid-2", kind=IMPORTJOB_KIND,
                    label=LABEL_IMPORTJOB),
        rules=IMPORT_RULES, inputs=inputs)
