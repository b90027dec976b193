"""The operator's side and the worker's side of ferry.contract agree.

Each limit is checked where it bites on both sides: the ExportJob model refuses one
more than the limit, and so does the worker's plan parser; each exit code the Job spec
treats as fatal is one the worker uses for its fatal failures; the file names the
worker writes are those the CLI and the status URLs use.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from ferry.api.exportjob import ExportJobSpec
from ferry.api.status import HistoryEntry, RunPhase
from ferry.contract import layout
from ferry.contract.exitcodes import FATAL_EXIT_CODES, ExitCode
from ferry.contract.limits import (
    MAX_BATCHES,
    MAX_FILTER_VALUES,
    MAX_MESSAGE_CHARACTERS,
    MAX_QUERY_CHARACTERS,
    MAX_SELECTED_COLUMNS,
    MAX_SHORT_TEXT_CHARACTERS,
)
from ferry.reconcile.batches import Slice
from ferry.reconcile.jobspec import Owner, WorkerDefaults, build_job
from ferry.worker import layout as worker_layout
from ferry.worker.errors import ConfigError, DataError, TransientError
from ferry.worker.plan import parse_plan

from .builders import spec

PLAN: dict[str, Any] = {
    "job": "orders", "run": "orders.7", "source": {"table": "orders"}, "format": "csv",
    "destination": {"bucket": "exports"}, "batchCount": 1,
}


def api_accepts(doc: dict[str, Any]) -> bool:
    try:
        ExportJobSpec.model_validate(doc)
    except ValidationError:
        return False
    return True


def worker_accepts(plan: dict[str, Any]) -> bool:
    try:
        parse_plan(plan, {}, batch_index=0)
    except ConfigError:
        return False
    return True


def job_doc(**source: Any) -> dict[str, Any]:
    doc = copy.deepcopy(spec().doc)
    doc["source"].update(source)
    return doc


@pytest.mark.parametrize("count", [MAX_FILTER_VALUES, MAX_FILTER_VALUES + 1])
def test_filter_values_limit_is_the_same_on_both_sides(count: int) -> None:
    values = [f"v{i}" for i in range(count)]
    api = api_accepts(job_doc(filters=[{"column": "kind", "in": values}]))
    worker = worker_accepts({**PLAN, "filters": [{"column": "kind", "op": "in",
                                                  "values": values}]})
    assert api == worker == (count <= MAX_FILTER_VALUES)


@pytest.mark.parametrize("count", [MAX_SELECTED_COLUMNS, MAX_SELECTED_COLUMNS + 1])
def test_column_list_limit_is_the_same_on_both_sides(count: int) -> None:
    columns = [f"c{i}" for i in range(count)]
    api = api_accepts(job_doc(columns=columns))
    worker = worker_accepts({**PLAN, "columns": columns})
    assert api == worker == (count <= MAX_SELECTED_COLUMNS)


@pytest.mark.parametrize("length", [MAX_QUERY_CHARACTERS, MAX_QUERY_CHARACTERS + 1])
def test_query_length_limit_is_the_same_on_both_sides(length: int) -> None:
    query = "SELECT 1" + " " * (length - len("SELECT 1"))
    doc = job_doc(query=query)
    del doc["source"]["table"]
    api = api_accepts(doc)
    worker = worker_accepts({**PLAN, "source": {"query": query}})
    assert api == worker == (length <= MAX_QUERY_CHARACTERS)


def test_status_text_limits_are_the_contracts() -> None:
    fields = HistoryEntry.model_json_schema()["properties"]
    assert fields["message"]["anyOf"][0]["maxLength"] == MAX_MESSAGE_CHARACTERS
    assert fields["startedBy"]["anyOf"][0]["maxLength"] == MAX_SHORT_TEXT_CHARACTERS
    assert fields["failedBatches"]["anyOf"][0]["maxItems"] == MAX_BATCHES


def test_the_job_fails_an_index_at_once_exactly_on_the_workers_fatal_exit_codes() -> None:
    job = build_job(Owner("orders", "team-a", "uid"), spec().build(), 1, "orders.1",
                    [Slice(0, 1, None, None)], WorkerDefaults("ferry-worker", "ferry-worker"))
    [fail_index] = [r for r in job["spec"]["podFailurePolicy"]["rules"]
                    if r["action"] == "FailIndex"]
    assert set(fail_index["onExitCodes"]["values"]) == {int(c) for c in FATAL_EXIT_CODES}
    assert {ConfigError.exit_code, DataError.exit_code} == set(FATAL_EXIT_CODES)
    assert TransientError.exit_code == ExitCode.TRANSIENT not in FATAL_EXIT_CODES


def test_the_worker_writes_the_names_readers_look_for() -> None:
    plan = parse_plan({**PLAN, "destination": {"bucket": "exports", "prefix": "p"}},
                      {}, batch_index=0)
    folder = "p/orders/orders.7/"
    assert worker_layout.manifest_key(plan) == folder + layout.manifest_name(0)
    assert worker_layout.manifest_key(plan).startswith(folder + layout.MANIFESTS)
    assert worker_layout.error_key(plan) == folder + layout.error_report_name(0)
    assert worker_layout.error_key(plan).startswith(folder + layout.ERRORS)
    assert worker_layout.run_marker_key(plan) == folder + layout.RUN_MARKER
    entry = HistoryEntry(id="orders.7", number=7, trigger="manual", phase=RunPhase.FAILED)
    assert entry.folder == "orders.7"
