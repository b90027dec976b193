"""The operator's own figures: its /metrics, and the HTTP 429s in its log."""

from __future__ import annotations

import re
import urllib.request

from prometheus_client.metrics import MetricWrapperBase

from ferry.controller import metrics


def _name(metric: MetricWrapperBase) -> str:
    """The name the operator registered `metric` under."""
    return next(iter(metric.describe())).name


WORKQUEUE_DEPTH = _name(metrics.QUEUE_DEPTH)
SCHEDULED_WAKEUPS = _name(metrics.TIMERS)
RECONCILE_ERRORS = f"{_name(metrics.RECONCILE_ERRORS)}_total"
"""A counter's samples carry `_total` after the name it was described by."""
PROCESS_RSS = "process_resident_memory_bytes"
"""prometheus_client's process collector, in every Python exporter."""
REINIT = "storage is (re)initializing"


def scrape(port: int) -> dict[str, float]:
    """Every sample of the operator's /metrics, by name with labels."""
    values: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
    return values


def reconcile_errors(values: dict[str, float]) -> dict[str, int]:
    """The operator's failed reconcile passes by reason (e.g. "api-429")."""
    return {name.split('"')[1]: int(value) for name, value in values.items()
            if name.startswith(f"{RECONCILE_ERRORS}{{")}


def rss_mb(port: int) -> float | None:
    """The operator's RSS by its own account, in MB: a second witness beside psutil's."""
    try:
        value = scrape(port).get(PROCESS_RSS)
    except OSError:
        return None
    return round(value / 2**20, 1) if value is not None else None


def http_429s(log_text: str) -> tuple[int, int]:
    """(429 answers in the operator's log, those of them saying the storage is
    (re)initializing). The API server answers the latter to every request for a custom
    resource while its CRD is being updated (someone applied the CRDs): not throttling.
    Only the message counts: "...,429" in a line's timestamp is a millisecond."""
    messages = [line.split(" ", 3)[-1] for line in log_text.splitlines()]
    found = [m for m in messages if re.search(r"\b429\b|TooManyRequests", m)]
    return len(found), sum(REINIT in m for m in found)
