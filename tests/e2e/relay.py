"""A TCP relay between an operator and the API server that a test can freeze, thaw
and cut (tests/e2e/test_watch_health.py, test_replicas.py).

``freeze`` black-holes every connection: open, nothing passes, nothing is closed (a
dropped NAT entry, a firewall that starts dropping packets). Connections frozen stay
dead for good, as after a real network fault; new ones pass again after ``thaw``.
``cut`` closes every connection at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml


@dataclass
class Link:
    client: socket.socket
    upstream: socket.socket | None
    dead: bool = False


@dataclass
class Relay:
    """A TCP relay to ``target`` that a test can freeze, thaw and cut."""

    target: tuple[str, int]
    server: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    links: list[Link] = field(default_factory=list)
    frozen: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.server.getsockname()[1])

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                if self.frozen:  # accepted, then never answered
                    link = Link(conn, None, dead=True)
                    self.links.append(link)
                    threading.Thread(target=self._pump, args=(link, conn, None),
                                     daemon=True).start()
                    continue
            upstream = socket.create_connection(self.target)
            link = Link(conn, upstream)
            with self.lock:
                self.links.append(link)
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(link, src, dst), daemon=True).start()

    def _pump(self, link: Link, src: socket.socket, dst: socket.socket | None) -> None:
        """Relay until either side closes; a dead link swallows everything."""
        try:
            while data := src.recv(65536):
                if not link.dead and dst is not None:
                    dst.sendall(data)
        except OSError:
            pass
        if not link.dead:
            self._close(link)

    @staticmethod
    def _close(link: Link) -> None:
        for sock in (link.client, link.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def freeze(self) -> None:
        with self.lock:
            self.frozen = True
            for link in self.links:
                link.dead = True

    def thaw(self) -> None:
        with self.lock:
            self.frozen = False

    def cut(self) -> None:
        with self.lock:
            links, self.links = self.links, []
        for link in links:
            link.dead = False
            self._close(link)

    def close(self) -> None:
        self.server.close()
        self.cut()

    @classmethod
    def to_server_of(cls, kubeconfig: str) -> Relay:
        """A running relay to the API server ``kubeconfig`` names."""
        config = yaml.safe_load(Path(kubeconfig).read_text())
        server = urlsplit(config["clusters"][0]["cluster"]["server"])
        relay = cls((server.hostname or "127.0.0.1", server.port or 443))
        relay.start()
        return relay

    def kubeconfig(self, original: str, path: Path) -> Path:
        """``original`` with its server replaced by this relay (TLS passes through; the
        API server's certificate names 127.0.0.1, as the relay's address does)."""
        config = yaml.safe_load(Path(original).read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        path.write_text(yaml.safe_dump(config))
        return path
