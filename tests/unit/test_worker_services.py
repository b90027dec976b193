"""hack.services: a busy port is reported by number, versions come from versions.mk."""

from __future__ import annotations

import socket

import pytest
from hack import services


def test_busy_port_error_names_the_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(services.ServiceError, match=f"port 127.0.0.1:{port} is busy"):
            services._require_free("127.0.0.1", port, "PostgreSQL")


def test_minio_version_is_pinned_in_versions_mk() -> None:
    assert services.minio_version().startswith("v0.0.0-")
    assert services.minio_version() in str(services.minio_binary())
