"""An S3 outage the worker rides out is said in its log, once per retry (issue 8, scenario 5)."""

from __future__ import annotations

import logging

import botocore.exceptions
import pytest

from ferry.worker.errors import TransientError
from ferry.worker.upload import Retrier


def test_each_retry_of_an_unreachable_endpoint_is_logged_with_the_call_and_the_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def down_three_times() -> str:
        calls.append(1)
        if len(calls) <= 3:
            raise botocore.exceptions.EndpointConnectionError(
                endpoint_url="http://127.0.0.1:9/outage/e2e/job-0-0.csv")
        return "etag"

    sleeps: list[float] = []
    with caplog.at_level(logging.WARNING, logger="ferry.worker.upload"):
        assert Retrier(budget_s=60, sleep=sleeps.append)("PutObject", down_three_times) == "etag"

    assert len(sleeps) == 3
    assert [r.getMessage() for r in caplog.records] == [
        f"S3 PutObject failed (EndpointConnectionError: Could not connect to the endpoint URL: "
        f'"http://127.0.0.1:9/outage/e2e/job-0-0.csv"); retry {n} in {delay:.1f}s'
        for n, delay in enumerate(sleeps, start=1)]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_a_call_that_succeeds_at_once_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ferry.worker.upload"):
        assert Retrier(sleep=lambda s: None)("HeadObject", lambda: "ok") == "ok"
    assert caplog.records == []


def test_the_whole_budget_is_spent_with_a_last_try_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backoff that would overrun the budget is cut short, not skipped: with a 10 s
    budget the calls come at 0, 4 and 10 s (before: at 0 and 4, giving up 6 s early)."""
    monkeypatch.setattr("ferry.worker.upload.random.uniform", lambda low, high: high)
    now = [0.0]
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def down() -> None:
        calls.append(now[0])
        raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    retrier = Retrier(budget_s=10, base_s=4, cap_s=10, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(TransientError, match="S3 UploadPart 3 still failing after 10s"):
        retrier("UploadPart 3", down)
    assert calls == [0.0, 4.0, 10.0]
