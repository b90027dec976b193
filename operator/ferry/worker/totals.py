"""The batch's progress total, counted beside the export rather than before it.

An exact total (``totals: count``, the default) is a ``COUNT(*)`` over the batch's
predicate: one more pass over the same rows. Run before the COPY, it held back the first
row by that pass (0.3 s of a 16 s export of the 5M-row benchmark table; minutes on a
billion-row table without an index). It now runs on a second session that imports the
export's snapshot (``pg_export_snapshot``, as ``pg_dump -j`` shares one), so it counts
exactly the rows the COPY sends, while the COPY is already streaming: the total reaches
the progress annotation a moment after the first rows, and the database can use another
core for it.

- If the second session cannot count (a connection limit, a lost connection), the
  export goes on without a total until it ends; the reason is logged.
- If the COPY finishes first, the count is cancelled: the records exported are then the
  total, by definition of the shared snapshot.
- A server that will not export the snapshot (a role without ``EXECUTE`` on
  ``pg_export_snapshot()``) gets the count first, on the export's own connection.
- ``totals: estimate`` asks the planner on the export's own connection (milliseconds,
  may be far off); ``none`` skips both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import psycopg

from ferry.contract.plan import Plan
from ferry.worker.errors import WorkerError
from ferry.worker.progress import Progress
from ferry.worker.source import COUNT_APPLICATION_NAME, BatchReader, count_rows, open_session

log = logging.getLogger(__name__)

STOP_WAIT_S = 5.0
"""How long stopping waits for the count's session to open (or be refused), and again
for its thread after cancelling the query."""


class SnapshotCount:
    """``COUNT(*)`` of the batch on its own session in a shared snapshot, on a thread."""

    def __init__(self, dsn: str, plan: Plan, snapshot: str, progress: Progress) -> None:
        self._dsn = dsn
        self._plan = plan
        self._snapshot = snapshot
        self._progress = progress
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._stopped = False
        self._session_tried = threading.Event()
        self._thread = threading.Thread(target=self._count, name="ferry-count", daemon=True)

    def start(self) -> SnapshotCount:
        """Start counting; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Cancel the count if it is still running and wait for the thread to end.

        Waits for the session to be opened or refused first, so a refusal is reported
        even when the COPY was faster (bounded by ``STOP_WAIT_S``).
        """
        self._session_tried.wait(STOP_WAIT_S)
        with self._lock:
            self._stopped = True
            conn = self._conn
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=STOP_WAIT_S)
        self._thread.join(STOP_WAIT_S)

    def _count(self) -> None:
        try:
            conn = open_session(self._dsn, self._plan, snapshot=self._snapshot,
                                application_name=COUNT_APPLICATION_NAME)
        except WorkerError as exc:
            self._give_up(exc.reason)
            self._session_tried.set()
            return
        with self._lock:
            stopped = self._stopped
            if not stopped:
                self._conn = conn
        self._session_tried.set()
        if stopped:
            conn.close()
            return
        try:
            self._progress.total = count_rows(conn, self._plan)
            log.info("batch %d: %d rows to export", self._plan.batch_index,
                     self._progress.total)
        except WorkerError as exc:
            self._give_up(exc.reason)
        finally:
            conn.close()

    def _give_up(self, reason: str) -> None:
        if not self._stopped:
            log.warning("batch %d: no progress total until the export ends (%s)",
                        self._plan.batch_index, reason)


@contextlib.contextmanager
def progress_total(reader: BatchReader, dsn: str, plan: Plan,
                   progress: Progress) -> Iterator[None]:
    """Fill ``progress.total`` as ``plan.totals`` asks while the body exports the batch.

    A server that will not share the snapshot gets the count on the export's own
    connection, before the COPY.
    """
    progress.total = None
    snapshot = reader.export_snapshot() if plan.totals == "count" else None
    if plan.totals == "estimate":
        progress.total = reader.estimate()
    elif plan.totals == "count" and snapshot is None:
        progress.total = count_rows(reader.conn, plan)
    if progress.total is not None:
        log.info("batch %d: %d rows to export", plan.batch_index, progress.total)
    if snapshot is None:
        yield
        return
    count = SnapshotCount(dsn, plan, snapshot, progress).start()
    try:
        yield
    finally:
        count.stop()
    if progress.total is None:
        progress.total = progress.records
