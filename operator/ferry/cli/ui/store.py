"""The objects the pages show, kept current by one list-then-watch loop per kind.

Each loop runs in its own thread with the user's credentials (cli/kube.py); the pages'
event streams wait on :meth:`Store.wait` and recompute their view when the version moves.
A kind the cluster does not serve (its CRD is not installed, e.g. ImportJob on an older
chart) has no rows and no error; a kind the user may not list shows the API's refusal.
"""

from __future__ import annotations

import threading
from typing import Any

from kubernetes.client.exceptions import ApiException

from ferry.cli.errors import CliError
from ferry.cli.kube import Kube

RETRY_SECONDS = 5.0
"""Pause before listing again after a failed list or watch."""


class Store:
    """Objects by plural and (namespace, name), with a version bumped on every change."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.version = 0
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.errors: dict[str, str] = {}
        self.stopped = threading.Event()

    def _bump(self) -> None:
        self.version += 1
        self.changed.notify_all()

    def replace(self, plural: str, items: list[dict[str, Any]]) -> None:
        with self.changed:
            self.objects[plural] = {key(o): o for o in items}
            self.errors.pop(plural, None)
            self._bump()

    def apply(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        """One watch event: ADDED / MODIFIED keep the object, DELETED drops it."""
        with self.changed:
            objects = self.objects.setdefault(plural, {})
            if kind == "DELETED":
                objects.pop(key(obj), None)
            else:
                objects[key(obj)] = obj
            self._bump()

    def fail(self, plural: str, message: str | None) -> None:
        """The kind cannot be listed: ``message`` for the page, None to hide the kind."""
        with self.changed:
            self.objects.pop(plural, None)
            if message is None:
                self.errors.pop(plural, None)
            else:
                self.errors[plural] = message
            self._bump()

    def snapshot(self) -> tuple[int, dict[str, list[dict[str, Any]]], dict[str, str]]:
        """The version and copies of the lists and errors (read under the lock)."""
        with self.changed:
            return (self.version, {p: list(o.values()) for p, o in self.objects.items()},
                    dict(self.errors))

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.changed:
            return self.objects.get(plural, {}).get((namespace, name))

    def wait(self, version: int, timeout: float) -> int:
        """Block until the version differs from ``version`` or ``timeout`` passes."""
        with self.changed:
            self.changed.wait_for(lambda: self.version != version or self.stopped.is_set(),
                                  timeout)
            return self.version

    def stop(self) -> None:
        self.stopped.set()
        with self.changed:
            self.changed.notify_all()


def key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def not_served(exc: CliError) -> bool:
    """A 404 on the list itself: the cluster has no such resource (CRD not installed)."""
    cause = exc.__cause__
    return isinstance(cause, ApiException) and cause.status == 404


def follow(kube: Kube, plural: str, store: Store) -> None:
    """List, then watch from the list's version; on any failure record it and start over."""
    while not store.stopped.is_set():
        try:
            items, version = kube.listing(plural)
            store.replace(plural, items)
            for event in kube.watch(plural, version):
                if store.stopped.is_set():
                    return
                if event.get("type") == "ERROR":  # e.g. 410 Gone: list again
                    break
                store.apply(plural, str(event.get("type")), dict(event["object"]))
            continue
        except CliError as exc:
            store.fail(plural, None if not_served(exc) else str(exc))
        store.stopped.wait(RETRY_SECONDS)


def start(kube: Kube, plurals: list[str], store: Store) -> list[threading.Thread]:
    """One daemon thread per kind."""
    threads = [threading.Thread(target=follow, args=(kube, p, store), daemon=True,
                                name=f"watch-{p}") for p in plurals]
    for thread in threads:
        thread.start()
    return threads
