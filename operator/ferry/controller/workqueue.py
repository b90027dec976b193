"""A deduplicating work queue with delayed adds and two lanes, the scheduler of the operator.

Every trigger (an ExportJob changed, one of its Jobs changed, its next slot is due, a
progress poll) becomes "reconcile this key"; a key waiting in the queue is not added
twice, and a key being reconciled is reconciled once more afterwards if something
changed meanwhile. Due times are timer handles on the event loop, one per key, not a
task per object: ten thousand scheduled jobs cost ten thousand small timer entries.

Keys added as urgent (a scheduled slot is due) are handed out before every other key:
at the top of the hour the runs that are due must not wait behind the reconciles that
the runs started a moment earlier cause (their Job events, their progress polls), or
the last run of a thousand starts minutes late (bench/operator_scale.py). A waiting key made
urgent moves to the urgent lane; within a lane keys are served first come first served.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable


class WorkQueue:
    def __init__(self) -> None:
        self._lanes: tuple[deque[Hashable], deque[Hashable]] = (deque(), deque())
        """(urgent, normal); may hold stale entries of keys that moved lane or left."""
        self._ready: asyncio.Queue[None] = asyncio.Queue()
        """One token per waiting key: what workers wait on."""
        self._waiting: dict[Hashable, bool] = {}
        """Waiting key -> urgent."""
        self._urgent = 0
        """Urgent keys in _waiting."""
        self._calm = asyncio.Event()
        """Set while no urgent key waits (see `calm`)."""
        self._calm.set()
        self._active: set[Hashable] = set()
        self._dirty: dict[Hashable, bool] = {}
        """Keys changed while being reconciled -> urgent."""
        self._timers: dict[Hashable, tuple[asyncio.TimerHandle, bool]] = {}

    def add(self, key: Hashable, urgent: bool = False) -> None:
        if key in self._active:
            self._dirty[key] = self._dirty.get(key, False) or urgent
        elif key not in self._waiting:
            self._waiting[key] = urgent
            self._count_urgent(urgent)
            self._lanes[0 if urgent else 1].append(key)
            self._ready.put_nowait(None)
        elif urgent and not self._waiting[key]:
            self._waiting[key] = True
            self._count_urgent(1)
            self._lanes[0].append(key)

    def add_after(self, key: Hashable, delay: float, urgent: bool = False) -> None:
        """Add ``key`` after ``delay`` seconds, unless an earlier timer is already set."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        timer, _ = self._timers.get(key, (None, False))
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = (loop.call_at(when, self._fire, key, urgent), urgent)

    def _fire(self, key: Hashable, urgent: bool) -> None:
        self._timers.pop(key, None)
        self.add(key, urgent)

    def forget(self, key: Hashable) -> None:
        """Drop the key's timer (its object is gone)."""
        timer, _ = self._timers.pop(key, (None, False))
        if timer is not None:
            timer.cancel()

    async def get(self) -> Hashable:
        await self._ready.get()
        for urgent, lane in zip((True, False), self._lanes, strict=True):
            while lane:
                key = lane.popleft()
                if self._waiting.get(key) is urgent:
                    del self._waiting[key]
                    self._count_urgent(-urgent)
                    self._active.add(key)
                    return key
        raise AssertionError("a token without a waiting key")

    def _count_urgent(self, change: int) -> None:
        self._urgent += change
        if self._urgent:
            self._calm.clear()
        else:
            self._calm.set()

    async def calm(self) -> None:
        """Return once no urgent key waits: one wake-up for every waiter, no polling
        (ten thousand Events held back by a slot must not each poll a timer)."""
        await self._calm.wait()

    def done(self, key: Hashable) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self.add(key, self._dirty.pop(key))

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def urgent(self) -> int:
        """Waiting keys in the urgent lane."""
        return self._urgent

    @property
    def timers(self) -> int:
        return len(self._timers)
