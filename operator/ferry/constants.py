"""Names shared by the API, the operator, the worker and the CLI.

Every label key, annotation name and API coordinate lives here once, so a rename
is one edit and the operator and the worker can never disagree on a key.
"""

from typing import Final

GROUP: Final = "ferry.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

EXPORTJOB_KIND: Final = "ExportJob"
EXPORTJOB_PLURAL: Final = "exportjobs"
JOBGROUP_KIND: Final = "JobGroup"
JOBGROUP_PLURAL: Final = "jobgroups"
IMPORTJOB_KIND: Final = "ImportJob"
IMPORTJOB_PLURAL: Final = "importjobs"

EXPORTJOB_SHORT_NAME: Final = "ej"
JOBGROUP_SHORT_NAME: Final = "jg"
IMPORTJOB_SHORT_NAME: Final = "ij"
CATEGORY: Final = "ferry"
"""The CRDs' category: ``kubectl get ferry`` lists every Ferry kind."""

FINALIZER: Final = f"{GROUP}/run-guard"
"""Keeps an ExportJob whose run is in progress until the run ends (docs/api.md)."""

LABEL_JOB: Final = f"{GROUP}/job"
"""On an ExportJob's Jobs and pods: the ExportJob's name."""
LABEL_IMPORTJOB: Final = f"{GROUP}/importjob"
"""On an ImportJob's Jobs and pods instead of LABEL_JOB: the ImportJob's name (one key per
kind, so an ExportJob and an ImportJob of one name never select each other's Jobs)."""
LABEL_RUN: Final = f"{GROUP}/run"
LABEL_GROUP: Final = f"{GROUP}/group"
LABEL_SEAL: Final = f"{GROUP}/seal"
"""On a run's seal Job (its value the run number) instead of LABEL_RUN: the one-pod Job
that writes the run marker _run.json once the run has ended (docs/worker.md)."""

ANNOTATION_PROGRESS: Final = f"{GROUP}/progress"
ANNOTATION_RUN_REQUESTED_AT: Final = f"{GROUP}/run-requested-at"
ANNOTATION_STOP_REQUESTED_AT: Final = f"{GROUP}/stop-requested-at"
ANNOTATION_RETRY_REQUESTED_AT: Final = f"{GROUP}/retry-requested-at"
ANNOTATION_BACKFILL: Final = f"{GROUP}/backfill"
"""A backfill request: an RFC 3339 interval "<from>/<to>"; a new value is a new request."""
ANNOTATION_CREATED_BY: Final = f"{GROUP}/created-by"
"""Set by the mutating admission webhook on CREATE: the requesting user (docs/api.md)."""
ANNOTATION_REQUESTED_BY: Final = f"{GROUP}/requested-by"
"""Set by the mutating admission webhook when a run or retry request annotation changes."""
