"""What the operator knows of every ExportJob's run, per concurrency key (controller.registry)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from ferry.controller.registry import BodyCache, JobIndex, Registry
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
    assert registry.waiting_on("ns", "db") == [("ns", "early"), ("ns", "late")]
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


def child(name: str, version: int, run: int = 1, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(version),
                         "labels": {"ferry.dev/job": "ej", "ferry.dev/run": str(run)}},
            "spec": {"completions": 2, "template": {"spec": {"containers": [{"env": []}]}}},
            "status": status}


def test_job_index_asks_for_a_list_first_then_follows_the_watch() -> None:
    index = JobIndex()
    assert index.jobs("ns", "ej", now=0.0) is None  # never listed since the start

    index.replace("ns", "ej", [child("ej-1", 10)], list_version="12", at=0.0)
    index.observe("ns", "ej", child("ej-2", 20, run=2))
    index.observe("ns", "ej", child("ej-1", 15, succeeded=2))
    index.observe("ns", "ej", child("ej-1", 11))  # older than what is known: ignored
    jobs = index.jobs("ns", "ej", now=5.0)
    assert jobs is not None
    assert {j["metadata"]["name"]: j["status"] for j in jobs} == {
        "ej-1": {"succeeded": 2}, "ej-2": {}}
    assert "template" not in jobs[0]["spec"]  # the pod template is not kept

    index.drop("ns", "ej", "ej-1")
    assert [j["metadata"]["name"] for j in index.jobs("ns", "ej", now=5.0) or []] == ["ej-2"]
    assert index.jobs("ns", "ej", now=100.0, max_age=60.0) is None  # a run in progress relists
    index.unlist("ns", "ej")
    assert index.jobs("ns", "ej", now=5.0) is None  # a create answered 409


def test_a_list_keeps_jobs_the_watch_brought_after_it() -> None:
    index = JobIndex()
    index.observe("ns", "ej", child("ej-3", 30, run=3))
    index.observe("ns", "ej", child("ghost", 5))  # deleted while the watch was down
    index.replace("ns", "ej", [child("ej-2", 20, run=2)], list_version="25", at=1.0)
    assert sorted(j["metadata"]["name"] for j in index.jobs("ns", "ej", now=1.0) or []) == [
        "ej-2", "ej-3"]
    index.forget("ns", "ej")
    assert index.jobs("ns", "ej", now=1.0) is None
    assert len(index) == 0


def test_a_job_the_operator_created_counts_as_a_fresh_list() -> None:
    index = JobIndex()
    index.created("ns", "ej", child("ej-1", 10), at=0.0)
    assert index.jobs("ns", "ej", now=1.0) is None  # never listed: still incomplete
    index.replace("ns", "ej", [child("ej-1", 10)], list_version="10", at=0.0)
    index.created("ns", "ej", child("ej-2", 20, run=2), at=100.0)
    assert len(index.jobs("ns", "ej", now=120.0, max_age=60.0) or []) == 2


def test_the_first_waiter_is_the_earliest_queued_whatever_the_watch_order() -> None:
    """The controller wakes only this one when the key is released (item 9 of issue 8)."""
    registry = Registry()
    registry.observe("ns", "late", job(1, "db", "Queued", "late.1", "2026-11-22T11:00:00Z"))
    registry.observe("ns", "early", job(2, "db", "Queued", "early.1", "2026-11-22T09:00:00Z"))
    registry.observe("ns", "late", job(3, "db", "Queued", "late.1", "2026-11-22T11:00:00Z"))
    assert registry.waiting_on("ns", "db") == [("ns", "early"), ("ns", "late")]


def test_body_cache_keeps_the_newest_version_and_hands_out_copies() -> None:
    cache = BodyCache()
    assert cache.get("ns", "ej") is None  # unknown: the reconcile GETs it
    cache.keep("ns", "ej", {"metadata": {"resourceVersion": "7"}, "status": {"phase": "Scheduled"}})
    cache.keep("ns", "ej", {"metadata": {"resourceVersion": "5"}, "status": {"phase": "Drafted"}})
    body = cache.get("ns", "ej")
    assert body == {"metadata": {"resourceVersion": "7"}, "status": {"phase": "Scheduled"}}
    body["status"]["phase"] = "changed by a reconcile"
    assert cache.get("ns", "ej") == {"metadata": {"resourceVersion": "7"},
                                     "status": {"phase": "Scheduled"}}
    cache.drop("ns", "ej")  # a write was refused (409): the next pass reads fresh
    assert cache.get("ns", "ej") is None
    assert len(cache) == 0
