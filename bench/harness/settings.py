"""The settings one benchmark run shares across its scenarios (from the CLI flags)."""

from __future__ import annotations

import dataclasses

from ferry.controller.handlers import WORKERS


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the scenarios read from `bench.operator_scale`'s flags."""

    threads: int
    """Client threads for creating and cleaning up ExportJobs (not measured)."""
    lead: float
    """Seconds from the start to the slot; 0: 60 s plus 0.08 s per ExportJob."""
    idle: float
    """Seconds of idle sampling after the cold start."""
    timeout: float
    """Give up on Jobs this many seconds after the slot (or the floor's first POST)."""
    workers: int
    """FERRY_RECONCILE_WORKERS for the operator; 0: the operator's default."""
    metrics_port: int
    keep: bool
    """Keep each namespace afterwards, for a look at what the operator did."""
    soak_minutes: float = 0
    soak_every: int = 1

    @property
    def clients(self) -> int:
        """The floor's concurrent clients: as many as the operator has reconcile workers,
        so that the floor and the operator may keep the same number of requests in
        flight."""
        return self.workers or WORKERS
