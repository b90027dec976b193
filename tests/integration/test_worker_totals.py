"""The progress total, counted beside the COPY in the export's snapshot (real PostgreSQL)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ferry.worker.plan import load_plan
from ferry.worker.progress import Progress
from ferry.worker.source import BatchReader
from ferry.worker.totals import STOP_WAIT_S, progress_total
from tests.fixtures.services import S3Server
from tests.integration.conftest import PlanFactory, get_json, manifest_key, run_worker

pytestmark = pytest.mark.integration

ROWS = 3000


@pytest.fixture(scope="module")
def rows_dsn(pg_db: str) -> str:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE counted (id integer PRIMARY KEY, label text)")
        conn.execute(f"INSERT INTO counted SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g")
    return pg_db


def wait_for(condition: str, dsn: str, timeout_s: float = 10.0) -> None:
    """Poll pg_stat_activity until ``condition`` (a WHERE clause) holds for a session of
    this database (other suites may use the same server at the same time)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            query = sql.SQL("SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND {}").format(
                sql.SQL(condition))
            row = conn.execute(query).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    pytest.fail(f"no session where {condition} within {timeout_s} s")


def test_the_total_is_counted_in_the_exports_snapshot(rows_dsn: str,
                                                      make_plan: PlanFactory) -> None:
    """Rows committed after the export's snapshot are neither exported nor counted."""
    plan = load_plan({"FERRY_PLAN": json.dumps(make_plan(source={"table": "counted"}))})
    progress = Progress(0)
    with BatchReader(rows_dsn, plan) as reader:
        columns = reader.describe()
        with psycopg.connect(rows_dsn, autocommit=True) as other:
            other.execute("INSERT INTO counted SELECT g, 'late' FROM generate_series(100001, "
                          "100500) g")
        with progress_total(reader, rows_dsn, plan, progress):
            deadline = time.monotonic() + 10
            while progress.total is None and time.monotonic() < deadline:
                time.sleep(0.02)
            counted_beside = progress.total
            exported = sum(chunk.records for chunk in reader.rows(columns, 64 * 1024))
            progress.add(exported, 0)
    try:
        assert counted_beside == exported == ROWS
    finally:
        with psycopg.connect(rows_dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM counted WHERE id > 100000")


def test_a_count_still_waiting_when_the_copy_ends_is_cancelled(
        rows_dsn: str, make_plan: PlanFactory, caplog: pytest.LogCaptureFixture) -> None:
    """The total is then the records exported; the count's session is gone, silently.

    The count is held back by a lock request queued ahead of it (another session asks
    for ACCESS EXCLUSIVE while the export holds its ACCESS SHARE lock), which the export's
    own COPY, already holding its lock, does not wait for.
    """
    plan = load_plan({"FERRY_PLAN": json.dumps(make_plan(source={"table": "counted"}))})
    progress = Progress(0)
    blocker = psycopg.connect(rows_dsn, application_name="ferry-test-blocker")
    blocker.execute("SET lock_timeout = '30s'")
    locking = threading.Thread(
        target=lambda: blocker.execute("LOCK TABLE counted IN ACCESS EXCLUSIVE MODE"))
    caplog.set_level(logging.INFO, logger="ferry.worker.totals")
    try:
        with BatchReader(rows_dsn, plan) as reader:
            columns = reader.describe()
            locking.start()
            wait_for("application_name = 'ferry-test-blocker' AND wait_event_type = 'Lock'",
                     rows_dsn)
            with progress_total(reader, rows_dsn, plan, progress):
                wait_for("application_name = 'ferry-worker-count' "
                         "AND query LIKE 'SELECT count(*)%' AND wait_event_type = 'Lock'",
                         rows_dsn)
                exported = sum(chunk.records for chunk in reader.rows(columns, 64 * 1024))
                progress.add(exported, 0)
                stopping = time.monotonic()
            stopped_in = time.monotonic() - stopping
    finally:
        locking.join(30)
        blocker.close()
    assert progress.total == exported == ROWS
    assert stopped_in < STOP_WAIT_S
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with psycopg.connect(rows_dsn, autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() "
                            "AND application_name = 'ferry-worker-count'"
                            ).fetchone()
    assert left == (0,)


RoleFactory = Callable[[str], str]


@pytest.fixture
def reader_role(rows_dsn: str) -> Iterator[RoleFactory]:
    """Makes login roles that can read ``counted`` (``options`` such as a connection limit
    go into CREATE ROLE) and returns their DSNs; drops them afterwards."""
    roles: list[str] = []

    def make(options: str) -> str:
        role, password = f"ferry_reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        with psycopg.connect(rows_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                sql.Identifier(role), sql.SQL(options), sql.Literal(password)))
            conn.execute(sql.SQL("GRANT SELECT ON counted TO {}").format(sql.Identifier(role)))
        roles.append(role)
        return psycopg.conninfo.make_conninfo(rows_dsn, user=role, password=password)

    yield make
    with psycopg.connect(rows_dsn, autocommit=True) as conn:
        for role in roles:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_an_export_whose_count_is_refused_succeeds_with_the_records_as_total(
        reader_role: RoleFactory, make_plan: PlanFactory, s3: S3Server, s3_bucket: str,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A role allowed one connection: the export's. The pod log says why the progress had
    no total; the manifest still has it."""
    plan = make_plan(source={"table": "counted"})
    result = run_worker(plan, reader_role("CONNECTION LIMIT 1"), s3, tmp_path)
    assert result.code == 0, result.raw_message
    manifest = get_json(s3.client(), s3_bucket, manifest_key(plan))
    assert manifest["records"] == manifest["total"] == ROWS
    warnings = [line for line in capsys.readouterr().err.splitlines() if " WARNING " in line]
    assert len(warnings) == 1
    assert "ferry.worker.totals: batch 0: no progress total until the export ends" in warnings[0]
    assert "too many connections for role" in warnings[0]


def test_a_server_that_will_not_share_the_snapshot_gets_the_count_first(
        rows_dsn: str, reader_role: RoleFactory, make_plan: PlanFactory, s3: S3Server,
        s3_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without EXECUTE on pg_export_snapshot() the count runs on the export's connection,
    before the COPY, and the export's transaction survives the refusal."""
    with psycopg.connect(rows_dsn, autocommit=True) as conn:
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_export_snapshot() FROM PUBLIC")
    try:
        plan = make_plan(source={"table": "counted"})
        result = run_worker(plan, reader_role(""), s3, tmp_path)
    finally:
        with psycopg.connect(rows_dsn, autocommit=True) as conn:
            conn.execute("GRANT EXECUTE ON FUNCTION pg_export_snapshot() TO PUBLIC")
    assert result.code == 0, result.raw_message
    manifest = get_json(s3.client(), s3_bucket, manifest_key(plan))
    assert manifest["records"] == manifest["total"] == ROWS
    log = capsys.readouterr().err
    assert ("ferry.worker.source: the snapshot cannot be shared: this role may not call "
            "pg_export_snapshot()") in log
    assert " WARNING " not in log
    assert log.index(f"batch 0: {ROWS} rows to export") < log.index("batch 0 done")
