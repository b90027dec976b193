"""The fault suite's private servers do not outlive a killed pytest for long.

A SIGKILLed pytest runs no teardown; its private MinIO (or control plane) keeps
running in its own session. The next session's first private server kills it
(faults_fixtures.sweep_strays), and leaves the servers of sessions still running
alone, such as another suite's beside this one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .faults_fixtures import STRAYS, Stray, is_running, record_servers, sweep_strays
from .operator_fixtures import ROOT
from .support import wait_until

HOLD = """
    import time

    from tests.e2e.faults_fixtures import private_minio

    def test_hold(private_minio):
        time.sleep(600)
"""


@pytest.fixture
def bystander(tmp_path: Path) -> Iterator[Stray]:
    """A process recorded as a private server of this (live) session."""
    marker = str(tmp_path / "bystander")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker],
                               start_new_session=True)
    record = record_servers("bystander", [Stray(process.pid, marker)])
    yield Stray(process.pid, marker)
    process.kill()
    process.wait()
    record.unlink(missing_ok=True)


def test_a_killed_sessions_private_minio_is_killed_by_the_next_session(
    tmp_path: Path, bystander: Stray,
) -> None:
    (tmp_path / "test_hold.py").write_text(textwrap.dedent(HOLD))
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
         "--basetemp", str(tmp_path / "base"), str(tmp_path / "test_hold.py")],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        record = wait_until(lambda: next(STRAYS.glob(f"{session.pid}-minio-*.json"), None),
                            what="the killed session's MinIO to be up", timeout=90)
    finally:
        os.kill(session.pid, signal.SIGKILL)
        session.wait()
    [minio] = [Stray(**p) for p in json.loads(record.read_text())["processes"]]
    assert is_running(minio), "SIGKILL should have left the private MinIO running"

    with pytest.warns(UserWarning, match=f"pid {minio.pid} "):
        sweep_strays()

    assert not is_running(minio)
    assert not record.exists()
    assert is_running(bystander), "a live session's server was killed"
