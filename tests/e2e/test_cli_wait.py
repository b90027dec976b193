"""`kubectl ferry run --wait / --follow`, `list -w` and `describe`'s Events and next
step, run as a user runs the installed plugin, against the real operator, worker,
PostgreSQL and S3 (issue 22, item 3): the exit code is the run's result."""

from __future__ import annotations

import os
import subprocess
import time

import psycopg
import pytest
import yaml

from tests.fixtures.services import S3Server

from .operator_fixtures import (
    ROOT,
    OperatorProcess,
    Wiring,
    export_job,
    get,
    plugin,
    start_operator,
)
from .support import Kubectl, wait_until

WINDOW = {"fixed": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}}
ONE_BATCH = {"batches": 1, "retriesPerBatch": 0}


@pytest.fixture(scope="module")
def jobs(kubectl: Kubectl, wiring: Wiring, s3: S3Server, pg_db: str) -> None:
    """``good`` exports 60 rows; ``bad`` reads a view whose every row divides by zero."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions AS SELECT id, timestamptz '2026-11-01' "
                     "+ id * interval '1 minute' AS created_at FROM generate_series(0, 59) id")
        conn.execute("CREATE VIEW broken_view AS SELECT id, created_at, "
                     "(1 / (id - id))::text AS payload FROM interactions")
    manifests = []
    for name, table in (("good", "interactions"), ("bad", "broken_view")):
        manifest = export_job(name, wiring, s3, timeframe=WINDOW, batching=ONE_BATCH)
        manifest["spec"]["source"]["table"] = table
        manifests.append(manifest)
    kubectl("apply", "-n", wiring.namespace, "-f", "-", input=yaml.safe_dump_all(manifests))


def test_run_follow_exits_0_with_the_result_of_a_succeeded_run(
        operator: OperatorProcess, wiring: Wiring, jobs: None, kubeconfig: str) -> None:
    done = plugin(kubeconfig, wiring.namespace, "run", "good", "--follow")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(
        "exportjob.ferry.dev/good run requested (ferry.dev/run-requested-at=")
    # Progress lines while it runs (at least the wait for the operator or the run itself),
    # then the result with the run's message.
    assert len(lines) >= 3, lines
    assert lines[-1].startswith("run good.1 Succeeded"), lines
    assert done.stderr == ""


def test_run_wait_exits_1_with_the_message_and_next_step_of_a_failed_run(
        operator: OperatorProcess, wiring: Wiring, jobs: None, kubectl: Kubectl,
        kubeconfig: str) -> None:
    done = plugin(kubeconfig, wiring.namespace, "run", "bad", "--wait")
    assert done.returncode == 1
    # --wait without --follow: the request line only, the result on stderr.
    assert done.stdout.count("\n") == 1
    last = get(kubectl, wiring.namespace, "exportjob/bad")["status"]["lastRun"]
    assert last["phase"] == "Failed"
    first, hint = done.stderr.splitlines()
    assert first == f"error: run bad.1 Failed: {last['message']}"
    assert "division by zero" in first
    assert hint == (f"hint: Last run bad.1 Failed: {last['message']} (error report: kubectl "
                    "ferry errors bad; re-run the failed batches: kubectl ferry retry bad)")

    # describe: the job's Events (the operator's Started and Failed) and the next step.
    page = plugin(kubeconfig, wiring.namespace, "describe", "bad")
    assert page.returncode == 0, page.stderr
    events = page.stdout.split("Events:\n", 1)[1]
    assert any(line.split()[:2] == ["Warning", "Failed"] and "bad.1" in line
               for line in events.splitlines()), events
    assert page.stdout.endswith(
        "Next Step:\n  " + hint.removeprefix("hint: ") + "\n")


def test_run_wait_times_out_with_exit_1(
        operator: OperatorProcess, wiring: Wiring, jobs: None, operator_kubeconfig: str,
        kubeconfig: str) -> None:
    operator.kill()
    try:
        done = plugin(kubeconfig, wiring.namespace, "run", "good", "--wait", "--timeout", "3s")
    finally:
        operator.process = start_operator(operator_kubeconfig, operator.log,
                                          wiring.namespace).process
    assert done.returncode == 1
    assert done.stderr == ("error: timed out waiting for the run of exportjob.ferry.dev/good: "
                           "waiting for the operator to take the run request\n")


def test_list_watch_prints_a_row_when_a_job_changes(
        operator: OperatorProcess, wiring: Wiring, jobs: None, kubectl: Kubectl,
        kubeconfig: str) -> None:
    watcher = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "kubectl-ferry"), "-n", wiring.namespace, "list", "-w"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KUBECONFIG": kubeconfig})
    try:
        assert watcher.stdout is not None
        header = watcher.stdout.readline()
        assert header.split()[0] == "NAME" and "PHASE" in header.split()
        initial = [watcher.stdout.readline().split()[0] for _ in range(2)]
        assert sorted(initial) == ["bad", "good"]
        time.sleep(1.5)
        kubectl("label", "-n", wiring.namespace, "exportjob/good", "watched=yes")
        changed = watcher.stdout.readline()
        assert changed.split()[0] == "good", changed
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    wait_until(lambda: watcher.returncode is not None)


def test_describe_watch_prints_the_page_again_when_the_job_changes(
        operator: OperatorProcess, wiring: Wiring, jobs: None, kubectl: Kubectl,
        kubeconfig: str) -> None:
    watcher = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "kubectl-ferry"), "-n", wiring.namespace, "describe",
         "bad", "-w"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KUBECONFIG": kubeconfig})
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline() == "Name:       bad\n"
        # The first page ends with the failed run's next step (the run of the test above).
        line = ""
        while not line.startswith("Next Step:"):
            line = watcher.stdout.readline()
            assert line, "the page ended without a Next Step"
        watcher.stdout.readline()
        time.sleep(1.5)
        kubectl("label", "-n", wiring.namespace, "exportjob/bad", "watched=yes")
        # A blank line, then the page again.
        assert watcher.stdout.readline() == "\n"
        assert watcher.stdout.readline() == "Name:       bad\n"
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
