"""What the operator knows of every ExportJob's run, per concurrency key (controller.registry)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from ferry.controller.registry import Registry
from ferry.reconcile.runs import QueueView

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


def job(version: int, key: str | None, phase: str | None = None, run: str | None = None,
        queued_at: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if key is not None:
        status["concurrencyKey"] = key
    if phase is not None:
        status["currentRun"] = {"id": run, "phase": phase,
                                **({"queuedAt": queued_at} if queued_at else {})}
    return {"metadata": {"resourceVersion": str(version)}, "status": status}


def test_queue_view_counts_only_the_same_key_in_the_same_namespace() -> None:
    registry = Registry()
    registry.observe("ns", "holder", job(1, "db", "InProgress", "holder.3"))
    registry.observe("ns", "early", job(2, "db", "Queued", "early.1", "2026-11-22T09:00:00Z"))
    registry.observe("ns", "late", job(3, "db", "Queued", "late.1", "2026-11-22T11:00:00Z"))
    registry.observe("ns", "other-key", job(4, "other", "InProgress", "other-key.1"))
    registry.observe("elsewhere", "same-key", job(5, "db", "InProgress", "same-key.1"))
    registry.observe("ns", "new", job(6, None))

    assert registry.queue_view("ns", "me", "db", T0) == QueueView(holder="holder.3", ahead=1)
    assert registry.queue_view("ns", "holder", "db", T0) == QueueView(holder=None, ahead=1)
    assert registry.queue_view("ns", "me", "free", T0) == QueueView()
    assert sorted(registry.waiting_on("ns", "db")) == [("ns", "early"), ("ns", "late")]
    assert registry.waiting_on("elsewhere", "db") == []
    assert registry.queued() == 2


def test_a_key_change_moves_the_job_and_an_older_event_never_rolls_back() -> None:
    registry = Registry()
    registry.observe("ns", "a", job(5, "db", "InProgress", "a.1"))
    registry.observe("ns", "a", job(4, "old", "Queued", "a.1", "2026-11-22T09:00:00Z"))
    assert registry.queue_view("ns", "me", "db", T0).holder == "a.1"
    assert registry.waiting_on("ns", "old") == []

    registry.observe("ns", "a", job(6, "s3", "Queued", "a.2", "2026-11-22T09:00:00Z"))
    assert registry.queue_view("ns", "me", "db", T0) == QueueView()
    assert registry.waiting_on("ns", "s3") == [("ns", "a")]

    registry.forget("ns", "a")
    assert registry.waiting_on("ns", "s3") == []
    assert registry.queued() == 0


def test_queue_view_does_not_scan_every_job() -> None:
    """10,000 jobs on distinct keys: a lookup costs the key's jobs, not all jobs."""
    registry = Registry()
    for i in range(10_000):
        registry.observe("ns", f"j{i}", job(i + 1, f"k{i}", "InProgress", f"j{i}.1"))
    started = time.perf_counter()
    for i in range(10_000):
        assert registry.queue_view("ns", f"j{i}", f"k{i}", T0) == QueueView()
    assert time.perf_counter() - started < 1.0  # a scan per lookup: about 10^8 steps
