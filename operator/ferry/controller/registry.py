"""What the operator knows of every ExportJob's active run, for the per-source queue.

Fed by the ExportJob watch and, synchronously, by the operator's own status writes:
the operator is the only writer of status, so its own last write is the freshest
truth, and an older watch event arriving afterwards must not roll it back (entries
only move forward by resourceVersion).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ferry.reconcile.runs import QueueView

ACTIVE_PHASES = ("Queued", "InProgress")


@dataclass(frozen=True)
class Entry:
    key: str | None
    phase: str | None
    run_id: str | None
    queued_at: dt.datetime | None
    resource_version: int


def _version(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def entry_from(obj: dict[str, Any]) -> Entry:
    status = obj.get("status") or {}
    run = status.get("currentRun") or {}
    queued = run.get("queuedAt")
    return Entry(
        key=status.get("concurrencyKey"),
        phase=run.get("phase"),
        run_id=run.get("id"),
        queued_at=dt.datetime.fromisoformat(queued.replace("Z", "+00:00")) if queued else None,
        resource_version=_version((obj.get("metadata") or {}).get("resourceVersion")),
    )


class Registry:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}

    def observe(self, namespace: str, name: str, obj: dict[str, Any]) -> None:
        entry = entry_from(obj)
        known = self._entries.get((namespace, name))
        if known is None or entry.resource_version >= known.resource_version:
            self._entries[(namespace, name)] = entry

    def forget(self, namespace: str, name: str) -> None:
        self._entries.pop((namespace, name), None)

    def queued(self) -> int:
        """Runs waiting for their data source, over all namespaces."""
        return sum(e.phase == "Queued" for e in self._entries.values())

    def waiting_on(self, namespace: str, key: str) -> list[tuple[str, str]]:
        """Jobs whose queued run waits on ``key``."""
        return [(ns, n) for (ns, n), e in self._entries.items()
                if ns == namespace and e.key == key and e.phase == "Queued"]

    def queue_view(self, namespace: str, name: str, key: str,
                   queued_at: dt.datetime) -> QueueView:
        """Who holds ``key`` and how many queued runs came before one queued at ``queued_at``."""
        holder = None
        ahead = 0
        for (ns, other), entry in self._entries.items():
            if ns != namespace or other == name or entry.key != key:
                continue
            if entry.phase == "InProgress":
                holder = entry.run_id
            elif entry.phase == "Queued" and entry.queued_at is not None and \
                    (entry.queued_at, other) < (queued_at, name):
                ahead += 1
        return QueueView(holder=holder, ahead=ahead)
