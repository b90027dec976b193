"""Helpers shared by the e2e tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any, Protocol


class Kubectl(Protocol):
    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


def wait_until(probe: Callable[[], Any], timeout: float = 120, what: str = "condition",
               interval: float = 0.5) -> Any:
    """Poll ``probe`` until it returns something truthy; the last value is in the error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
