"""Human output the way kubectl prints it: aligned columns, short ages, no colors.

Everything here is a pure function of its inputs (the clock is a parameter), so the
exact output is unit-tested without a cluster.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from ferry.reconcile.progress import human_count, human_duration

NONE = "-"
BAR_WIDTH = 20
COLUMN_GAP = "   "
OUTPUT_FORMATS = ("json", "yaml")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "") -> str:
    """Columns padded to the widest cell, separated by three spaces, like kubectl get."""
    cells = [list(headers), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        indent + COLUMN_GAP.join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines) + "\n"


def fields(pairs: Iterable[tuple[str, str]], indent: str = "") -> str:
    """``Label:  value`` lines with aligned values, like kubectl describe."""
    items = list(pairs)
    width = max((len(label) for label, _ in items), default=0) + 3
    return "".join(f"{indent}{(label + ':').ljust(width)}{value}\n" for label, value in items)


def bar(percent: int, width: int = BAR_WIDTH) -> str:
    """``[#########-----------]  45%``: plain ASCII so it survives pipes and logs."""
    share = max(0, min(100, percent))
    filled = share * width // 100
    return f"[{'#' * filled}{'-' * (width - filled)}] {share:3d}%"


def timestamp(value: dt.datetime | None) -> str:
    """RFC 3339 in UTC, to the second: schedules and windows are UTC by default."""
    if value is None:
        return NONE
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: int | float | None) -> str:
    """90 -> 1m30s; days for long spans (kubectl's style, not 49h)."""
    if seconds is None:
        return NONE
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    if days:
        hours = rest // 3600
        return f"{days}d{hours}h" if hours else f"{days}d"
    return human_duration(whole)


def relative(value: dt.datetime | None, now: dt.datetime) -> str:
    """``5m ago`` or ``in 45m`` relative to ``now``."""
    if value is None:
        return NONE
    delta = (value - now).total_seconds()
    if delta > 0:
        return f"in {duration(delta)}"
    return f"{duration(-delta)} ago"


def count(value: int | None) -> str:
    """Records and files: 4.5M rather than 4500000 in tables."""
    return NONE if value is None else human_count(value)


def size(value: int | None) -> str:
    """Bytes in binary units (1.5 MiB), like object storage consoles show them."""
    if value is None:
        return NONE
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def text(value: str | None) -> str:
    """One table cell: missing values as '-', newlines folded."""
    return NONE if not value else " ".join(value.split())


def dump(document: Any, fmt: str) -> str:
    """-o json (indented like kubectl) or -o yaml."""
    if fmt == "json":
        return json.dumps(document, indent=4, ensure_ascii=False) + "\n"
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def item_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The v1 List wrapper kubectl prints for -o json|yaml of several objects."""
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}}
