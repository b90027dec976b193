"""The operator's work queue (controller.workqueue): dedup, dirty keys, the urgent lane."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from ferry.controller.workqueue import WorkQueue


async def drain(queue: WorkQueue) -> list[Hashable]:
    """Every waiting key in the order workers would get them."""
    keys = []
    while len(queue):
        key = await queue.get()
        queue.done(key)
        keys.append(key)
    return keys


def test_due_keys_are_served_before_keys_waiting_longer() -> None:
    async def scenario() -> list[Hashable]:
        queue = WorkQueue()
        for key in ("echo-1", "job-event-2", "poll-3"):
            queue.add(key)
        queue.add("due-1", urgent=True)
        queue.add("poll-3", urgent=True)  # was waiting: moves to the urgent lane, once
        queue.add("due-2", urgent=True)
        return await drain(queue)

    assert asyncio.run(scenario()) == ["due-1", "poll-3", "due-2", "echo-1", "job-event-2"]


def test_a_key_is_never_waiting_twice_and_a_busy_key_runs_once_more() -> None:
    async def scenario() -> tuple[list[Hashable], list[Hashable]]:
        queue = WorkQueue()
        queue.add("a")
        queue.add("a", urgent=True)
        queue.add("a")
        first = await queue.get()
        queue.add("a")  # changed while being reconciled
        queue.add("a", urgent=True)
        assert len(queue) == 0
        queue.add("b")
        queue.done(first)
        return [first], await drain(queue)

    first, rest = asyncio.run(scenario())
    assert first == ["a"]
    assert rest == ["a", "b"]  # the dirty key came back urgent, ahead of b


def test_a_timer_adds_its_key_in_its_lane_and_the_earliest_timer_wins() -> None:
    async def scenario() -> list[Hashable]:
        queue = WorkQueue()
        queue.add_after("poll", 0.02)
        queue.add_after("slot", 0.05, urgent=True)
        queue.add_after("slot", 0.5)  # later: ignored
        queue.add("event")
        await asyncio.sleep(0.1)
        assert queue.timers == 0
        assert queue.urgent == 1
        return await drain(queue)

    assert asyncio.run(scenario()) == ["slot", "event", "poll"]


def test_forget_cancels_the_timer() -> None:
    async def scenario() -> int:
        queue = WorkQueue()
        queue.add_after("gone", 0.01, urgent=True)
        queue.forget("gone")
        await asyncio.sleep(0.03)
        return len(queue)

    assert asyncio.run(scenario()) == 0


def test_calm_waits_until_no_urgent_key_waits() -> None:
    async def scenario() -> list[str]:
        queue = WorkQueue()
        seen: list[str] = []
        await queue.calm()  # nothing urgent: at once
        queue.add("due", urgent=True)
        queue.add("event-driven")

        async def event_poster() -> None:
            await queue.calm()
            seen.append("posted")

        poster = asyncio.create_task(event_poster())
        await asyncio.sleep(0.01)
        assert seen == []
        key = await queue.get()
        seen.append(str(key))
        await poster
        return seen

    assert asyncio.run(scenario()) == ["due", "posted"]
