"""The I/O around `ferry.reconcile.groups.reconcile_group`: observe, decide, act.

Like the ExportJob controller: the group and each member are read fresh (GET), status
is replaced with the resourceVersion read (a concurrent write fails with 409 and the
key is retried), and the group never touches its members: after a status write it only
wakes the members it asks something of, whose own reconciler reads the request from
the `GroupRegistry`. Groups have their own work queue, so their keys never mix with
ExportJob keys.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from pydantic import ValidationError

from ferry.api.jobgroup import JobGroupSpec, JobGroupStatus
from ferry.api.status import ExportJobStatus
from ferry.constants import EXPORTJOB_PLURAL, GROUP, JOBGROUP_PLURAL, VERSION
from ferry.controller.groupregistry import GroupRegistry
from ferry.controller.reconciler import Controller, invalid_spec_message, utc_now
from ferry.controller.workqueue import WorkQueue
from ferry.reconcile.conditions import mark_invalid_spec
from ferry.reconcile.groups import GroupDecision, GroupObservation, MemberView, reconcile_group
from ferry.reconcile.observe import parse_time
from ferry.reconcile.runs import Event

log = logging.getLogger("ferry.controller.groups")


def member_view(obj: dict[str, Any]) -> MemberView:
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
class GroupController:
    jobs: Controller
    """The ExportJob controller: its API client, its queue (to wake members), its events."""
    registry: GroupRegistry
    queue: WorkQueue = field(default_factory=WorkQueue)
    clock: Callable[[], dt.datetime] = utc_now

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.jobs.api)

    async def run_worker(self) -> None:
        while True:
            key = await self.queue.get()
            namespace, name = cast(tuple[str, str], key)
            try:
                await self.reconcile(namespace, name)
            except ApiException as e:
                level = logging.INFO if e.status == 409 else logging.WARNING
                log.log(level, "reconcile group %s/%s: API %s %s; retrying", namespace, name,
                        e.status, e.reason)
                self.queue.add_after(key, 1.0 if e.status == 409 else 5.0)
            except Exception:
                log.exception("reconcile group %s/%s failed; retrying in 10s", namespace, name)
                self.queue.add_after(key, 10.0)
            finally:
                self.queue.done(key)

    async def reconcile(self, namespace: str, name: str) -> None:
        try:
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, JOBGROUP_PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                self.registry.forget(namespace, name)
                self.queue.forget((namespace, name))
                return
            raise
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return
        now = self.clock()
        try:
            spec = JobGroupSpec.model_validate(obj.get("spec") or {})
        except ValidationError as e:
            await self.report_invalid_spec(obj, invalid_spec_message(e), now)
            return
        status = JobGroupStatus.model_validate(obj.get("status") or {})
        names = set(spec.members)
        if status.current_run is not None:
            names |= {m.name for m in status.current_run.members or []}
        observation = GroupObservation(
            name=name,
            generation=meta.get("generation") or 0,
            created_at=parse_time(meta.get("creationTimestamp")) or now,
            annotations=meta.get("annotations") or {},
            spec=spec,
            status=status,
            members=await self.observe_members(namespace, sorted(names)),
            now=now,
        )
        await self.act(obj, status, reconcile_group(observation))

    async def observe_members(self, namespace: str, names: list[str]) -> dict[str, MemberView]:
        async def get(member: str) -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, EXPORTJOB_PLURAL, member)
            except ApiException as e:
                if e.status == 404:
                    return None
                raise
            return found

        found = await asyncio.gather(*(get(member) for member in names))
        return {member: member_view(obj) for member, obj in zip(names, found, strict=True)
                if obj is not None}

    async def act(self, obj: dict[str, Any], old: JobGroupStatus,
                  decision: GroupDecision) -> None:
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if decision.status != old:
            written = await self.write_status(obj, decision.status)
            for member in self.registry.observe(namespace, name, written):
                self.jobs.queue.add((namespace, member))
        for event in decision.events:
            await self.jobs.post_event(obj, event)
        if decision.delete_self:
            await self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, JOBGROUP_PLURAL, name)
            return
        if decision.requeue_after is not None:
            self.queue.add_after((namespace, name), decision.requeue_after)

    async def write_status(self, obj: dict[str, Any], status: JobGroupStatus) -> dict[str, Any]:
        meta = obj["metadata"]
        written: dict[str, Any] = await self.custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], JOBGROUP_PLURAL, meta["name"],
            {**obj, "status": status.to_k8s()})
        return written

    async def report_invalid_spec(self, obj: dict[str, Any], message: str,
                                  now: dt.datetime) -> None:
        """A spec the schema let through but the models reject: Ready=False, no runs."""
        try:
            status = JobGroupStatus.model_validate(obj.get("status") or {})
        except ValidationError:
            status = JobGroupStatus()
        if mark_invalid_spec(status, message, now, obj["metadata"].get("generation")):
            await self.write_status(obj, status)
            await self.jobs.post_event(obj, Event("Warning", "InvalidSpec", message))
