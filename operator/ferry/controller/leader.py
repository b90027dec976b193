"""Leader election with a coordination.k8s.io Lease: of several operator replicas,
exactly one acts.

Why a Lease of our own and not kopf peering: a paused kopf operator stops kopf's
watches and handlers, but Ferry's scheduler is not a kopf handler (the work queue's
timers and workers, `ferry.controller.workqueue`), so a paused replica would still
start due runs; kopf also pauses every replica of equal priority, and gives no
deadline after which a replica that cannot reach the API server stops. Here a replica
that is not the leader runs only the stateless admission webhook (main.py), and a
leader that has not renewed its Lease for ``renew_deadline`` exits before any other
replica may take the Lease (``lease_duration`` after it last saw it renewed, by its
own clock): the client-go rules. docs/operations.md "High availability" has the numbers.

The decisions (`observe`, `may_take`) are pure over an injected monotonic clock; the
`LeaseElector` only does the API calls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ferry.controller.kube import TRANSPORT_ERRORS, ApiError, KubeApi

log = logging.getLogger("ferry.leader")


@dataclass(frozen=True)
class Timing:
    """client-go's three durations (kube-controller-manager uses 15 s, 10 s, 2 s)."""

    lease_duration: float = 15.0
    """How long after the last renewal a standby waits before taking the Lease."""
    renew_deadline: float = 10.0
    """How long the leader keeps trying to renew before it gives up and exits."""
    retry_period: float = 2.0
    """How often the leader renews and a standby looks."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry period < renew deadline < lease duration, got "
                             f"{self.retry_period} < {self.renew_deadline} < "
                             f"{self.lease_duration}")


@dataclass(frozen=True)
class Record:
    """The Lease's spec as far as the election reads it."""

    holder: str | None
    duration: float
    renewed: str | None
    """renewTime as written; only compared for change, never against our clock."""
    transitions: int = 0


@dataclass(frozen=True)
class Observation:
    record: Record
    since: float
    """When this replica first saw exactly this record, on its own monotonic clock."""


def observe(previous: Observation | None, record: Record, now: float) -> Observation:
    """Keep the time a record was first seen: a holder that stops renewing leaves the
    record unchanged, and that is how its silence is measured without trusting any
    other machine's clock."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def may_take(observation: Observation, me: str, now: float) -> bool:
    """Whether ``me`` may write itself as holder: the Lease is free (never held or
    released), already ours, or its holder has not renewed it for a whole lease
    duration (the holder's own, as written in the Lease) as seen from here."""
    record = observation.record
    if not record.holder or record.holder == me:
        return True
    return now >= observation.since + record.duration


def micro_time(at: dt.datetime) -> str:
    """A MicroTime as the API server wants it (RFC 3339 with microseconds)."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class LeaseElector:
    kube: KubeApi
    namespace: str
    name: str
    identity: str
    timing: Timing
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], dt.datetime] = utc_now
    observation: Observation | None = None
    renewed_at: float | None = None
    """Monotonic time of our last successful write as holder."""

    async def acquire(self) -> None:
        """Return once this replica holds the Lease; until then only look at it."""
        log.info("standing by: waiting for Lease %s/%s (identity %s)", self.namespace,
                 self.name, self.identity)
        while not await self.attempt(self.timing.retry_period * 2):
            await asyncio.sleep(self.timing.retry_period)
        holder = self.observation.record.holder if self.observation else None
        log.info("leading: acquired Lease %s/%s (previous holder: %s)", self.namespace,
                 self.name, holder or "none")

    async def hold(self) -> None:
        """Renew every retry period; return (leadership lost) once no renewal has
        succeeded for the renew deadline. Each attempt is cut off at the deadline, so
        a frozen connection cannot keep a replica leading beyond it."""
        assert self.renewed_at is not None
        while True:
            await asyncio.sleep(self.timing.retry_period)
            left = self.renewed_at + self.timing.renew_deadline - self.clock()
            if left > 0 and await self.attempt(left):
                continue
            if self.clock() >= self.renewed_at + self.timing.renew_deadline:
                log.error("lost Lease %s/%s: not renewed for %.0fs", self.namespace,
                          self.name, self.clock() - self.renewed_at)
                return

    async def attempt(self, limit: float) -> bool:
        """One look at the Lease, taking or renewing it when allowed, within ``limit``
        seconds. False on any failure: a lost race (409) or an unreachable server."""
        try:
            async with asyncio.timeout(limit):
                return await self._attempt()
        except TRANSPORT_ERRORS as e:
            status = getattr(e, "status", None)
            if status != 409:
                log.warning("Lease %s/%s: %s", self.namespace, self.name,
                            f"API {status} {e.reason}" if isinstance(e, ApiError)
                            else type(e).__name__ + (f": {e}" if str(e) else ""))
            return False

    async def _read(self) -> dict[str, Any] | None:
        """The Lease as JSON (MicroTimes stay the strings the server wrote), or None."""
        return await self.kube.read_lease(self.namespace, self.name)

    async def _attempt(self) -> bool:
        lease = await self._read()
        if lease is None:
            await self.kube.create_lease(self.namespace, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name}, "spec": self._spec({})})
            self.renewed_at = self.clock()
            return True
        spec = lease.get("spec") or {}
        record = Record(holder=spec.get("holderIdentity"),
                        duration=float(spec.get("leaseDurationSeconds")
                                       or self.timing.lease_duration),
                        renewed=spec.get("renewTime"),
                        transitions=spec.get("leaseTransitions") or 0)
        now = self.clock()
        self.observation = observe(self.observation, record, now)
        if not may_take(self.observation, self.identity, now):
            return False
        lease["spec"] = self._spec(spec)
        await self.kube.replace_lease(self.namespace, self.name, lease)
        self.renewed_at = now
        return True

    def _spec(self, current: dict[str, Any]) -> dict[str, Any]:
        """Us as holder, renewed now; acquireTime and leaseTransitions change only when
        the holder does."""
        now = micro_time(self.wall())
        ours = current.get("holderIdentity") == self.identity
        transitions = current.get("leaseTransitions") or 0
        return {"holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.timing.lease_duration),
                "acquireTime": current.get("acquireTime", now) if ours else now,
                "renewTime": now,
                "leaseTransitions": transitions if ours or not current else transitions + 1}

    async def release(self) -> None:
        """On a clean exit, free the Lease so a standby takes over at its next look
        instead of waiting out the lease duration. Best effort: if it fails, the
        standby waits the lease duration."""
        try:
            async with asyncio.timeout(self.timing.retry_period * 2):
                lease = await self._read()
                spec = (lease or {}).get("spec") or {}
                if lease is None or spec.get("holderIdentity") != self.identity:
                    return
                lease["spec"] = {"leaseDurationSeconds": 1,
                                 "renewTime": micro_time(self.wall()),
                                 "leaseTransitions": spec.get("leaseTransitions") or 0}
                await self.kube.replace_lease(self.namespace, self.name, lease)
            log.info("released Lease %s/%s", self.namespace, self.name)
        except TRANSPORT_ERRORS as e:
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, e)
