"""JobGroup as a kind of the reconcile loop: it follows its members and never touches them.

Decided by `ferry.reconcile.groups.reconcile_group`. The members are read from their
kind's loop's body cache (the ExportJob loop's, or for an ``importjob/<name>`` the
ImportJob loop's: the watch plus the operator's own writes; a GET
only for a member it holds nothing of), not fetched on every pass. After a status write
the group only wakes the members it asks something of, whose own pass reads the request
from the `GroupRegistry` (level-based: requests derive from the groups' status).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ferry.api.jobgroup import JobGroupSpec, JobGroupStatus, member_kind
from ferry.api.status import ExportJobStatus
from ferry.constants import JOBGROUP_PLURAL
from ferry.controller.groupregistry import GroupRegistry
from ferry.controller.kube import Body
from ferry.controller.loop import Key, Loop, Resource, unserialized
from ferry.reconcile.groups import GroupDecision, GroupObservation, MemberView, reconcile_group
from ferry.reconcile.observe import parse_time

JobGroupLoop = Loop[JobGroupSpec, JobGroupStatus, GroupObservation, GroupDecision]
JobGroupResource = Resource[JobGroupSpec, JobGroupStatus]


def member_view(obj: Body) -> MemberView:
    """A member as the group sees it; an unreadable status reads as "never ran"."""
    try:
        status = ExportJobStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        status = ExportJobStatus()
    return MemberView(
        suspend=bool((obj.get("spec") or {}).get("suspend")),
        deleting=bool(obj["metadata"].get("deletionTimestamp")),
        current_run=status.current_run,
        history=tuple(status.history or []),
        group_runs=tuple(status.group_runs or []),
    )


@dataclass
class JobGroups:
    loops: Mapping[str, Loop[Any, Any, Any, Any]]
    """The loop of each members' kind (ExportJob, ImportJob): its cache to read them, its
    queue to wake them."""
    registry: GroupRegistry

    plural = JOBGROUP_PLURAL
    spec_model = JobGroupSpec
    status_model = JobGroupStatus
    finalizer: str | None = None

    def serialized(self, resource: JobGroupResource
                   ) -> contextlib.AbstractAsyncContextManager[None]:
        return unserialized()

    async def observe(self, resource: JobGroupResource) -> GroupObservation:
        meta, spec, status = resource.meta, resource.spec, resource.status
        names = set(spec.members)
        if status.current_run is not None:
            names |= {m.name for m in status.current_run.members or []}
        return GroupObservation(
            name=meta["name"],
            generation=meta.get("generation") or 0,
            created_at=parse_time(meta.get("creationTimestamp")) or resource.now,
            annotations=meta.get("annotations") or {},
            spec=spec,
            status=status,
            members=await self.observe_members(meta["namespace"], sorted(names)),
            now=resource.now,
        )

    decide = staticmethod(reconcile_group)

    def wake(self, namespace: str, member: str) -> None:
        """Queue a member (``importjob/<name>`` or an ExportJob's name) for a reconcile."""
        kind, name = member_kind(member)
        self.loops[kind].queue.add((namespace, name))

    async def observe_members(self, namespace: str, names: list[str]) -> dict[str, MemberView]:
        found = await asyncio.gather(*(self.loops[kind].read(namespace, name)
                                       for kind, name in map(member_kind, names)))
        return {name: member_view(obj) for name, obj in zip(names, found, strict=True)
                if obj is not None}

    async def act(self, loop: JobGroupLoop, resource: JobGroupResource,
                  decision: GroupDecision) -> None:
        written = resource.obj
        if decision.status != resource.status:
            written = await loop.write_status(resource.obj, decision.status)
            for member in self.registry.observe(*resource.key, written):
                self.wake(resource.key[0], member)
        await loop.finish(resource, written, decision)

    def after(self, loop: JobGroupLoop, resource: JobGroupResource,
              decision: GroupDecision) -> None:
        return None

    def invalid(self, key: Key) -> None:
        return None

    def forget(self, key: Key) -> None:
        self.registry.forget(*key)
