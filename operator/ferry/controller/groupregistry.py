"""What every JobGroup asks of its members, and which groups each ExportJob belongs to.

The ExportJob reconciler reads a job's `GroupRequest`s from here (level-based: the
requests are derived from the groups' current status, never delivered as one-off
events), and the ExportJob watch uses it to wake the groups a job belongs to when
something a group follows changes. Fed by the JobGroup watch and by the group
controller's own status writes; entries only move forward by resourceVersion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ferry.api.jobgroup import JobGroupStatus
from ferry.reconcile.groups import member_requests, member_waits
from ferry.reconcile.requests import GroupRequest

Key = tuple[str, str]


@dataclass(frozen=True)
class GroupEntry:
    members: frozenset[str]
    """Members of the spec and of the group run in flight (which keeps its own list)."""
    requests: tuple[tuple[str, GroupRequest], ...]
    resource_version: int


def resource_version(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def entry_from(obj: dict[str, Any]) -> GroupEntry:
    members = set((obj.get("spec") or {}).get("members") or [])
    try:
        status: JobGroupStatus | None = JobGroupStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        status = None
    if status is not None and status.current_run is not None:
        members |= {m.name for m in status.current_run.members or []}
    return GroupEntry(
        members=frozenset(members),
        requests=(*member_requests(status), *member_waits(status)),
        resource_version=resource_version((obj.get("metadata") or {}).get("resourceVersion")),
    )


def member_state(obj: dict[str, Any]) -> tuple[Any, ...]:
    """The parts of an ExportJob a group follows; progress-only writes leave it unchanged."""
    status = obj.get("status") or {}
    run = status.get("currentRun") or {}
    return (
        bool((obj.get("spec") or {}).get("suspend")),
        bool((obj.get("metadata") or {}).get("deletionTimestamp")),
        run.get("id"), run.get("phase"), run.get("message"),
        (status.get("lastRun") or {}).get("id"),
        tuple(r.get("groupRun") for r in status.get("groupRuns") or []),
    )


class GroupRegistry:
    def __init__(self) -> None:
        self._groups: dict[Key, GroupEntry] = {}
        self._member_states: dict[Key, tuple[Any, ...]] = {}

    def observe(self, namespace: str, name: str, obj: dict[str, Any]) -> list[str]:
        """Record a group; returns the members it asks something of, or asked before this
        update (to wake them: a member no longer waiting must show it)."""
        entry = entry_from(obj)
        known = self._groups.get((namespace, name))
        if known is None or entry.resource_version >= known.resource_version:
            self._groups[(namespace, name)] = entry
        before = [member for member, _ in known.requests] if known else []
        now = [member for member, _ in self._groups[(namespace, name)].requests]
        return list(dict.fromkeys([*now, *before]))

    def forget(self, namespace: str, name: str) -> None:
        self._groups.pop((namespace, name), None)

    def requests_for(self, namespace: str, job: str) -> tuple[GroupRequest, ...]:
        """What the groups in ``namespace`` currently ask of ExportJob ``job``."""
        return tuple(request for (ns, _), entry in self._groups.items() if ns == namespace
                     for member, request in entry.requests if member == job)

    def groups_of(self, namespace: str, job: str) -> list[Key]:
        return [(ns, group) for (ns, group), entry in self._groups.items()
                if ns == namespace and job in entry.members]

    def member_changed(self, namespace: str, job: str, obj: dict[str, Any] | None) -> bool:
        """Record what groups follow of an ExportJob (None: deleted); True if it changed."""
        key = (namespace, job)
        if obj is None:
            return self._member_states.pop(key, None) is not None
        state = member_state(obj)
        changed = self._member_states.get(key) != state
        self._member_states[key] = state
        return changed
