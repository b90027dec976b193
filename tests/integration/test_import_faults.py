"""A killed or terminated import pod: nothing half-loaded, and the retry loads once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.services import S3Server
from tests.integration.test_import_load import HEADER, Env, contacts, csv_rows

pytestmark = pytest.mark.integration

ROWS = 300_000


@pytest.fixture
def env(pg_db: str, s3: S3Server, s3_bucket: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> Env:
    return Env(pg_db, s3, s3_bucket, tmp_path, request.node.name)


def start_worker(env: Env, plan: dict[str, object]) -> subprocess.Popen[bytes]:
    """The worker as a pod runs it: its own process, which a signal can end."""
    environment = {**os.environ, "FERRY_PLAN": json.dumps(plan),
                   "FERRY_DESTINATION_DSN": env.dsn, "AWS_ACCESS_KEY_ID": env.s3.access_key,
                   "AWS_SECRET_ACCESS_KEY": env.s3.secret_key, "FERRY_MAX_ATTEMPTS": "1"}
    environment.pop("POD_NAME", None)
    return subprocess.Popen([sys.executable, "-m", "ferry.worker.main", "import"],
                            env=environment, stderr=subprocess.PIPE)


def wait_for_copy(env: Env, worker: subprocess.Popen[bytes]) -> None:
    """Until the worker's session is in the middle of a COPY."""
    deadline = time.monotonic() + 60
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'ferry-worker-import' AND query LIKE 'COPY%%' AND state = 'active'").fetchone()
            if row and row[0]:
                return
            time.sleep(0.01)
    pytest.fail("the worker never started its COPY")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_pod_ended_mid_copy_leaves_nothing_and_the_retry_loads_once(
        env: Env, how: signal.Signals) -> None:
    table = contacts(env, f"killed_{how.name.lower()}")
    env.put("a.csv", HEADER + csv_rows(1, ROWS))
    env.put("b.csv", HEADER + csv_rows(ROWS + 1, ROWS))
    plan = env.plan(table)
    worker = start_worker(env, plan)
    wait_for_copy(env, worker)
    worker.send_signal(how)
    code = worker.wait(timeout=60)
    assert code == (-9 if how == signal.SIGKILL else 75), (
        worker.stderr.read().decode()[-3000:] if worker.stderr else "")
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 0
    retry = env.run(plan)
    assert retry.code == 0, retry.message
    assert retry.message["records"] == 2 * ROWS and "note" not in retry.message
    assert env.sql(f"SELECT count(*), count(DISTINCT id) FROM {table}")[0] == (
        2 * ROWS, 2 * ROWS)
    again = env.run(plan)
    assert again.code == 0 and again.message["records"] == 2 * ROWS
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 2 * ROWS


def test_two_pods_of_one_batch_load_it_once(env: Env) -> None:
    table = contacts(env, "raced")
    env.put("a.csv", HEADER + csv_rows(1, ROWS // 3))
    env.put("b.csv", HEADER + csv_rows(ROWS + 1, ROWS // 3))
    plan = env.plan(table)
    workers = [start_worker(env, plan) for _ in range(2)]
    codes = [worker.wait(timeout=120) for worker in workers]
    assert codes == [0, 0]
    logs = [worker.stderr.read().decode() if worker.stderr else "" for worker in workers]
    assert sum("loaded by an earlier attempt" in log for log in logs) == 1, logs
    assert env.sql(f"SELECT count(*) FROM {table}")[0][0] == 2 * (ROWS // 3)
