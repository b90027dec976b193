"""The fixed local ports of the test servers and cluster, kept out of the kernel's hands.

Every fixed port here (PostgreSQL 55432, MinIO 59000, etcd 52379-52380, ...) lies in
Linux's default ephemeral range, 32768-60999, from which the kernel picks the local port
of each outgoing connection. A test's client connection that happened to get 52380 made
etcd fail with "bind: address already in use" although nothing listened there (once, in
stop 15, right after the integration tests), and a connect() probe cannot see such a
holder. So, where it may (root, a writable /proc/sys), :func:`reserve` adds the ports to
``net.ipv4.ip_local_reserved_ports``, which only stops the kernel from choosing them for
outgoing connections; :func:`wait_bindable` then waits out a connection that already
holds one.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Iterable
from pathlib import Path

RESERVED = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _reserved(listing: str) -> set[int]:
    """The ports of a ``ip_local_reserved_ports`` value such as ``"8080,52379-52380"``."""
    ports: set[int] = set()
    for item in filter(None, listing.strip().split(",")):
        low, _, high = item.partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return ports


def reserve(ports: Iterable[int]) -> None:
    """Keep ``ports`` out of the ephemeral range where this process may; else a no-op."""
    try:
        low, high = (int(p) for p in EPHEMERAL_RANGE.read_text().split())
        listing = RESERVED.read_text().strip()
    except (OSError, ValueError):
        return
    missing = sorted(p for p in set(ports) - _reserved(listing) if low <= p <= high)
    if missing:
        with contextlib.suppress(OSError):
            RESERVED.write_text(",".join([*filter(None, [listing]), *map(str, missing)]))


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on the port now (as Go and PostgreSQL bind it:
    ``SO_REUSEADDR``, so connections lingering in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def wait_bindable(port: int, timeout_s: float = 30.0, host: str = "127.0.0.1") -> bool:
    """Wait for a connection that holds ``port`` as its local port to end."""
    deadline = time.monotonic() + timeout_s
    while not bindable(port, host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True
