"""What a run tells its reader: timestamped progress lines, the table, and the JSON file
(one key replaced per write, so recorded results under the other keys stay)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "operator.json"


def log(message: str) -> None:
    """One progress line, flushed: a 10,000-job run takes most of an hour."""
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def write_results(key: str, value: Any, path: Path = RESULTS) -> None:
    """Replace one key of the results document, keeping the others."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        document = {}
    document[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A Markdown table of `columns` from `rows`, as BENCHMARKS.md quotes them."""
    print()
    print(" | ".join(columns))
    print(" | ".join("---" for _ in columns))
    for row in rows:
        print(" | ".join(str(row.get(column)) for column in columns))
