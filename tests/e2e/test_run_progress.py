"""What a user watches while a run is in progress, and after it: per-batch status, the
rate beside the ETA (status and `kubectl ferry describe`), `dataLagSeconds`, and
`Stalled=True` / `NoProgress` for a run that stops moving.

This module runs its own operator with `--stall-after 1` (minutes, the option's unit and
smallest useful value: 0 would call every poll without news a stall), so the stall test
takes a little over a minute; the other runs here move every couple of seconds.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT, ANNOTATION_STOP_REQUESTED_AT
from tests.fixtures.services import S3Server

from .operator_fixtures import (
    OperatorProcess,
    Wiring,
    export_job,
    get,
    request,
    start_operator,
)
from .support import Kubectl, wait_until

ROOT = Path(__file__).resolve().parents[2]
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
ROWS = 1500  # one a minute: 25 hours
BATCHES = 3


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: str, namespace: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The module's operator, reporting a run that has not moved for a minute as stalled."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    running = start_operator(operator_kubeconfig, log, namespace, ["--stall-after", "1"])
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tables(pg_db: str) -> str:
    """`interactions` (one row a minute from START); `throttled`, the same rows at ~30 ms a
    row when exported while COUNT(*) stays instant (a STABLE function the planner drops
    when the column is not read); `stuck`, whose first row never comes (pg_sleep, which
    COUNT(*) has to wait for too)."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions (id bigint PRIMARY KEY, "
                     "created_at timestamptz NOT NULL, note text)")
        with conn.cursor().copy("COPY interactions FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row((i, START + dt.timedelta(minutes=i), f"row {i}"))
        conn.execute("CREATE FUNCTION slow_text(i bigint) RETURNS text STABLE LANGUAGE plpgsql "
                     "AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN repeat(i::text, 200); END $$")
        conn.execute("CREATE VIEW throttled AS SELECT id, created_at, slow_text(id) AS payload "
                     "FROM interactions")
        conn.execute("CREATE VIEW stuck AS SELECT id, created_at, pg_sleep(3600)::text AS nap "
                     "FROM interactions")
    return pg_db


def status_of(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    return get(kubectl, ns, f"exportjob/{name}").get("status") or {}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def ferry(kubeconfig: str, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The plugin as a user runs it."""
    return subprocess.run([str(ROOT / ".venv" / "bin" / "kubectl-ferry"), "-n", ns, *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "KUBECONFIG": kubeconfig})


ETA_LINE = re.compile(r"^\s*ETA:\s+(\S+) at (\d+) rows/s$", re.MULTILINE)


@pytest.fixture(scope="module")
def running(kubectl: Kubectl, kubeconfig: str, operator: OperatorProcess, wiring: Wiring,
            s3: S3Server, tables: str) -> dict[str, Any]:
    """A 3-batch run (time slices of a 25 h window, 500 rows each, ~15 s per batch),
    sampled while its batches export: the status, and `kubectl ferry describe` of the
    same moment (both taken once the status shows a rate and an ETA)."""
    ns = wiring.namespace
    window = {"fixed": {"start": rfc3339(START),
                        "end": rfc3339(START + dt.timedelta(minutes=ROWS))}}
    manifest = export_job("batched", wiring, s3, timeframe=window,
                          batching={"batches": BATCHES, "parallelism": BATCHES})
    manifest["spec"]["source"]["table"] = "throttled"
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "batched", ANNOTATION_RUN_REQUESTED_AT)

    def sample() -> dict[str, Any] | None:
        status = status_of(kubectl, ns, "batched")
        run = status.get("currentRun") or {}
        moving = [b for b in run.get("batchStatuses") or []
                  if b["phase"] == "InProgress" and b.get("recordsProcessed")]
        if run.get("phase") != "InProgress" or not moving or \
                run.get("recordsPerSecond") is None or run.get("etaSeconds") is None:
            return None
        described = ferry(kubeconfig, ns, "describe", "batched")
        return {"status": status, "run": run, "describe": described}

    taken: dict[str, Any] = wait_until(sample, what="a rate and an ETA while batches run",
                                       timeout=150, interval=0.5)
    entry = wait_until(lambda: status_of(kubectl, ns, "batched").get("lastRun"),
                       what="the run to end", timeout=180)
    taken["lastRun"] = entry
    return taken


def test_a_running_run_shows_each_batch_with_its_progress(running: dict[str, Any]) -> None:
    run = running["run"]
    batches = run["batchStatuses"]
    assert [b["index"] for b in batches] == list(range(BATCHES))
    assert {b["phase"] for b in batches} <= {"Pending", "InProgress", "Succeeded"}
    counts = run["batches"]
    assert counts["total"] == BATCHES
    assert (counts["pending"], counts["running"], counts["succeeded"], counts["failed"]) == (
        sum(b["phase"] == "Pending" for b in batches),
        sum(b["phase"] == "InProgress" for b in batches),
        sum(b["phase"] == "Succeeded" for b in batches), 0)
    assert sum(b.get("recordsProcessed") or 0 for b in batches) == run["recordsProcessed"]
    started = parse(run["startedAt"])
    for batch in batches:
        if batch["phase"] == "Pending":
            continue
        assert batch["attempts"] >= 1
        assert parse(batch["startedAt"]) >= started.replace(microsecond=0)
        if batch.get("recordsTotal") is not None:
            # time slices of one window, 500 rows each
            assert batch["recordsTotal"] == ROWS // BATCHES
            assert batch["recordsProcessed"] <= batch["recordsTotal"]
    assert 0 < run["recordsProcessed"] < ROWS
    status = running["status"]
    assert status["phase"] == "InProgress"
    assert status["progress"] and status["eta"]
    assert running["lastRun"]["phase"] == "Succeeded"
    assert running["lastRun"]["records"] == ROWS


def test_each_batch_of_a_running_run_shows_its_time_slice(running: dict[str, Any]) -> None:
    """docs/api.md: batchStatuses[] carry `window` (the batch's time slice, if any); here
    the three equal slices of the run's window, in order."""
    run = running["run"]
    start, end = parse(run["window"]["from"]), parse(run["window"]["to"])
    step = (end - start) / BATCHES
    assert [b.get("window") for b in run["batchStatuses"]] == [
        {"from": rfc3339(start + i * step), "to": rfc3339(start + (i + 1) * step)}
        for i in range(BATCHES)]


def test_the_rate_is_in_status_beside_the_eta(running: dict[str, Any]) -> None:
    run = running["run"]
    rate, eta = run["recordsPerSecond"], run["etaSeconds"]
    processed, total = run["recordsProcessed"], run["recordsTotal"]
    assert rate >= 1
    # The average since the run started, computed at or after the last progress.
    elapsed = (parse(run["progressedAt"]) - parse(run["startedAt"])).total_seconds()
    assert rate <= processed / elapsed + 1
    # The ETA is the rows still expected at that rate (both rounded).
    assert abs(eta - (total - processed) / rate) <= 2 + 0.1 * eta, (eta, total, processed, rate)
    assert parse(run["eta"]) > parse(run["startedAt"])


def test_describe_shows_the_eta_at_the_rate(running: dict[str, Any]) -> None:
    described = running["describe"]
    assert described.returncode == 0, described.stderr
    match = ETA_LINE.search(described.stdout)
    assert match, described.stdout
    assert re.fullmatch(r"(\d+[dhms])+", match.group(1)), match.group(1)
    assert int(match.group(2)) >= 1
    assert re.search(r"^\s*BATCH\s+PHASE\s+STARTED\s+FINISHED\s+RECORDS", described.stdout,
                     re.MULTILINE), described.stdout


# --- dataLagSeconds --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lagging(kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
            tables: str) -> dict[str, Any]:
    """A job with a bounded window (the hour before its run), run once: its last run."""
    ns = wiring.namespace
    manifest = export_job("lagging", wiring, s3, timeframe={"relative": {"last": "1h"}})
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    assert "dataLagSeconds" not in status_of(kubectl, ns, "lagging")
    request(kubectl, ns, "lagging", ANNOTATION_RUN_REQUESTED_AT)
    entry: dict[str, Any] = wait_until(
        lambda: status_of(kubectl, ns, "lagging").get("lastRun"), what="the run to end")
    assert entry["phase"] == "Succeeded"
    return entry


def assert_lag_is_now_minus_window_end(status: dict[str, Any], tolerance: float) -> None:
    """`dataLagSeconds`: "Age of the newest exported data: now - window end" (its
    description, `kubectl explain exportjob.status.dataLagSeconds`)."""
    end = parse(status["lastSuccessfulWindowEnd"])
    lag = (dt.datetime.now(dt.UTC) - end).total_seconds()
    assert abs(status["dataLagSeconds"] - lag) <= tolerance, (
        f"dataLagSeconds is {status['dataLagSeconds']}, now - lastSuccessfulWindowEnd "
        f"is {lag:.0f}")


def test_data_lag_is_the_age_of_the_last_successful_window_end(
    kubectl: Kubectl, wiring: Wiring, lagging: dict[str, Any],
) -> None:
    status = status_of(kubectl, wiring.namespace, "lagging")
    assert status["lastSuccessfulWindowEnd"] == lagging["window"]["to"]
    assert_lag_is_now_minus_window_end(status, tolerance=15)


# --- Stalled / NoProgress --------------------------------------------------------------------


def test_a_run_that_stops_moving_is_stalled_with_no_progress(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server, tables: str,
) -> None:
    ns = wiring.namespace
    manifest = export_job("stuck", wiring, s3)
    manifest["spec"]["source"]["table"] = "stuck"
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    request(kubectl, ns, "stuck", ANNOTATION_RUN_REQUESTED_AT)
    try:
        stalled = wait_until(
            lambda: (c := condition(status_of(kubectl, ns, "stuck"), "Stalled"))
            .get("status") == "True" and c, what="Stalled=True", timeout=200, interval=1)
        seen = dt.datetime.now(dt.UTC)

        assert stalled["reason"] == "NoProgress"
        assert stalled["message"] == (
            "run stuck.1 has made no progress for 1m (0 records): check the worker logs "
            "(kubectl ferry logs stuck) and the source")
        status = status_of(kubectl, ns, "stuck")
        run = status["currentRun"]
        assert (run["phase"], status["phase"]) == ("InProgress", "InProgress")
        assert seen - parse(run["progressedAt"]) >= dt.timedelta(minutes=1)
        assert condition(status, "Ready")["status"] == "True", "the spec is fine"

        request(kubectl, ns, "stuck", ANNOTATION_STOP_REQUESTED_AT)
        entry = wait_until(lambda: status_of(kubectl, ns, "stuck").get("lastRun"),
                           what="the run to be canceled")
        assert entry["phase"] == "Canceled"
        after = condition(status_of(kubectl, ns, "stuck"), "Stalled")
        assert (after["status"], after["reason"]) == ("False", "Progressing")
    finally:
        if status_of(kubectl, ns, "stuck").get("currentRun"):
            request(kubectl, ns, "stuck", ANNOTATION_STOP_REQUESTED_AT)
        # The worker's sessions sleep on in the server after its pod is gone.
        with psycopg.connect(tables, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                         "AND query LIKE '%stuck%'")


# Last in the module: the stall test above has let over a minute pass since `lagging` ran.
def test_data_lag_is_as_of_the_last_status_write_and_the_window_end_does_not_age(
    kubectl: Kubectl, wiring: Wiring, lagging: dict[str, Any],
) -> None:
    """dataLagSeconds is now - lastSuccessfulWindowEnd when the operator last wrote the
    status (a run's start and end, its seal, a slot, a request), not a clock: an
    on-demand job is not written again while nothing happens, so alerts use
    lastSuccessfulWindowEnd (docs/api.md). Read 90 s after the window end."""
    end = parse(lagging["window"]["to"])
    wait_until(lambda: dt.datetime.now(dt.UTC) - end > dt.timedelta(seconds=90),
               what="90 s since the window end", timeout=100, interval=1)
    status = status_of(kubectl, wiring.namespace, "lagging")
    finished = parse(status["lastRun"]["finishedAt"])
    lag_at_end = (finished - end).total_seconds()
    now_lag = (dt.datetime.now(dt.UTC) - end).total_seconds()
    assert lag_at_end - 1 <= status["dataLagSeconds"] <= now_lag + 1, (
        f"dataLagSeconds {status['dataLagSeconds']}: the lag when the run ended is "
        f"{lag_at_end:.0f}, now {now_lag:.0f}")
    assert status["lastSuccessfulWindowEnd"] == lagging["window"]["to"]
