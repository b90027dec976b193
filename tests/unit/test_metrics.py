"""The operator's Prometheus metrics, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import datetime as dt
import socket
import urllib.request

from ferry.api.status import HistoryEntry, RunPhase
from ferry.controller import metrics
from ferry.controller.workqueue import WorkQueue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_finished_runs_and_queue_depth_are_exported() -> None:
    queue = WorkQueue()
    queue.add(("team-a", "contacts"))
    queue.add(("team-a", "orders"))
    port = free_port()
    metrics.serve(port, queue, lambda: 3)
    entry = HistoryEntry(
        id="contacts.7", number=7, trigger="schedule", phase=RunPhase.PARTIALLY_SUCCEEDED,
        started_at=dt.datetime(2026, 11, 22, tzinfo=dt.UTC), duration_seconds=42,
        records=1000, bytes=2048,
    )
    metrics.record_run("metrics-test", entry)

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()

    assert 'ferry_runs_total{namespace="metrics-test",result="PartiallySucceeded"} 1.0' in text
    assert 'ferry_records_exported_total{namespace="metrics-test"} 1000.0' in text
    assert 'ferry_bytes_exported_total{namespace="metrics-test"} 2048.0' in text
    assert 'ferry_run_duration_seconds_sum{namespace="metrics-test"} 42.0' in text
    assert "ferry_workqueue_depth 2.0" in text
    assert "ferry_queued_runs 3.0" in text
