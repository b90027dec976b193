"""hack/ports.py: why a free-looking fixed port can still refuse a server, and the check
that sees it (real sockets on loopback)."""

from __future__ import annotations

import socket

from hack import cluster
from hack.ports import _reserved, bindable, wait_bindable


def test_reserved_ports_listing_is_parsed_with_ranges() -> None:
    assert _reserved("") == set()
    assert _reserved("8080,52379-52381\n") == {8080, 52379, 52380, 52381}


def test_a_connections_local_port_is_seen_though_nothing_listens_there() -> None:
    """What made etcd fail with "address already in use": a client connection whose
    local port is the fixed one. The connect() probe says free; the bind check does not."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.socket() as client:
            client.bind(("127.0.0.1", 0))
            held = client.getsockname()[1]
            client.connect(server.getsockname())
            accepted, _ = server.accept()
            with accepted:
                assert not cluster.port_in_use(held)
                assert not bindable(held)
                assert not wait_bindable(held, timeout_s=0.6)
        assert wait_bindable(held, timeout_s=5)
