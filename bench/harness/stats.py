"""Percentiles as the benchmark reports them (nearest rank: always a measured value)."""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-th percentile of `values` (not empty)."""
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[rank]


def rounded(values: list[float], q: float) -> float | None:
    """`percentile` to 10 ms, None when nothing was measured (the JSON says null)."""
    return round(percentile(values, q), 2) if values else None
