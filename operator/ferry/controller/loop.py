"""One reconcile loop for every kind: read, check, observe, decide, act.

A kind (`ferry.controller.exportjobs`, `ferry.controller.jobgroups`) is configuration of
this loop: its plural, its spec and status models, its finalizer, and three steps:
`observe` gathers what the decision needs (through `KubeApi`), `decide` is the pure
function of `ferry.reconcile` that says what to do, `act` does the kind's own part of it
(create a Job, wake a member). The loop does what every kind does the same way:

- reads the object from the watch-fed `BodyCache` (the watch plus the loop's own
  writes; a GET only when it holds nothing) and forgets everything of an object gone;
- adds the kind's finalizer, and stops at an object being deleted once it is released;
- reports a spec the CRD schema let through but the models reject as Ready=False,
  reason InvalidSpec, once per generation;
- writes status with the resourceVersion it read, so a decision taken on a version the
  API server has moved past is refused (409): the cache entry is dropped and the key is
  retried on a fresh GET, rather than silently overwriting anything;
- recognises its own writes when the watch brings them back (`is_echo`: by the
  resourceVersion the write returned), so they cost no reconcile: the pass that wrote
  has already acted on what it wrote;
- posts Events in the background (`EventPoster`), deletes the object when the decision
  says so (conditional on the version it wrote), requeues, and retries on errors.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from pydantic import BaseModel, ValidationError

from ferry.api.common import ConditionReason
from ferry.controller import metrics
from ferry.controller.events import EventPoster
from ferry.controller.kube import ApiError, Body, KubeApi
from ferry.controller.registry import BodyCache
from ferry.controller.workqueue import WorkQueue
from ferry.reconcile.conditions import mark_invalid_spec
from ferry.reconcile.lifecycle import Event

log = logging.getLogger("ferry.controller")

Key = tuple[str, str]
SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=BaseModel)
ObservationT = TypeVar("ObservationT")
DecisionT = TypeVar("DecisionT", bound="Outcome")

CONFLICT_RETRY = 1.0
"""Seconds before a key whose write met a newer version (409) is read again."""
API_ERROR_RETRY = 5.0
EXCEPTION_RETRY = 10.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def invalid_spec_message(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"spec.{where}: {first['msg']}"


class Outcome(Protocol):
    """The part of every kind's decision the loop carries out itself."""

    status: Any
    events: list[Event]
    delete_self: bool
    requeue_after: float | None


@dataclass
class Resource(Generic[SpecT, StatusT]):
    """One object as read at the start of a pass, with its spec and status parsed."""

    obj: Body
    spec: SpecT
    status: StatusT
    now: dt.datetime

    @property
    def meta(self) -> Body:
        return cast(Body, self.obj["metadata"])

    @property
    def key(self) -> Key:
        return self.meta["namespace"], self.meta["name"]

    @property
    def deleting(self) -> bool:
        return bool(self.meta.get("deletionTimestamp"))


class Kind(Protocol[SpecT, StatusT, ObservationT, DecisionT]):
    """What makes the loop reconcile one kind."""

    plural: str
    spec_model: type[SpecT]
    status_model: type[StatusT]
    finalizer: str | None
    """Held while the object exists, so the kind's last pass can clean up after it."""

    def serialized(self, resource: Resource[SpecT, StatusT]
                   ) -> contextlib.AbstractAsyncContextManager[None]:
        """Held across observe, decide and act (e.g. one pass per concurrency key)."""

    async def observe(self, resource: Resource[SpecT, StatusT]) -> ObservationT: ...

    def decide(self, observation: ObservationT) -> DecisionT: ...

    async def act(self, loop: Loop[SpecT, StatusT, ObservationT, DecisionT],
                  resource: Resource[SpecT, StatusT], decision: DecisionT) -> None:
        """Carry out the decision; `Loop.write_status` and `Loop.finish` do the shared part."""

    def after(self, loop: Loop[SpecT, StatusT, ObservationT, DecisionT],
              resource: Resource[SpecT, StatusT], decision: DecisionT) -> None:
        """Outside `serialized`: what the pass leaves for other objects to pick up."""

    def invalid(self, key: Key) -> None:
        """The object's spec was found invalid: it runs nothing until it changes."""

    def forget(self, key: Key) -> None:
        """The object is gone: drop what the kind keeps of it."""


@dataclass
class Loop(Generic[SpecT, StatusT, ObservationT, DecisionT]):
    kube: KubeApi
    kind: Kind[SpecT, StatusT, ObservationT, DecisionT]
    events: EventPoster
    queue: WorkQueue = field(default_factory=WorkQueue)
    clock: Callable[[], dt.datetime] = utc_now
    bodies: BodyCache = field(default_factory=BodyCache)
    written: dict[Key, str] = field(default_factory=dict)
    """(namespace, name) -> resourceVersion of the loop's last write of the object."""

    def is_echo(self, namespace: str, name: str, body: Body) -> bool:
        """The watch event shows the object exactly as the loop's last write left it."""
        version = (body.get("metadata") or {}).get("resourceVersion")
        if version is not None and self.written.get((namespace, name)) == version:
            del self.written[(namespace, name)]
            return True
        return False

    def observed(self, namespace: str, name: str, body: Body) -> bool:
        """A watch event: keep the body; True when it needs a reconcile (not an echo)."""
        self.bodies.keep(namespace, name, body)
        return not self.is_echo(namespace, name, body)

    def _wrote(self, obj: Body) -> Body:
        meta = obj["metadata"]
        self.written[(meta["namespace"], meta["name"])] = meta["resourceVersion"]
        self.bodies.keep(meta["namespace"], meta["name"], obj)
        return obj

    def forget(self, namespace: str, name: str) -> None:
        """The object is gone: drop what is known of it."""
        self.queue.forget((namespace, name))
        self.bodies.drop(namespace, name)
        self.written.pop((namespace, name), None)
        self.kind.forget((namespace, name))

    async def run_worker(self) -> None:
        while True:
            key = cast(Key, await self.queue.get())
            try:
                await self.reconcile(*key)
            except ApiError as e:
                if e.status in (404, 409):  # a version the server moved past, or gone:
                    self.bodies.drop(*key)  # the retry reads it fresh (and forgets it)
                metrics.RECONCILE_ERRORS.labels(f"api-{e.status}").inc()
                level = logging.INFO if e.status == 409 else logging.WARNING
                log.log(level, "reconcile %s %s/%s: API %s %s; retrying", self.kind.plural,
                        *key, e.status, e.reason)
                self.queue.add_after(key, CONFLICT_RETRY if e.status == 409 else API_ERROR_RETRY)
            except Exception:
                metrics.RECONCILE_ERRORS.labels("exception").inc()
                log.exception("reconcile %s %s/%s failed; retrying in %.0fs", self.kind.plural,
                              *key, EXCEPTION_RETRY)
                self.queue.add_after(key, EXCEPTION_RETRY)
            finally:
                self.queue.done(key)

    async def read(self, namespace: str, name: str) -> Body | None:
        """The object from the cache, else from the API server; None when it is gone."""
        obj = self.bodies.get(namespace, name)
        if obj is None:
            obj = await self.kube.get(self.kind.plural, namespace, name)
            if obj is not None:
                self.bodies.keep(namespace, name, obj)
        return obj

    async def reconcile(self, namespace: str, name: str) -> None:
        obj = await self.read(namespace, name)
        if obj is None:
            self.forget(namespace, name)
            return
        finalizer = self.kind.finalizer
        meta = obj["metadata"]
        held = finalizer is not None and finalizer in (meta.get("finalizers") or [])
        if meta.get("deletionTimestamp") and not held:
            return
        if finalizer is not None and not held:
            obj = await self.add_finalizer(obj, finalizer)
        now = self.clock()
        try:
            spec = self.kind.spec_model.model_validate(obj.get("spec") or {})
        except ValidationError as e:
            self.kind.invalid((namespace, name))
            await self.report_invalid_spec(obj, invalid_spec_message(e), now)
            return
        resource = Resource(obj=obj, spec=spec, now=now,
                            status=self.kind.status_model.model_validate(obj.get("status") or {}))
        async with self.kind.serialized(resource):
            decision = self.kind.decide(await self.kind.observe(resource))
            await self.kind.act(self, resource, decision)
        self.kind.after(self, resource, decision)

    async def write_status(self, obj: Body, status: BaseModel) -> Body:
        """Replace status, conditional on the version ``obj`` was read at."""
        body = {**obj, "status": status.to_k8s()}  # type: ignore[attr-defined]
        return self._wrote(await self.kube.replace_status(self.kind.plural, body))

    def post_events(self, obj: Body, events: list[Event]) -> None:
        self.events.post(obj, events)

    async def finish(self, resource: Resource[SpecT, StatusT], written: Body,
                     decision: DecisionT, urgent: bool = False) -> None:
        """The shared end of every pass: Events, then delete the object or requeue it."""
        self.post_events(resource.obj, decision.events)
        if decision.delete_self:
            await self.kube.delete(self.kind.plural, *resource.key,
                                   resource_version=written["metadata"]["resourceVersion"])
            return
        if decision.requeue_after is not None:
            self.queue.add_after(resource.key, decision.requeue_after, urgent=urgent)

    async def report_invalid_spec(self, obj: Body, message: str, now: dt.datetime) -> None:
        """A spec the schema let through but the models reject: Ready=False, no runs."""
        try:
            status = self.kind.status_model.model_validate(obj.get("status") or {})
        except ValidationError:
            status = self.kind.status_model()
        if mark_invalid_spec(status, message, now,  # type: ignore[arg-type]
                             obj["metadata"].get("generation")):
            await self.write_status(obj, status)
            self.post_events(obj, [Event("Warning", ConditionReason.INVALID_SPEC, message)])

    async def add_finalizer(self, obj: Body, finalizer: str) -> Body:
        meta = obj["metadata"]
        return self._wrote(await self.kube.patch_metadata(
            self.kind.plural, meta["namespace"], meta["name"],
            {"finalizers": [*(meta.get("finalizers") or []), finalizer],
             "resourceVersion": meta["resourceVersion"]}))

    async def remove_finalizer(self, obj: Body) -> None:
        meta = obj["metadata"]
        await self.kube.patch_metadata(
            self.kind.plural, meta["namespace"], meta["name"],
            {"finalizers": [f for f in meta.get("finalizers") or [] if f != self.kind.finalizer],
             "resourceVersion": meta["resourceVersion"]})


@contextlib.asynccontextmanager
async def unserialized() -> AsyncIterator[None]:
    """For a kind whose passes need no lock beyond the loop's one-pass-per-key."""
    yield
