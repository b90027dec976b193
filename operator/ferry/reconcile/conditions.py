"""Kubernetes-convention conditions, set without touching lastTransitionTime needlessly.

A condition's lastTransitionTime must move only when its status flips; rewriting it
on every reconcile would make `kubectl wait` and GitOps health checks flap and would
turn every status write into a real change.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from ferry.api.common import Condition, ConditionReason, ConditionStatus, ConditionType
from ferry.api.status import JobPhase


def set_condition(
    conditions: list[Condition] | None,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: dt.datetime,
    generation: int | None,
) -> list[Condition]:
    """Return the list with ``type_`` set; other conditions keep their order and values."""
    wanted = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    result: list[Condition] = []
    found = False
    for condition in conditions or []:
        if condition.type != type_:
            result.append(condition)
            continue
        found = True
        transition = condition.last_transition_time if condition.status == wanted else now
        result.append(
            Condition(
                type=type_,
                status=wanted,
                reason=reason,
                message=message,
                last_transition_time=transition,
                observed_generation=generation,
            )
        )
    if not found:
        result.append(
            Condition(
                type=type_,
                status=wanted,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    return result


class HasConditions(Protocol):
    """The status of an ExportJob or a JobGroup, as far as Ready is concerned."""

    conditions: list[Condition] | None
    observed_generation: int | None
    phase: JobPhase | None


def mark_invalid_spec(status: HasConditions, message: str, now: dt.datetime,
                      generation: int | None) -> bool:
    """Ready=False and Stalled=True, reason InvalidSpec: a spec the CRD schema let through
    but the models reject (e.g. written before a rule existed); Stalled is what kstatus,
    and so Helm --wait and Flux, read. Returns whether anything changed, so
    the same bad spec is not written and announced again on every pass."""
    conditions = set_condition(status.conditions, ConditionType.READY, False,
                               ConditionReason.INVALID_SPEC,
                               message, now, generation)
    conditions = set_condition(conditions, ConditionType.STALLED, True,
                               ConditionReason.INVALID_SPEC, message, now, generation)
    if conditions == status.conditions and status.phase == JobPhase.INVALID:
        return False
    status.conditions = conditions
    status.observed_generation = generation
    status.phase = JobPhase.INVALID
    return True


def condition_is_true(conditions: list[Condition] | None, type_: str) -> bool:
    return any(c.type == type_ and c.status == ConditionStatus.TRUE for c in conditions or [])
