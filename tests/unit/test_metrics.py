"""The operator's Prometheus metrics, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import datetime as dt
import socket
import urllib.request

from ferry.api.common import MissedRun, MissedRunReason
from ferry.api.status import ExportJobStatus, HistoryEntry, RunPhase
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
    metrics.start(port, leading=False)  # as main() does, before the election
    metrics.bind([queue], [lambda: 3])  # as the acting operator's startup does
    entry = HistoryEntry(
        id="contacts.7", number=7, trigger="schedule", phase=RunPhase.PARTIALLY_SUCCEEDED,
        started_at=dt.datetime(2026, 11, 22, tzinfo=dt.UTC), duration_seconds=42,
        records=1000, bytes=2048,
    )
    metrics.record_run("ExportJob", "metrics-test", entry)

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()

    assert ('ferry_runs_total{job_kind="ExportJob",job_namespace="metrics-test",'
            'result="PartiallySucceeded"} 1.0') in text
    assert 'ferry_records_exported_total{job_namespace="metrics-test"} 1000.0' in text
    assert 'ferry_bytes_exported_total{job_namespace="metrics-test"} 2048.0' in text
    assert 'ferry_run_duration_seconds_sum{job_namespace="metrics-test"} 42.0' in text
    assert "ferry_workqueue_depth 2.0" in text
    assert "ferry_queued_runs 3.0" in text
    assert 'ferry_build_info{version="0.1.0"} 1.0' in text
    assert "ferry_leader 1.0" in text  # bound: this replica acts


def test_data_lag_grows_between_passes_and_a_job_gone_leaves_no_series() -> None:
    clock = [dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC).timestamp()]
    facts = metrics.JobFacts(clock=lambda: clock[0])
    finished = dt.datetime(2026, 11, 22, 11, 5, tzinfo=dt.UTC)
    status = ExportJobStatus(
        last_successful_window_end=dt.datetime(2026, 11, 22, 11, 0, tzinfo=dt.UTC),
        last_run=HistoryEntry(id="contacts.2", number=2, trigger="schedule",
                              phase=RunPhase.FAILED, finished_at=finished.replace(minute=50)),
        history=[HistoryEntry(id="contacts.1", number=1, trigger="schedule",
                              phase=RunPhase.SUCCEEDED, finished_at=finished)])
    facts.observe("ExportJob", "team-a", "contacts", status)

    def samples() -> dict[str, float]:
        return {f"{m.name}/{s.labels['job_name']}": s.value
                for m in facts.collect() for s in m.samples}

    assert samples() == {"ferry_last_success_timestamp_seconds/contacts": finished.timestamp(),
                         "ferry_data_lag_seconds/contacts": 3600.0}
    clock[0] += 60
    assert samples()["ferry_data_lag_seconds/contacts"] == 3660.0
    facts.forget("ExportJob", "team-a", "contacts")
    assert samples() == {}


def test_missed_slots_count_once_each_by_reason() -> None:
    slot = dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC)
    one = ExportJobStatus(missed_runs=[
        MissedRun(scheduled_for=slot, reason=MissedRunReason.SKIPPED)])
    two = ExportJobStatus(missed_runs=[
        MissedRun(scheduled_for=slot + dt.timedelta(hours=1),
                  reason=MissedRunReason.CONCURRENCY_FORBIDDEN),
        *(one.missed_runs or [])])
    sample = metrics.MISSED.labels("missed-test", "ExportJob",
                                   MissedRunReason.CONCURRENCY_FORBIDDEN.value)
    before = sample._value.get()

    metrics.record_missed("ExportJob", "missed-test", one, two)
    metrics.record_missed("ExportJob", "missed-test", two, two)  # a later write of the same list

    assert sample._value.get() == before + 1
    assert metrics.MISSED.labels("missed-test", "ExportJob", MissedRunReason.SKIPPED.value
                                 )._value.get() == 0


def test_an_import_run_counts_rows_loaded_and_rejected_not_exported() -> None:
    entry = HistoryEntry(id="lists.3", number=3, trigger="manual",
                         phase=RunPhase.SUCCEEDED_WITH_ERRORS, records=990, records_rejected=10)
    exported = metrics.RECORDS.labels("import-test")._value.get()

    metrics.record_run("ImportJob", "import-test", entry)

    assert metrics.IMPORTED.labels("import-test")._value.get() == 990
    assert metrics.REJECTED.labels("import-test")._value.get() == 10
    assert metrics.RECORDS.labels("import-test")._value.get() == exported
    assert metrics.RUNS.labels("import-test", "ImportJob",
                               "SucceededWithErrors")._value.get() == 1
