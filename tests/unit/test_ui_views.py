"""What the pages of `kubectl ferry ui` show, from realistic objects (pure views)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ferry.cli.ui import actions, views
from tests.cli_objects import (
    NOW,
    exportjob,
    failed_status,
    group_status,
    job_spec,
    running_status,
)

HOSTILE = "<img src=x onerror=alert(1)>"


def placed(obj: dict[str, Any], namespace: str = "team-a") -> dict[str, Any]:
    obj["metadata"]["namespace"] = namespace
    return obj


def with_status(obj: dict[str, Any], status: Any) -> dict[str, Any]:
    return {**obj, "status": status.to_k8s()}


def jobgroup(name: str, members: list[str]) -> dict[str, Any]:
    return placed({"apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup",
                   "metadata": {"name": name},
                   "spec": {"title": "Nightly chain", "members": members}})


def importjob(name: str) -> dict[str, Any]:
    return placed({"apiVersion": "ferry.dev/v1alpha1", "kind": "ImportJob",
                   "metadata": {"name": name},
                   "spec": {"title": "Load contacts",
                            "source": {"s3": {"bucket": "landing", "prefix": "in",
                                              "glob": "*.csv"}},
                            "format": "csv",
                            "destination": {"type": "postgres",
                                            "connectionSecretRef": {"name": "db", "key": "dsn"},
                                            "table": "contacts"},
                            "mode": "Append"}})


def test_a_running_job_row_has_the_bar_and_the_eta_on_hover() -> None:
    raw = with_status(placed(exportjob("contacts")), running_status("contacts"))
    row = views.job_row("exportjobs", raw, NOW)
    assert (row["kind"], row["type"], row["title"]) == ("ExportJob", "Export", "Contact history")
    assert (row["source"], row["records"]) == ("postgres", "interactions")
    assert row["schedule"] == "every 4h at :15 UTC"
    assert row["phase"] == "InProgress"
    assert row["progress"]["percent"] == 45
    assert row["progress"]["text"] == "45%"
    assert row["progress"]["hover"] == "12m left, ends about 2026-11-22T12:12:00Z"
    assert row["lastRun"] == "PartiallySucceeded 1h50m ago"
    assert row["nextRun"] == "in 45m"
    assert row["actions"] == ["run", "stop", "retry", "suspend", "resume", "clone", "delete"]


def test_a_run_without_an_eta_yet_says_so_on_hover() -> None:
    status = running_status("contacts")
    assert status.current_run is not None
    status.current_run.eta_seconds = None
    row = views.job_row("exportjobs", with_status(placed(exportjob("contacts")), status), NOW)
    assert row["progress"]["hover"] == "time left not known yet"


def test_a_hostile_title_is_passed_on_as_text_not_markup() -> None:
    """The page sets it with textContent; the view must not pre-escape (that would show
    &lt;img... to the user) nor drop it."""
    spec = {**job_spec(), "title": HOSTILE}
    row = views.job_row("exportjobs", placed(exportjob("evil", spec)), NOW)
    assert row["title"] == HOSTILE
    assert row["phase"] == "Drafted"
    assert row["progress"] is None


def test_every_kind_is_listed_generically_with_its_own_source_and_type() -> None:
    page = views.jobs_page({
        "exportjobs": [placed(exportjob("contacts"))],
        "importjobs": [importjob("load")],
        "jobgroups": [with_status(jobgroup("nightly", ["contacts", "load"]),
                                  group_status("nightly", ["contacts", "load"]))],
    }, {"jobgroups": "list jobgroups: forbidden"}, NOW)
    rows = {r["name"]: r for r in page["rows"]}
    assert [(r["kind"], r["source"], r["records"]) for r in page["rows"]] == [
        ("ExportJob", "postgres", "interactions"),
        ("ImportJob", "s3://landing/in", "contacts"),
        ("JobGroup", "group", "2 members"),
    ]
    assert rows["load"]["actions"] == ["run", "stop", "retry", "suspend", "resume", "clone",
                                       "delete"], "the plugin's verbs take importjob/NAME"
    assert rows["nightly"]["progress"]["text"] == "1/2 succeeded"
    assert page["errors"] == ["list jobgroups: forbidden"]


def test_an_unreadable_object_keeps_its_row_and_says_why() -> None:
    raw = placed(exportjob("broken", {"title": "Half a spec"}))
    row = views.job_row("exportjobs", raw, NOW)
    assert row["phase"] == "Unreadable"
    assert row["title"] == "Half a spec"
    assert row["readyMessage"].startswith("spec.source: ")


def test_history_lists_every_run_across_kinds_newest_first() -> None:
    page = views.history_page({
        "exportjobs": [with_status(placed(exportjob("contacts")), running_status("contacts")),
                       with_status(placed(exportjob("orders")), failed_status("orders"))],
        "jobgroups": [with_status(jobgroup("nightly", ["contacts", "orders"]),
                                  group_status("nightly", ["contacts", "orders"]))],
    })
    assert [(r["id"], r["phase"]) for r in page["rows"]] == [
        ("contacts.3", "InProgress"), ("nightly.2", "InProgress"), ("orders.2", "Failed"),
        ("contacts.2", "PartiallySucceeded"), ("nightly.1", "Failed"), ("orders.1", "Succeeded"),
        ("contacts.1", "Succeeded"),
    ]
    first = page["rows"][0]
    assert (first["trigger"], first["startedBy"], first["records"]) == ("manual", "alice", 4500)
    assert first["duration"] == "-"
    orders = next(r for r in page["rows"] if r["id"] == "orders.2")
    assert (orders["duration"], orders["records"], orders["files"]) == ("10m", 0, 0)
    nightly = next(r for r in page["rows"] if r["id"] == "nightly.1")
    assert (nightly["members"], nightly["hasPage"]) == ("0/2 succeeded", False)


def test_a_live_run_page_sorts_batches_into_the_seed_filters() -> None:
    raw = with_status(placed(exportjob("contacts")), running_status("contacts"))
    job = views.parse("exportjobs", raw)
    assert isinstance(job, views.ExportJob)
    run = views.find_run(job, 3)
    assert run is not None
    page = views.run_page("exportjobs", raw, run, None, "", NOW)
    assert [(b["index"], b["phase"], b["filter"], b["processed"], b["total"])
            for b in page["batches"]] == [
        (0, "Succeeded", "completed", 3000, 3000),
        (1, "InProgress", "in-progress", 1500, 3000),
        (2, "Pending", "queued", None, 4000),
    ]
    assert page["progress"]["percent"] == 45
    assert page["finished"] is False


def test_a_finished_run_page_reads_its_batches_from_the_run_marker() -> None:
    raw = with_status(placed(exportjob("orders")), failed_status("orders"))
    job = views.parse("exportjobs", raw)
    assert isinstance(job, views.ExportJob)
    run = views.find_run(job, 2)
    assert run is not None
    marker = {"batches": [{"batch": 2, "startedAt": "2026-11-22T11:00:00Z",
                           "finishedAt": "2026-11-22T11:05:00Z", "records": 70, "files": 1}],
              "missingBatches": [0, 1]}
    page = views.run_page("exportjobs", raw, run, marker, "", NOW)
    assert [(b["index"], b["phase"], b["filter"]) for b in page["batches"]] == [
        (0, "Failed", "failed"), (1, "Failed", "failed"), (2, "Succeeded", "completed")]
    assert page["duration"] == "10m"
    assert views.find_run(job, 9) is None


def test_a_batch_with_rejected_rows_ran_with_errors() -> None:
    assert views.batch_filter("Succeeded", 3) == "ran-with-errors"
    assert views.batch_filter("Succeeded", 0) == "completed"
    assert views.batch_filter("Canceled", None) == "canceled"


def test_the_job_page_has_spec_conditions_upcoming_and_missed_runs() -> None:
    status = failed_status("orders")
    status.upcoming_runs = [NOW + dt.timedelta(hours=h) for h in (1, 5)]
    raw = with_status(placed(exportjob("orders")), status)
    events = [{"type": "Warning", "reason": "RunFailed", "message": "x", "count": 1,
               "lastSeen": None}]
    page = views.job_page("exportjobs", raw, events, "", NOW)
    spec = {p["label"]: p["value"] for p in page["spec"]}
    assert spec["Source"] == "postgres table interactions (Secret db, key dsn)"
    assert spec["Schedule"] == "every 4h at :15 UTC"
    assert spec["Output"].startswith("s3://exports/ferry/orders/ csv")
    assert page["upcoming"] == ["2026-11-22T13:00:00Z", "2026-11-22T17:00:00Z"]
    assert [r["id"] for r in page["runs"]] == ["orders.2", "orders.1"]
    assert page["events"] == events


def test_every_button_a_kind_offers_is_a_plugin_verb_or_delete() -> None:
    from ferry.cli.ui.actions import VERBS  # noqa: PLC0415 - the mapping under test

    for kind in views.KINDS:
        for action in kind.actions:
            assert action == "delete" or (kind.plural, action) in VERBS, (kind.name, action)


def test_an_import_rows_action_calls_the_verb_with_its_kubectl_name() -> None:
    args = actions.arguments("importjobs", "load", "load-copy", None)
    assert (args.job, args.source, args.new, args.wait) == (
        "importjob/load", "importjob/load", "load-copy", False)
    assert actions.arguments("exportjobs", "contacts", None, None).job == "contacts"
