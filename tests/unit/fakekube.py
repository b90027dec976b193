"""An in-memory API server behind `ferry.controller.kube.KubeApi` (after kueue's fake client).

It keeps the rules the reconcile loop depends on, so unit tests can check the loop's I/O
without a cluster: every write bumps one resourceVersion counter; a status replace, a
metadata patch or a delete that names a resourceVersion the object has moved past is
refused with 409; an object with finalizers is only marked for deletion, and goes when
the last one is removed; a Job name taken is a 409 (`create_job` answers None). `calls`
records every request, so a test can say "no GET" or "one Job created".

What it does not do: admission, schema validation, label selectors beyond `k=v,k=v`,
watches (a test feeds `Loop.observed` itself, as kopf's handlers would).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from ferry.controller.kube import ApiError

Body = dict[str, Any]


def _matches(labels: dict[str, str], selector: str) -> bool:
    wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
    return all(labels.get(k) == v for k, v in wanted.items())


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Body] = {}
        """(plural, namespace, name) -> the stored body; plural "jobs" for batch/v1 Jobs."""
        self.pods: list[Body] = []
        self.events: list[Body] = []
        self.leases: dict[tuple[str, str], Body] = {}
        self.calls: list[tuple[str, str, str]] = []
        """(verb, plural, name) of every request, in order."""
        self._version = 100

    # -- test setup -------------------------------------------------------------------

    def _bump(self, obj: Body) -> Body:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        return obj

    def add(self, plural: str, obj: Body) -> Body:
        """Store ``obj`` as if a user had applied it; returns the stored copy."""
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2026-11-22T00:00:00Z")
        self.objects[(plural, meta["namespace"], meta["name"])] = self._bump(stored)
        return copy.deepcopy(stored)

    def stored(self, plural: str, namespace: str, name: str) -> Body | None:
        found = self.objects.get((plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def count(self, verb: str, plural: str | None = None) -> int:
        return sum(v == verb and (plural is None or p == plural) for v, p, _ in self.calls)

    # -- KubeApi ----------------------------------------------------------------------

    def _existing(self, plural: str, namespace: str, name: str) -> Body:
        found = self.objects.get((plural, namespace, name))
        if found is None:
            raise ApiError(404, f'{plural} "{name}" not found')
        return found

    @staticmethod
    def _check_version(stored: Body, version: str | None) -> None:
        if version is not None and version != stored["metadata"]["resourceVersion"]:
            raise ApiError(409, "the object has been modified; please apply your changes "
                           "to the latest version and try again")

    async def get(self, plural: str, namespace: str, name: str) -> Body | None:
        self.calls.append(("get", plural, name))
        return self.stored(plural, namespace, name)

    async def replace_status(self, plural: str, obj: Body) -> Body:
        meta = obj["metadata"]
        self.calls.append(("replace_status", plural, meta["name"]))
        stored = self._existing(plural, meta["namespace"], meta["name"])
        self._check_version(stored, meta.get("resourceVersion"))
        stored["status"] = copy.deepcopy(obj.get("status"))
        return copy.deepcopy(self._bump(stored))

    async def patch_metadata(self, plural: str, namespace: str, name: str,
                             metadata: Body) -> Body:
        self.calls.append(("patch", plural, name))
        stored = self._existing(plural, namespace, name)
        self._check_version(stored, metadata.get("resourceVersion"))
        stored["metadata"].update({k: v for k, v in metadata.items() if k != "resourceVersion"})
        self._bump(stored)
        if stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get(
                "finalizers"):
            del self.objects[(plural, namespace, name)]
        return copy.deepcopy(stored)

    async def delete(self, plural: str, namespace: str, name: str,
                     resource_version: str | None = None) -> None:
        self.calls.append(("delete", plural, name))
        stored = self.objects.get((plural, namespace, name))
        if stored is None:
            return
        self._check_version(stored, resource_version)
        if stored["metadata"].get("finalizers"):
            stored["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
            self._bump(stored)
        else:
            del self.objects[(plural, namespace, name)]

    async def list_jobs(self, namespace: str, selector: str) -> Body:
        self.calls.append(("list", "jobs", selector))
        items = [copy.deepcopy(job) for (plural, ns, _), job in self.objects.items()
                 if plural == "jobs" and ns == namespace
                 and _matches(job["metadata"].get("labels") or {}, selector)]
        return {"items": items, "metadata": {"resourceVersion": str(self._version)}}

    async def create_job(self, manifest: Body) -> Body | None:
        meta = manifest["metadata"]
        self.calls.append(("create", "jobs", meta["name"]))
        key = ("jobs", meta["namespace"], meta["name"])
        if key in self.objects:
            return None
        stored = copy.deepcopy(manifest)
        stored.setdefault("status", {})
        self.objects[key] = self._bump(stored)
        return copy.deepcopy(stored)

    async def delete_job(self, namespace: str, name: str) -> None:
        self.calls.append(("delete", "jobs", name))
        self.objects.pop(("jobs", namespace, name), None)

    async def list_pods(self, namespace: str, selector: str) -> list[Body]:
        self.calls.append(("list", "pods", selector))
        return [copy.deepcopy(p) for p in self.pods if p["metadata"]["namespace"] == namespace
                and _matches(p["metadata"].get("labels") or {}, selector)]

    async def create_event(self, namespace: str, event: Body) -> None:
        self.calls.append(("create", "events", event["involvedObject"]["name"]))
        self.events.append(copy.deepcopy(event))

    async def read_lease(self, namespace: str, name: str) -> Body | None:
        self.calls.append(("get", "leases", name))
        found = self.leases.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create_lease(self, namespace: str, lease: Body) -> None:
        self.calls.append(("create", "leases", lease["metadata"]["name"]))
        key = (namespace, lease["metadata"]["name"])
        if key in self.leases:
            raise ApiError(409, "already exists")
        self.leases[key] = self._bump(copy.deepcopy(lease))

    async def replace_lease(self, namespace: str, name: str, lease: Body) -> None:
        self.calls.append(("replace", "leases", name))
        stored = self.leases.get((namespace, name))
        if stored is None:
            raise ApiError(404, "not found")
        self._check_version(stored, lease["metadata"].get("resourceVersion"))
        self.leases[(namespace, name)] = self._bump(copy.deepcopy(lease))

    async def version(self) -> Body:
        self.calls.append(("get", "version", ""))
        return {"gitVersion": "v1.37.2"}

    async def close(self) -> None:
        return None


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
