"""The Lease election's decisions over an injected clock (ferry.controller.leader).

Its requests are tested against the in-memory API (tests/unit/fakekube.py); two real
replicas on one Lease, the active one SIGKILLed, are tests/e2e/test_replicas.py.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ferry.controller.leader import (
    LeaseElector,
    Observation,
    Record,
    Timing,
    may_take,
    micro_time,
    observe,
)
from tests.unit.fakekube import FakeKube

HELD = Record(holder="replica-a", duration=15.0, renewed="2026-11-22T10:00:00.000000Z")


def test_a_free_lease_is_taken_at_once() -> None:
    for record in (Record(holder=None, duration=15.0, renewed=None),
                   Record(holder="", duration=1.0, renewed="2026-11-22T10:00:00.000000Z")):
        assert may_take(observe(None, record, now=100.0), "replica-b", now=100.0)


def test_the_holder_renews_its_own_lease() -> None:
    assert may_take(observe(None, HELD, now=100.0), "replica-a", now=100.0)


def test_a_standby_waits_a_whole_lease_duration_of_silence_by_its_own_clock() -> None:
    seen = observe(None, HELD, now=100.0)
    assert not may_take(seen, "replica-b", now=114.9)
    # The record did not change: the first sighting still counts.
    assert observe(seen, HELD, now=114.9) is seen
    assert may_take(observe(seen, HELD, now=115.0), "replica-b", now=115.0)


def test_every_renewal_restarts_the_standbys_wait() -> None:
    seen = observe(None, HELD, now=100.0)
    renewed = Record(holder="replica-a", duration=15.0, renewed="2026-11-22T10:00:02.000000Z")
    seen = observe(seen, renewed, now=112.0)
    assert seen.since == 112.0
    assert not may_take(seen, "replica-b", now=126.0)
    assert may_take(seen, "replica-b", now=127.0)


def test_the_holders_written_duration_counts_not_the_standbys() -> None:
    long = Record(holder="replica-a", duration=60.0, renewed="2026-11-22T10:00:00.000000Z")
    seen = Observation(long, since=0.0)
    assert not may_take(seen, "replica-b", now=59.0)
    assert may_take(seen, "replica-b", now=60.0)


def test_a_skewed_renew_time_is_never_compared_with_the_local_clock() -> None:
    # A holder whose clock is an hour behind still holds while it keeps renewing.
    skewed = Record(holder="replica-a", duration=15.0, renewed="2026-11-22T09:00:00.000000Z")
    assert not may_take(observe(None, skewed, now=100.0), "replica-b", now=101.0)


def test_the_leader_gives_up_before_a_standby_may_take_over() -> None:
    timing = Timing()
    assert (timing.lease_duration, timing.renew_deadline, timing.retry_period) == (15, 10, 2)
    assert timing.renew_deadline < timing.lease_duration


@pytest.mark.parametrize(("durations", "message"), [
    ((10.0, 10.0, 2.0), "need 0 < retry period < renew deadline < lease duration"),
    ((15.0, 10.0, 10.0), "got 10.0 < 10.0 < 15.0"),
    ((15.0, 10.0, 0.0), "got 0.0 < 10.0 < 15.0"),
])
def test_inconsistent_durations_are_refused(durations: tuple[float, float, float],
                                            message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        Timing(*durations)


def test_micro_time_always_has_six_fraction_digits() -> None:
    at = dt.datetime(2026, 11, 22, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert micro_time(at) == "2026-11-22T08:00:00.000000Z"


# --- LeaseElector's requests, against the in-memory API (tests/unit/fakekube.py) --------

def elector(kube: FakeKube, identity: str, clock: list[float]) -> LeaseElector:
    return LeaseElector(kube=kube, namespace="ferry-system", name="ferry-operator",
                        identity=identity, timing=Timing(), clock=lambda: clock[0],
                        wall=lambda: dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC))


async def test_the_first_replica_creates_the_lease_the_second_stands_by_until_silence(
        ) -> None:
    kube = FakeKube()
    clock = [100.0]
    first, second = elector(kube, "replica-a", clock), elector(kube, "replica-b", clock)

    assert await first.attempt(1.0)
    lease = kube.leases[("ferry-system", "ferry-operator")]
    assert lease["spec"]["holderIdentity"] == "replica-a"
    assert lease["spec"]["renewTime"] == "2026-11-22T10:00:00.000000Z"

    assert not await second.attempt(1.0)
    clock[0] = 114.9
    assert not await second.attempt(1.0)
    clock[0] = 115.0  # replica-a has not renewed for a whole lease duration
    assert await second.attempt(1.0)
    lease = kube.leases[("ferry-system", "ferry-operator")]
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == (
        "replica-b", 1)


async def test_a_lost_race_is_a_failed_attempt_not_an_error() -> None:
    kube = FakeKube()
    clock = [100.0]
    first, second = elector(kube, "replica-a", clock), elector(kube, "replica-b", clock)
    assert await first.attempt(1.0)
    seen_by_second = copy.deepcopy(kube.leases[("ferry-system", "ferry-operator")])
    assert not await second.attempt(1.0)  # held: replica-b starts counting
    clock[0] = 115.0
    assert await first.attempt(1.0)  # replica-a renews after replica-b's read...
    kube.read_lease = _answer(seen_by_second)  # type: ignore[method-assign]
    assert not await second.attempt(1.0)  # ...so replica-b's write is refused (409)
    assert kube.leases[("ferry-system", "ferry-operator")]["spec"]["holderIdentity"] == \
        "replica-a"


async def test_release_frees_the_lease_for_the_next_look() -> None:
    kube = FakeKube()
    clock = [100.0]
    first = elector(kube, "replica-a", clock)
    assert await first.attempt(1.0)
    await first.release()
    lease = kube.leases[("ferry-system", "ferry-operator")]
    assert lease["spec"].get("holderIdentity") is None
    assert await elector(kube, "replica-b", clock).attempt(1.0)


def _answer(body: dict[str, Any]) -> Callable[[str, str], Awaitable[dict[str, Any]]]:
    async def read(namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(body)
    return read
