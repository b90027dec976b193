"""What every command gets: the cluster (connected on first use), the clock, the streams."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from typing import TextIO

from ferry.cli.kube import Kube, Target


@dataclass
class Context:
    """One invocation's environment; tests build it with their own clock and streams."""

    target: Target
    now: dt.datetime
    out: TextIO
    err: TextIO
    connect: type[Kube] = field(default=Kube)

    @cached_property
    def kube(self) -> Kube:
        """Connected lazily, so usage errors never need a reachable cluster."""
        return self.connect.connect(self.target)

    def request_stamp(self) -> str:
        """Value of a ferry.dev/*-requested-at annotation: RFC 3339 with microseconds,
        so two requests in the same second are still two requests."""
        return self.now.astimezone(dt.UTC).isoformat(timespec="microseconds").replace(
            "+00:00", "Z"
        )

    def hint(self, message: str) -> None:
        """Advice that is not the command's output goes to stderr, like kubectl's warnings."""
        self.err.write(f"hint: {message}\n")
