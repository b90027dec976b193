"""What an ImportJob's rules read besides its spec: the ExportJob a ``fromExport`` names.

Read from the ExportJob loop's body cache (the ExportJob watch plus the operator's own
writes; a GET only for an export it holds nothing of), as a JobGroup reads its members.
An import that reads files from S3 reads nothing else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ferry.api.exportjob import ExportJobSpec
from ferry.api.importjob import ImportJobSpec
from ferry.api.jobgroup import IMPORT_MEMBER_PREFIX
from ferry.api.status import ExportJobStatus, ImportJobStatus
from ferry.constants import IMPORTJOB_PLURAL, LABEL_IMPORTJOB
from ferry.controller.groupregistry import GroupRegistry
from ferry.controller.kube import Body, KubeApi
from ferry.controller.loop import Loop
from ferry.controller.runjobs import RunJobResource, RunJobs
from ferry.reconcile.importrules import IMPORT_RULES, ExportView
from ferry.reconcile.jobspec import WorkerDefaults


def export_view(name: str, namespace: str, obj: Body | None) -> ExportView:
    """An ExportJob as an import sees it; a spec or status that does not read gives no
    bucket or no runs (the import's run then fails naming the export)."""
    if obj is None:
        return ExportView(name=name, namespace=namespace)
    try:
        bucket = ExportJobSpec.model_validate(obj.get("spec") or {}).output.s3
    except ValidationError:
        bucket = None
    try:
        status = ExportJobStatus.model_validate(obj.get("status") or {})
        runs = tuple([*filter(None, [status.last_run]), *(status.history or [])])
    except ValidationError:
        runs = ()
    return ExportView(name=name, namespace=namespace, bucket=bucket, runs=runs, found=True)


@dataclass
class ExportJobInputs:
    """`RunJobs.inputs` of the ImportJob kind."""

    exports: Loop[Any, Any, Any, Any]
    """The ExportJob loop: its cache to read the export from."""

    async def __call__(self, resource: RunJobResource) -> ExportView | None:
        spec: ImportJobSpec = resource.spec
        source = spec.source.from_export
        if source is None:
            return None
        namespace = resource.key[0]
        return export_view(source.name, namespace,
                           await self.exports.read(namespace, source.name))


def import_jobs(kube: KubeApi, worker: WorkerDefaults, exports: Loop[Any, Any, Any, Any],
                groups: GroupRegistry,
                stall_after: dt.timedelta = dt.timedelta(minutes=15)) -> RunJobs:
    """The ImportJob kind; ``exports`` is the ExportJob loop its fromExport reads from,
    ``groups`` what JobGroups ask of every member of either kind."""
    return RunJobs(kube=kube, worker=worker, rules=IMPORT_RULES, plural=IMPORTJOB_PLURAL,
                   spec_model=ImportJobSpec, status_model=ImportJobStatus,
                   label=LABEL_IMPORTJOB, member_prefix=IMPORT_MEMBER_PREFIX,
                   stall_after=stall_after, inputs=ExportJobInputs(exports), groups=groups)
