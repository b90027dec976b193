"""Conditions move their lastTransitionTime only when their status flips."""

from __future__ import annotations

import datetime as dt

from ferry.api.jobgroup import JobGroupStatus
from ferry.api.status import ExportJobStatus
from ferry.reconcile.conditions import mark_invalid_spec, set_condition

T0 = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def test_transition_time_moves_only_on_a_flip() -> None:
    first = set_condition(None, "Ready", True, "Valid", "ok", T0, 1)
    same = set_condition(first, "Ready", True, "Valid", "still ok", T0 + dt.timedelta(hours=1), 2)
    flipped = set_condition(same, "Ready", False, "InvalidSchedule", "bad", T0 + dt.timedelta(
        hours=2), 3)
    assert same[0].last_transition_time == T0
    assert same[0].message == "still ok"
    assert flipped[0].last_transition_time == T0 + dt.timedelta(hours=2)


def test_an_invalid_spec_is_marked_once_for_either_kind() -> None:
    for status in (ExportJobStatus(), JobGroupStatus()):
        assert mark_invalid_spec(status, "spec.title: Field required", T0, 4)
        ready = status.conditions[0] if status.conditions else None
        assert ready is not None
        assert (ready.type, ready.status, ready.reason, ready.message) == (
            "Ready", "False", "InvalidSpec", "spec.title: Field required")
        assert status.observed_generation == 4
        assert status.phase == "Invalid"
        assert not mark_invalid_spec(status, "spec.title: Field required",
                                     T0 + dt.timedelta(minutes=5), 4)
