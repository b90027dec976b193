"""Admission decisions as pure functions of an AdmissionReview's request.

The webhook (``ferry.controller.admission``) passes in the request's operation, object,
old object and requesting user, and turns the answer into kopf's response: a refusal
message, or annotation changes for the mutating webhook. No I/O here.

What the webhook adds to the CRD's own validation (docs/api.md "Where each rule is
enforced"):

* DELETE of an ExportJob or ImportJob is refused while a run is in progress, with a message that
  says how to stop it (the finalizer ``ferry.dev/run-guard`` is the fallback when the
  webhook is off: deletion then waits for the run to end).
* CREATE/UPDATE: what CEL cannot check: a full cron parse, an existing IANA time zone,
  and the pydantic model as a whole (the first error, naming its field).
* Who: ``ferry.dev/created-by`` on CREATE and ``ferry.dev/requested-by`` when a run or
  retry request annotation changes, from the request's authenticated user. Neither can
  be forged or removed through the API while the webhook runs: on every UPDATE the
  previous values are put back unless a new request sets ``requested-by``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ferry.api.exportjob import ExportJobSpec
from ferry.api.importjob import ImportJobSpec
from ferry.api.jobgroup import JobGroupSpec
from ferry.api.schedule import Schedule
from ferry.api.status import user_name
from ferry.constants import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_REQUESTED_BY,
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
)
from ferry.contract.limits import MAX_SHORT_TEXT_CHARACTERS
from ferry.reconcile.schedule.fires import check_schedule
from ferry.reconcile.schedule.validate import InvalidScheduleError

# The webhook endpoints: kopf serves each handler at /<handler id>, and the chart's
# webhook configurations (charts/ferry/templates/webhook.yaml) name these paths.
VALIDATE_EXPORTJOB = "validate-exportjob"
GUARD_EXPORTJOB_DELETE = "guard-exportjob-delete"
VALIDATE_JOBGROUP = "validate-jobgroup"
RECORD_USER_EXPORTJOB = "record-user-exportjob"
RECORD_USER_JOBGROUP = "record-user-jobgroup"
VALIDATE_IMPORTJOB = "validate-importjob"
GUARD_IMPORTJOB_DELETE = "guard-importjob-delete"
RECORD_USER_IMPORTJOB = "record-user-importjob"
WEBHOOK_IDS = (VALIDATE_EXPORTJOB, GUARD_EXPORTJOB_DELETE, VALIDATE_JOBGROUP,
               RECORD_USER_EXPORTJOB, RECORD_USER_JOBGROUP, VALIDATE_IMPORTJOB,
               GUARD_IMPORTJOB_DELETE, RECORD_USER_IMPORTJOB)

MAX_USER_LENGTH = MAX_SHORT_TEXT_CHARACTERS
"""status.createdBy / startedBy are ShortText: a user name is cut by ``user_name``."""

REQUEST_ANNOTATIONS = (ANNOTATION_RUN_REQUESTED_AT, ANNOTATION_RETRY_REQUESTED_AT)
"""Requests that start a run, whose requester becomes the run's startedBy."""

IN_PROGRESS = "InProgress"


@dataclass(frozen=True)
class Refusal:
    """The request is refused: ``message`` is what the user sees, ``code`` the HTTP code."""

    message: str
    code: int


def _annotations(obj: Mapping[str, Any] | None) -> dict[str, str]:
    metadata = (obj or {}).get("metadata") or {}
    return dict(metadata.get("annotations") or {})


def _deleting(obj: Mapping[str, Any] | None) -> bool:
    return bool(((obj or {}).get("metadata") or {}).get("deletionTimestamp"))


def _spec_changed(operation: str, obj: Mapping[str, Any] | None,
                  old: Mapping[str, Any] | None) -> bool:
    """Only a CREATE or a spec change is validated.

    An UPDATE that leaves the spec alone (annotations, labels, finalizers) is always
    allowed, so an object stored before a rule existed, or while the webhook was off,
    can still be stopped, annotated and have its finalizer released, and never gets
    stuck. Objects being deleted are never held up either.
    """
    if operation == "CREATE":
        return True
    if operation != "UPDATE" or _deleting(obj):
        return False
    return (obj or {}).get("spec") != (old or {}).get("spec")


def first_error(error: ValidationError, prefix: str = "spec") -> str:
    """The first pydantic error as ``spec.a.b: message``, with the YAML field names."""
    item = error.errors()[0]
    path = ".".join([prefix, *(str(part) for part in item["loc"])])
    message = str(item["msg"]).removeprefix("Value error, ")
    return f"{path}: {message}"


def _check_spec(model: type[BaseModel], spec: Any) -> str | None:
    """None if ``spec`` is valid for ``model`` and its schedule can fire, else why not."""
    try:
        parsed = model.model_validate(spec if spec is not None else {})
    except ValidationError as exc:
        return first_error(exc)
    schedule = getattr(parsed, "schedule", None)
    if isinstance(schedule, Schedule):
        try:
            check_schedule(schedule)
        except InvalidScheduleError as exc:
            return str(exc)
    return None


def check_exportjob(operation: str, obj: Mapping[str, Any] | None,
                    old: Mapping[str, Any] | None) -> Refusal | None:
    """CREATE/UPDATE of an ExportJob: the checks the CRD cannot make."""
    if not _spec_changed(operation, obj, old):
        return None
    problem = _check_spec(ExportJobSpec, (obj or {}).get("spec"))
    return Refusal(problem, 422) if problem else None


def check_importjob(operation: str, obj: Mapping[str, Any] | None,
                    old: Mapping[str, Any] | None) -> Refusal | None:
    """CREATE/UPDATE of an ImportJob: the checks the CRD cannot make."""
    if not _spec_changed(operation, obj, old):
        return None
    problem = _check_spec(ImportJobSpec, (obj or {}).get("spec"))
    return Refusal(problem, 422) if problem else None


def check_jobgroup(operation: str, obj: Mapping[str, Any] | None,
                   old: Mapping[str, Any] | None) -> Refusal | None:
    """CREATE/UPDATE of a JobGroup: the checks the CRD cannot make."""
    if not _spec_changed(operation, obj, old):
        return None
    problem = _check_spec(JobGroupSpec, (obj or {}).get("spec"))
    return Refusal(problem, 422) if problem else None


def check_exportjob_delete(operation: str, old: Mapping[str, Any] | None) -> Refusal | None:
    """DELETE of an ExportJob while a run is in progress is refused; Queued runs do not
    block (deletion cancels them)."""
    return _check_delete(operation, old, "exportjob", "")


def check_importjob_delete(operation: str, old: Mapping[str, Any] | None) -> Refusal | None:
    """DELETE of an ImportJob while a run is in progress is refused, as an ExportJob's."""
    return _check_delete(operation, old, "importjob", "importjob/")


def _check_delete(operation: str, old: Mapping[str, Any] | None, kind: str,
                  ref: str) -> Refusal | None:
    if operation != "DELETE" or old is None:
        return None
    run = ((old.get("status") or {}).get("currentRun")) or {}
    if run.get("phase") != IN_PROGRESS:
        return None
    metadata = old.get("metadata") or {}
    name = metadata.get("name", "")
    namespace = metadata.get("namespace")
    where = f" -n {namespace}" if namespace else ""
    run_id = run.get("id") or "?"
    return Refusal(
        f'{kind} "{name}" has run {run_id} in progress: stop it first with '
        f'"kubectl ferry stop {ref}{name}{where}" (or annotate '
        f"{ANNOTATION_STOP_REQUESTED_AT}), then delete",
        409,
    )


def _user(userinfo: Mapping[str, Any] | None) -> str | None:
    username = (userinfo or {}).get("username")
    return user_name(str(username)) if username else None


def record_users(operation: str, obj: Mapping[str, Any] | None,
                 old: Mapping[str, Any] | None,
                 userinfo: Mapping[str, Any] | None) -> dict[str, str | None]:
    """Annotation changes for the mutating webhook (value None: remove the annotation).

    * CREATE: ``created-by`` is the requesting user, whatever the manifest says.
    * A new value of ``run-requested-at`` or ``retry-requested-at`` (also on CREATE):
      ``requested-by`` is the requesting user.
    * Any other UPDATE puts back the stored ``created-by`` and ``requested-by``: a user
      cannot forge them, and a GitOps apply whose manifest lacks them (server-side apply
      removes fields its manager owned) does not erase them.

    Only actual changes are returned, so an unchanged object gets an empty patch.
    """
    if operation not in ("CREATE", "UPDATE"):
        return {}
    new = _annotations(obj)
    before = _annotations(old) if operation == "UPDATE" else {}
    user = _user(userinfo)
    wanted: dict[str, str | None] = {}
    wanted[ANNOTATION_CREATED_BY] = user if operation == "CREATE" else \
        before.get(ANNOTATION_CREATED_BY)
    requested = any(new.get(key) and new.get(key) != before.get(key)
                    for key in REQUEST_ANNOTATIONS)
    wanted[ANNOTATION_REQUESTED_BY] = user if requested else before.get(ANNOTATION_REQUESTED_BY)
    return {key: value for key, value in wanted.items() if new.get(key) != value}
