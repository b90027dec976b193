"""Over-long request annotations: refused once, with a Warning naming the annotation
and its limit, and never written into status.lastHandled as they are."""

from __future__ import annotations

import pytest

from ferry.api.common import LastHandledRequests
from ferry.api.jobgroup import JobGroupSpec, JobGroupStatus
from ferry.constants import (
    ANNOTATION_BACKFILL,
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
)
from ferry.reconcile.groups import GroupObservation, MemberView, reconcile_group
from ferry.reconcile.lifecycle import Event
from ferry.reconcile.request_limits import (
    EXPORTJOB_REQUESTS,
    JOBGROUP_REQUESTS,
    REQUEST_FIELDS,
    REQUEST_LIMITS,
    refuse_oversized_requests,
    refused_marker,
)
from ferry.reconcile.runs import reconcile

from .builders import T0, observation, spec


def test_the_limits_are_the_status_schemas() -> None:
    """A limit above the schema's would wedge the object; one below refuses good values."""
    properties = LastHandledRequests.model_json_schema(by_alias=True)["properties"]
    for key, field in REQUEST_FIELDS.items():
        alias = LastHandledRequests.model_fields[field].alias or field
        string = next(t for t in properties[alias]["anyOf"] if t["type"] == "string")
        assert string["maxLength"] == REQUEST_LIMITS[key], key


@pytest.mark.parametrize(("key", "limit"), [
    (ANNOTATION_RUN_REQUESTED_AT, 64), (ANNOTATION_STOP_REQUESTED_AT, 64),
    (ANNOTATION_RETRY_REQUESTED_AT, 64), (ANNOTATION_BACKFILL, 128)])
def test_an_over_long_request_is_refused_with_a_warning_naming_it_and_its_limit(
    key: str, limit: int
) -> None:
    value = "9" * (limit + 1)
    handled, messages = refuse_oversized_requests({key: value}, LastHandledRequests(),
                                                  EXPORTJOB_REQUESTS)
    assert len(messages) == 1
    assert messages[0].startswith(
        f"annotation {key} ignored: its value is {limit + 1} characters long, "
        f"at most {limit} are accepted")
    recorded = getattr(handled, REQUEST_FIELDS[key])
    assert recorded == refused_marker(value)
    assert len(recorded) <= limit
    LastHandledRequests.model_validate(handled.model_dump())  # still fits the schema


def test_the_same_refused_value_is_announced_once() -> None:
    value = "x" * 65
    annotations = {ANNOTATION_RUN_REQUESTED_AT: value}
    handled, first = refuse_oversized_requests(annotations, LastHandledRequests(),
                                               EXPORTJOB_REQUESTS)
    again, second = refuse_oversized_requests(annotations, handled, EXPORTJOB_REQUESTS)
    assert (len(first), second, again) == (1, [], handled)
    other, third = refuse_oversized_requests({ANNOTATION_RUN_REQUESTED_AT: "y" * 65}, handled,
                                             EXPORTJOB_REQUESTS)
    assert len(third) == 1 and other.run_requested_at != handled.run_requested_at


def test_values_within_the_limit_and_other_annotations_are_left_alone() -> None:
    before = LastHandledRequests(run_requested_at="2026-11-22T00:00:00.000000Z")
    annotations = {ANNOTATION_RUN_REQUESTED_AT: "r" * 64, ANNOTATION_BACKFILL: "b" * 128,
                   "ferry.dev/requested-by": "u" * 500}
    handled, messages = refuse_oversized_requests(annotations, before, EXPORTJOB_REQUESTS)
    assert (handled, messages) == (before, [])


def test_a_jobgroup_ignores_backfill_which_means_nothing_to_it() -> None:
    handled, messages = refuse_oversized_requests({ANNOTATION_BACKFILL: "b" * 200},
                                                  LastHandledRequests(), JOBGROUP_REQUESTS)
    assert (handled, messages) == (LastHandledRequests(), [])


def test_an_exportjob_warns_once_and_still_takes_the_next_good_request() -> None:
    """Through the whole pass: a Warning event, no run, a status the schema accepts; the
    same value on the next pass says nothing; a valid request then runs."""
    job = spec().build()
    too_long = {ANNOTATION_RUN_REQUESTED_AT: "2026-11-22T00:00:00Z" + "0" * 60}
    first = reconcile(observation(job, T0, annotations=too_long))
    assert first.events == [Event(
        "Warning", "RequestTooLong",
        "annotation ferry.dev/run-requested-at ignored: its value is 80 characters long, "
        "at most 64 are accepted (status.lastHandled records it); set a new value: the "
        "current time in RFC 3339, as kubectl ferry does")]
    assert first.status.current_run is None
    again = reconcile(observation(job, T0, status=first.status, annotations=too_long))
    assert again.events == [] and again.status.current_run is None
    fixed = reconcile(observation(job, T0, status=again.status,
                                  annotations={ANNOTATION_RUN_REQUESTED_AT: "1"}))
    assert fixed.status.current_run is not None


def test_a_jobgroup_warns_too() -> None:
    decision = reconcile_group(GroupObservation(
        name="nightly", generation=1, created_at=T0, now=T0,
        annotations={ANNOTATION_STOP_REQUESTED_AT: "s" * 65},
        spec=JobGroupSpec.model_validate({"title": "Nightly", "members": ["a"]}),
        status=JobGroupStatus(), members={"a": MemberView()}))
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "RequestTooLong")]
    assert "ferry.dev/stop-requested-at ignored" in decision.events[0].message
