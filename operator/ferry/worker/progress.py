"""Progress counters and their publication as the pod annotation ``ferry.dev/progress``.

The counters are updated on the hot path (plain integer adds); a background thread
publishes a snapshot at most every ``interval_s`` (2 s) and only when it changed, so
the API server sees at most one small merge patch per pod every two seconds, and a slow
API server never stalls the export. Publishing is on only when ``POD_NAME`` is set; a
failing patch is logged once and otherwise ignored (progress is advisory, the
termination message and the manifest are authoritative).

The annotation's value is :class:`ferry.contract.progress.Progress`, which the
operator decodes with the same module::

    {"batch": 3, "phase": "Running", "records": 1200, "total": 5000, "bytes": 81234,
     "files": 1, "updatedAt": "2026-01-01T00:00:02.000Z"}
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping

from ferry.constants import ANNOTATION_PROGRESS
from ferry.contract import progress as annotation
from ferry.worker.manifest import utc_now

log = logging.getLogger(__name__)

Patcher = Callable[[str], None]
"""Publishes one annotation value (the JSON text)."""


class Progress:
    """Counters of one batch; safe to read from the publisher thread."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.phase = "Running"
        self.records = 0
        self.bytes = 0
        self.files = 0
        self.total: int | None = None
        self.key_range: str | None = None
        """The batch's share of a run split by key, once the run's key plan is read."""

    def add(self, records: int, nbytes: int) -> None:
        """Count records and bytes just written."""
        self.records += records
        self.bytes += nbytes

    def snapshot(self) -> annotation.Progress:
        """The annotation's counts (without the timestamp)."""
        return annotation.Progress(batch=self.batch, phase=self.phase, records=self.records,
                                   total=self.total, bytes=self.bytes, files=self.files,
                                   key_range=self.key_range)


class Publisher:
    """Publishes :class:`Progress` snapshots on a daemon thread, rate-limited."""

    def __init__(self, progress: Progress, patch: Patcher, interval_s: float = 2.0) -> None:
        self._progress = progress
        self._patch = patch
        self._interval = interval_s
        self._stop = threading.Event()
        self._last: annotation.Progress | None = None
        self._failed = False
        self._thread = threading.Thread(target=self._loop, name="ferry-progress", daemon=True)

    def start(self) -> Publisher:
        """Start publishing."""
        self._thread.start()
        return self

    def _publish(self) -> None:
        snap = self._progress.snapshot()
        if snap == self._last:
            return
        self._last = snap
        try:
            self._patch(annotation.encode_progress(
                dataclasses.replace(snap, updated_at=utc_now())))
        except Exception as exc:
            if not self._failed:
                log.warning("progress annotation not published: %s", type(exc).__name__)
            self._failed = True

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._publish()

    def stop(self, phase: str) -> None:
        """Stop the thread and publish the final state once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._progress.phase = phase
        self._publish()


def pod_patcher(env: Mapping[str, str]) -> Patcher | None:
    """A patcher for this pod's annotation, or None outside a pod (no POD_NAME)."""
    name = env.get("POD_NAME")
    if not name:
        return None
    namespace = env.get("POD_NAMESPACE") or _service_account_namespace() or "default"
    # Imported here: the client costs ~60 MB of RSS, which a run outside a pod avoids.
    from kubernetes import client, config  # noqa: PLC0415

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            log.warning("progress annotation disabled: no Kubernetes config (%s)", exc)
            return None
    api = client.CoreV1Api()

    def patch(value: str) -> None:
        api.patch_namespaced_pod(
            name, namespace, {"metadata": {"annotations": {ANNOTATION_PROGRESS: value}}},
            _request_timeout=5,
        )

    return patch


def _service_account_namespace() -> str | None:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
            return fh.read().strip() or None
    except OSError:
        return None
