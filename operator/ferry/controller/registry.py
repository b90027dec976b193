"""What the operator knows of every ExportJob's active run, for the per-source queue.

Fed by the ExportJob watch and, synchronously, by the operator's own status writes:
the operator is the only writer of status, so its own last write is the freshest
truth, and an older watch event arriving afterwards must not roll it back (entries
only move forward by resourceVersion).

Entries are also indexed by (namespace, concurrency key): every reconcile asks who else
holds or waits on its key, and a scan over all entries made each pass cost O(jobs), so
a cold start over 10,000 ExportJobs cost O(jobs^2).
"""

from __future__ import annotations

import datetime as dt
import json
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
        self._by_key: dict[tuple[str, str | None], dict[str, Entry]] = {}
        """(namespace, concurrency key) -> {name: entry}, the same entries as _entries."""

    def observe(self, namespace: str, name: str, obj: dict[str, Any]) -> None:
        entry = entry_from(obj)
        known = self._entries.get((namespace, name))
        if known is None or entry.resource_version >= known.resource_version:
            if known is not None:
                self._unindex(namespace, name, known)
            self._entries[(namespace, name)] = entry
            self._by_key.setdefault((namespace, entry.key), {})[name] = entry

    def forget(self, namespace: str, name: str) -> None:
        known = self._entries.pop((namespace, name), None)
        if known is not None:
            self._unindex(namespace, name, known)

    def _unindex(self, namespace: str, name: str, entry: Entry) -> None:
        bucket = self._by_key.get((namespace, entry.key))
        if bucket is not None:
            bucket.pop(name, None)
            if not bucket:
                del self._by_key[(namespace, entry.key)]

    def _on_key(self, namespace: str, key: str) -> dict[str, Entry]:
        return self._by_key.get((namespace, key), {})

    def queued(self) -> int:
        """Runs waiting for their data source, over all namespaces."""
        return sum(e.phase == "Queued" for e in self._entries.values())

    def waiting_on(self, namespace: str, key: str) -> list[tuple[str, str]]:
        """Jobs whose queued run waits on ``key``, first come first (the order they run)."""
        queued = sorted((e.queued_at or dt.datetime.max.replace(tzinfo=dt.UTC), n)
                        for n, e in self._on_key(namespace, key).items() if e.phase == "Queued")
        return [(namespace, n) for _, n in queued]

    def queue_view(self, namespace: str, name: str, key: str,
                   queued_at: dt.datetime) -> QueueView:
        """Who holds ``key`` and how many queued runs came before one queued at ``queued_at``."""
        holder = None
        ahead = 0
        for other, entry in self._on_key(namespace, key).items():
            if other == name:
                continue
            if entry.phase == "InProgress":
                holder = entry.run_id
            elif entry.phase == "Queued" and entry.queued_at is not None and \
                    (entry.queued_at, other) < (queued_at, name):
                ahead += 1
        return QueueView(holder=holder, ahead=ahead)


def _job_summary(job: dict[str, Any]) -> dict[str, Any]:
    """What `ferry.reconcile.observe.job_observation` reads of a Job, without its pod
    template: a thousand Jobs' templates are megabytes the operator never looks at."""
    meta = job.get("metadata") or {}
    return {
        "metadata": {key: meta[key] for key in
                     ("name", "namespace", "labels", "resourceVersion", "deletionTimestamp")
                     if key in meta},
        "spec": {"completions": (job.get("spec") or {}).get("completions")},
        "status": job.get("status") or {},
    }


class JobIndex:
    """The child Jobs of every ExportJob, from the Job watch and the operator's own creates.

    A reconcile used to LIST its ExportJob's Jobs on every pass: one request more per
    run at the top of the hour, and for the API server a scan of every Job in the
    namespace for the label selector, thousands of times a minute. The watch says the
    same. Where it may not (it has just started; it can miss a deletion across a broken
    watch; a create answered 409 for a Job it has not shown yet), the caller lists once
    and hands the answer to `replace`: `jobs` returns None for an ExportJob never listed
    since the operator started, or not within ``max_age`` seconds when asked so.
    """

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._listed: dict[tuple[str, str], float] = {}
        """(namespace, ExportJob) -> when its Jobs were last listed (event loop time)."""

    def observe(self, namespace: str, owner: str, job: dict[str, Any]) -> None:
        """A Job as the watch or a create answer shows it; an older version is ignored."""
        summary = _job_summary(job)
        name = summary["metadata"]["name"]
        bucket = self._jobs.setdefault((namespace, owner), {})
        known = bucket.get(name)
        if known is None or _version(summary["metadata"].get("resourceVersion")) >= \
                _version(known["metadata"].get("resourceVersion")):
            bucket[name] = summary

    def created(self, namespace: str, owner: str, job: dict[str, Any], at: float) -> None:
        """The operator created ``job``: the run's own Job is known first hand, so an
        index listed before stays as good as a fresh list for it."""
        self.observe(namespace, owner, job)
        if (namespace, owner) in self._listed:
            self._listed[(namespace, owner)] = at

    def drop(self, namespace: str, owner: str, name: str) -> None:
        """The Job is gone (or going: deleted by the operator)."""
        bucket = self._jobs.get((namespace, owner))
        if bucket is not None:
            bucket.pop(name, None)
            if not bucket:
                del self._jobs[(namespace, owner)]

    def replace(self, namespace: str, owner: str, jobs: list[dict[str, Any]],
                list_version: str | None, at: float) -> None:
        """The answer of a LIST: the truth as of ``list_version``; entries the watch
        brought in since (newer than the list) stay."""
        listed = _version(list_version)
        newer = {name: job for name, job in self._jobs.get((namespace, owner), {}).items()
                 if _version(job["metadata"].get("resourceVersion")) > listed}
        bucket = {s["metadata"]["name"]: s for s in map(_job_summary, jobs)} | newer
        if bucket:
            self._jobs[(namespace, owner)] = bucket
        else:
            self._jobs.pop((namespace, owner), None)
        self._listed[(namespace, owner)] = at

    def unlist(self, namespace: str, owner: str) -> None:
        """Make the next `jobs` ask for a LIST (the index was found wrong)."""
        self._listed.pop((namespace, owner), None)

    def jobs(self, namespace: str, owner: str, now: float,
             max_age: float | None = None) -> list[dict[str, Any]] | None:
        """The ExportJob's Jobs, or None when they must be listed first."""
        listed = self._listed.get((namespace, owner))
        if listed is None or (max_age is not None and now - listed > max_age):
            return None
        return list(self._jobs.get((namespace, owner), {}).values())

    def forget(self, namespace: str, owner: str) -> None:
        """The ExportJob is gone (its Jobs go with it, by owner reference)."""
        self._jobs.pop((namespace, owner), None)
        self._listed.pop((namespace, owner), None)

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._jobs.values())


class BodyCache:
    """The newest version of every ExportJob seen (watch events, the operator's writes).

    A reconcile reads its ExportJob here instead of a GET: at the top of the hour that
    GET was a third of the round trips of a run, each of them waiting for a busy API
    server. It is safe because every write the operator makes is conditional on the
    resourceVersion read (status replace, finalizer patch, self-delete precondition):
    a decision taken on a version the API server has moved past is refused (409), the
    entry is dropped and the next pass reads fresh. The operator writes status and
    finalizers only itself, and its writes enter here at once, so the cache is never
    behind the operator's own decisions.

    Entries are kept as compact JSON (parsed on use): ten thousand objects as Python
    dicts would be a few hundred MB, as bytes a few tens.
    """

    def __init__(self) -> None:
        self._bodies: dict[tuple[str, str], tuple[int, bytes]] = {}

    def keep(self, namespace: str, name: str, obj: dict[str, Any]) -> None:
        version = _version((obj.get("metadata") or {}).get("resourceVersion"))
        known = self._bodies.get((namespace, name))
        if known is None or version >= known[0]:
            self._bodies[(namespace, name)] = (
                version, json.dumps(obj, separators=(",", ":")).encode())

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        known = self._bodies.get((namespace, name))
        return json.loads(known[1]) if known is not None else None

    def drop(self, namespace: str, name: str) -> None:
        self._bodies.pop((namespace, name), None)

    def __len__(self) -> int:
        return len(self._bodies)
