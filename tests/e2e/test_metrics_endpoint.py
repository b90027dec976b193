"""The operator's Prometheus endpoint (--metrics-port), scraped as Prometheus would,
while real runs queue, fail to start, succeed and fail on the local cluster.

A ResourceQuota allowing no Jobs makes the operator's Job creation fail with 403, a
reconcile error a real cluster produces; while it holds, a second job on the same
data source waits in the queue. Once the quota goes, the runs go through.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import yaml

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, request, start_operator
from .support import Kubectl, wait_until

ROWS = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: str, namespace: str, metrics_port: int,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """This module's operator serves metrics (the shared fixture's does not)."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    running = start_operator(operator_kubeconfig, log, namespace,
                             ["--metrics-port", str(metrics_port)])
    yield running
    running.process.terminate()
    running.process.wait(15)


@pytest.fixture(scope="module")
def source_table(pg_db: str) -> None:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions AS SELECT i::bigint AS id, "
                     "'2026-11-01T00:00:00Z'::timestamptz + i * interval '1 minute' "
                     "AS created_at FROM generate_series(1, %s) AS i", (ROWS,))


def scrape(port: int) -> dict[str, float]:
    """Samples by name and labels, e.g. 'ferry_runs_total{job_namespace="x",result="Failed"}'."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(\S+) (\S+)", line)
        if match and not line.startswith("#"):
            samples[match[1]] = float(match[2])
    return samples


def last_run(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    return (get(kubectl, namespace, f"exportjob/{name}").get("status") or {}).get("lastRun")  # type: ignore[no-any-return]


def test_metrics_count_runs_records_bytes_queue_and_reconcile_errors(
    kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
    source_table: None, metrics_port: int,
) -> None:
    ns = wiring.namespace
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-jobs"},
             "spec": {"hard": {"count/jobs.batch": "0"}}}
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(quota))
    wait_until(lambda: get(kubectl, ns, "resourcequota/no-jobs").get("status", {}).get("hard"),
               what="the quota to be in force")
    manifests = [export_job("first", wiring, s3),
                 export_job("second", wiring, s3, timeframe={"relative": {"last": "1000d"}}),
                 export_job("broken", wiring, s3)]
    manifests[2]["spec"]["source"]["table"] = "no_such_table"
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(manifests))
    for name in ("first", "broken"):
        request(kubectl, ns, name, ANNOTATION_RUN_REQUESTED_AT)
    wait_until(lambda: ((get(kubectl, ns, "exportjob/first").get("status") or {})
                        .get("currentRun") or {}).get("phase") == "InProgress",
               what="the first run to start")
    request(kubectl, ns, "second", ANNOTATION_RUN_REQUESTED_AT)

    blocked = wait_until(
        lambda: (m := scrape(metrics_port)).get("ferry_queued_runs") == 1.0 and
        m.get('ferry_reconcile_errors_total{reason="api-403"}', 0) >= 1 and m,
        what="a queued run and the refused Job creation in the metrics", timeout=60)
    assert "ferry_workqueue_depth" in blocked
    assert not [k for k in blocked if k.startswith("ferry_runs_total{")], "nothing ended yet"

    kubectl("delete", "resourcequota/no-jobs", "-n", ns)
    entries = {name: wait_until(lambda n=name: last_run(kubectl, ns, n), timeout=90,
                                what=f"the {name} run") for name in ("first", "second", "broken")}

    assert [entries[n]["phase"] for n in ("first", "second", "broken")] == [
        "Succeeded", "Succeeded", "Failed"]
    after = wait_until(lambda: (m := scrape(metrics_port)).get(
        f'ferry_runs_total{{job_kind="ExportJob",job_namespace="{ns}",result="Failed"}}') and m,
        what="the failed run in the metrics")
    label = f'job_namespace="{ns}"'
    runs = f'job_kind="ExportJob",{label}'
    assert after[f'ferry_runs_total{{{runs},result="Succeeded"}}'] == 2.0
    assert after[f'ferry_runs_total{{{runs},result="Failed"}}'] == 1.0
    assert after[f"ferry_records_exported_total{{{label}}}"] == 2 * ROWS
    assert after[f"ferry_bytes_exported_total{{{label}}}"] == sum(
        e.get("bytes") or 0 for e in entries.values()) > 0
    assert after[f"ferry_run_duration_seconds_count{{{label}}}"] == 3.0
    assert after[f"ferry_run_duration_seconds_sum{{{label}}}"] == sum(
        e["durationSeconds"] for e in entries.values())
    assert after["ferry_queued_runs"] == 0.0
    assert after['ferry_build_info{version="0.1.0"}'] == 1.0
    assert after["ferry_leader"] == 1.0
    for name in ("first", "second"):
        job = f'job_kind="ExportJob",job_name="{name}",{label}'
        finished = dt.datetime.fromisoformat(entries[name]["finishedAt"].replace("Z", "+00:00"))
        assert after[f"ferry_last_success_timestamp_seconds{{{job}}}"] == finished.timestamp()
    # Only "second" exports a time window: its lag is now minus the window's end.
    assert f'ferry_data_lag_seconds{{job_kind="ExportJob",job_name="first",{label}}}' not in after
    window_end = get(kubectl, ns, "exportjob/second")["status"]["lastSuccessfulWindowEnd"]
    lag = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(window_end.replace("Z", "+00:00"))
    scraped_lag = after[f'ferry_data_lag_seconds{{job_kind="ExportJob",job_name="second",{label}}}']
    assert 0 <= lag.total_seconds() - scraped_lag < 60
    broken = f'job_kind="ExportJob",job_name="broken",{label}'
    assert f"ferry_last_success_timestamp_seconds{{{broken}}}" not in after
    assert after['ferry_reconcile_errors_total{reason="api-403"}'] >= \
        blocked['ferry_reconcile_errors_total{reason="api-403"}']
