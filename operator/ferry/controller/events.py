"""Events, posted one way for every kind: in the background, after the runs' own writes.

Events are best effort (a failure is only logged), and at the top of the hour one more
round trip per run, awaited, was a fifth of the time to create every run's Job
(bench/operator_scale.py). So a reconcile never waits for one: the Event's body is made
at once (a held Event keeps a few hundred bytes, not the whole object: with 10,000
Events held at a slot, the operator's RSS grew by ~300 MB while they held ExportJobs)
and posted once no due run waits, by at most `EVENT_POSTERS` requests at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ferry.controller.kube import ApiError, Body, KubeApi
from ferry.reconcile.lifecycle import Event

log = logging.getLogger("ferry.controller.events")

EVENT_POSTERS = 16
"""Events posted at once: a thousand runs starting together must not put a thousand
Event POSTs between the API server and the runs' own writes; Events may lag."""
MAX_EVENT_MESSAGE = 1024
"""The API server's limit for an Event's message (longer ones are refused)."""


def event_body(obj: Body, event: Event, now: dt.datetime) -> Body:
    """The core/v1 Event about ``obj``, as plain JSON (no model (de)serialization)."""
    meta = obj["metadata"]
    stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion")},
        "type": event.type, "reason": event.reason,
        "message": event.message[:MAX_EVENT_MESSAGE],
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        "source": {"component": "ferry-operator"},
        "reportingComponent": "ferry.dev/operator", "reportingInstance": "ferry-operator",
    }


@dataclass
class EventPoster:
    kube: KubeApi
    calm: Callable[[], Awaitable[None]]
    """Returns once no due run waits (`WorkQueue.calm` of the ExportJob queue)."""
    clock: Callable[[], dt.datetime]
    posters: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(EVENT_POSTERS))
    pending: set[asyncio.Task[None]] = field(default_factory=set)

    def post(self, obj: Body, events: list[Event]) -> None:
        """Post ``events`` about ``obj`` later; never waits."""
        for event in events:
            task = asyncio.create_task(self._post_when_calm(event_body(obj, event, self.clock())))
            self.pending.add(task)
            task.add_done_callback(self._posted)

    async def drain(self, timeout: float) -> None:
        """Give Events still waiting (held back by a slot) up to ``timeout`` seconds."""
        if self.pending:
            await asyncio.wait(set(self.pending), timeout=timeout)

    async def _post_when_calm(self, body: Body) -> None:
        """At a slot, Events go after the runs' Jobs: an Event a few seconds late costs
        nobody; a run's Job a few seconds late is the latency that matters."""
        await self.calm()
        target = body["involvedObject"]
        try:
            async with self.posters:
                await self.kube.create_event(target["namespace"], body)
        except ApiError as e:
            log.warning("event %s on %s/%s not posted: %s", body["reason"],
                        target["namespace"], target["name"], e.reason)

    def _posted(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("event not posted: %r", task.exception())
