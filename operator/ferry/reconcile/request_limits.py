"""Request annotations too long to record: refused once, with a Warning that says why.

A request annotation's value is recorded in ``status.lastHandled`` so that re-applying
it does nothing (Flux-style). The schema caps those fields (64 characters, 128 for
backfill), and a longer value written there would make the API server refuse every
status write of the object, wedging it; so ``new_request`` ignores such a value. Ignored
silently, a user's ``kubectl annotate`` would simply do nothing. This module finds those
values and says so, once per value: the refusal is remembered in lastHandled as a short
digest of the value (``refused:<sha256 prefix>``), which fits the field, so the next
pass neither announces it again nor mistakes it for a request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from ferry.api.common import LastHandledRequests
from ferry.constants import (
    ANNOTATION_BACKFILL,
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
)

REQUEST_FIELDS: Mapping[str, str] = {
    ANNOTATION_RUN_REQUESTED_AT: "run_requested_at",
    ANNOTATION_STOP_REQUESTED_AT: "stop_requested_at",
    ANNOTATION_RETRY_REQUESTED_AT: "retry_requested_at",
    ANNOTATION_BACKFILL: "backfill",
}
"""Each request annotation and the status.lastHandled field that records it."""

REQUEST_LIMITS: Mapping[str, int] = {
    ANNOTATION_RUN_REQUESTED_AT: 64,
    ANNOTATION_STOP_REQUESTED_AT: 64,
    ANNOTATION_RETRY_REQUESTED_AT: 64,
    ANNOTATION_BACKFILL: 128,
}
"""The maxLength of that field in the status schema (a unit test keeps them equal)."""

EXPORTJOB_REQUESTS = tuple(REQUEST_FIELDS)
JOBGROUP_REQUESTS = (ANNOTATION_RUN_REQUESTED_AT, ANNOTATION_STOP_REQUESTED_AT,
                     ANNOTATION_RETRY_REQUESTED_AT)
"""A JobGroup has no backfill: that annotation means nothing on it."""


def request_limit(key: str) -> int:
    """The longest value of a request annotation the operator can act on."""
    return REQUEST_LIMITS[key]


def refused_marker(value: str) -> str:
    """What lastHandled records for a refused value: short, and the same for the same value."""
    return "refused:" + hashlib.sha256(value.encode()).hexdigest()[:40]


def refuse_oversized_requests(
    annotations: Mapping[str, str], handled: LastHandledRequests, keys: Iterable[str]
) -> tuple[LastHandledRequests, list[str]]:
    """lastHandled with each new over-long request marked refused, and one Warning
    message per such request (none for a value already refused on an earlier pass)."""
    result = handled.model_copy()
    messages: list[str] = []
    for key in keys:
        value = annotations.get(key)
        limit = request_limit(key)
        if value is None or len(value) <= limit:
            continue
        marker = refused_marker(value)
        field = REQUEST_FIELDS[key]
        if getattr(result, field) == marker:
            continue
        setattr(result, field, marker)
        hint = ('"<from>/<to>" in RFC 3339' if key == ANNOTATION_BACKFILL
                else "the current time in RFC 3339, as kubectl ferry does")
        messages.append(
            f"annotation {key} ignored: its value is {len(value)} characters long, at most "
            f"{limit} are accepted (status.lastHandled records it); set a new value: {hint}")
    return result, messages
