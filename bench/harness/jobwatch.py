"""When each Job of a namespace is first seen, by a watch of the benchmark's own.

The watch's wall clock gives sub-second latencies; the Jobs' creationTimestamp (the API
server's clock, whole seconds) is kept beside it. The watch is a Python thread on the
same busy cores, so it can see a Job late: its figures are upper bounds.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from bench.harness.report import log


class JobWatch(threading.Thread):
    """First time each Job of the namespace is seen (ADDED), from the start on."""

    def __init__(self, namespace: str) -> None:
        super().__init__(daemon=True)
        self.namespace = namespace
        self.first_seen: dict[str, float] = {}
        self.created: dict[str, dt.datetime] = {}
        self.stopped = threading.Event()
        self.ready = threading.Event()

    def __enter__(self) -> JobWatch:
        """Start watching and wait (up to 30 s) until the watch's start version is read."""
        self.start()
        self.ready.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()

    def wait_for(self, count: int, deadline: float,
                 check: Callable[[], None] = lambda: None) -> None:
        """Until `count` Jobs were seen or the wall clock passes `deadline`; `check` is
        called every half second (to stop at an operator that exited)."""
        while len(self.first_seen) < count and time.time() < deadline:
            time.sleep(0.5)
            check()

    def run(self) -> None:
        batch = client.BatchV1Api()
        version = batch.list_namespaced_job(self.namespace, limit=1).metadata.resource_version
        self.ready.set()
        while not self.stopped.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(batch.list_namespaced_job, self.namespace,
                                           resource_version=version, timeout_seconds=60,
                                           allow_watch_bookmarks=True):
                    now = time.time()
                    obj = event["object"]
                    if event["type"] == "BOOKMARK":
                        version = obj["metadata"]["resourceVersion"]
                        continue
                    version = obj.metadata.resource_version
                    if event["type"] == "ADDED" and obj.metadata.name not in self.first_seen:
                        self.first_seen[obj.metadata.name] = now
                        self.created[obj.metadata.name] = obj.metadata.creation_timestamp
                    if self.stopped.is_set():
                        break
            except ApiException as e:
                if e.status == 410:  # expired: relist the names seen so far
                    for job in batch.list_namespaced_job(self.namespace).items:
                        self.first_seen.setdefault(job.metadata.name, time.time())
                        self.created.setdefault(job.metadata.name,
                                                job.metadata.creation_timestamp)
                    version = batch.list_namespaced_job(
                        self.namespace, limit=1).metadata.resource_version
                else:
                    time.sleep(1)
            except Exception as e:  # a broken stream: watch again from the last version
                log(f"job watch: {e!r}; watching again")
                time.sleep(1)
