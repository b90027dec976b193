"""What list, describe and history print, from status the operator would write."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ferry.api.exportjob import ExportJob
from ferry.api.status import FINISHED_RUN_PHASES, ExportJobStatus, HistoryEntry, RunPhase
from ferry.cli import groupviews, jobviews
from ferry.cli.errors import CliError
from ferry.cli.jobs import clone_body, gitops_manager, retry_target
from ferry.cli.model import job_ref, parse_group, parse_import, parse_job, pick_run
from ferry.constants import ANNOTATION_RETRY_REQUESTED_AT
from ferry.reconcile.runs import reconcile
from tests.cli_objects import NOW, exportjob, failed_status, group_status, running_status
from tests.unit.builders import import_spec, observation, spec


def job(name: str = "contacts", status: Any = None) -> ExportJob:
    raw = exportjob(name)
    raw["metadata"]["namespace"] = "team-a"
    if status is not None:
        raw["status"] = status.to_k8s()
    return parse_job(raw)


def test_list_row_of_a_running_job() -> None:
    out = jobviews.list_table([job(status=running_status("contacts")), job("fresh")], NOW, False)
    assert out == (
        "NAME       TYPE     TITLE             PHASE        PROGRESS                      ETA   "
        "LAST RUN                       NEXT RUN\n"
        "contacts   Export   Contact history   InProgress   [#########-----------]  45%   12m   "
        "PartiallySucceeded 1h50m ago   in 45m\n"
        "fresh      Export   Contact history   -            -                             -     "
        "-                              -\n"
    )


def test_list_with_all_namespaces_leads_with_namespace() -> None:
    out = jobviews.list_table([job()], NOW, True)
    assert out.splitlines()[1].split()[:2] == ["team-a", "contacts"]


def test_describe_shows_batches_history_and_summaries() -> None:
    out = jobviews.describe_job(job(status=running_status("contacts")), NOW)
    assert "Schedule:   every 4h at :15 UTC\n" in out
    assert "Output:     s3://exports/ferry/contacts/ csv\n" in out
    assert "  Records:     4500/10000\n" in out
    assert "  Batches:     3 total, 1 running, 1 succeeded, 0 failed, 1 pending\n" in out
    assert "  1       InProgress   2026-11-22T11:50:00Z   -                      1500/3000" in out
    assert "  contacts.2   schedule   2026-11-22T10:00:00Z   2026-11-22T10:10:00Z   10m" in out
    assert out.endswith("Conditions:\n  <none>\n")


def test_describe_of_a_never_run_job() -> None:
    out = jobviews.describe_job(job(), NOW)
    assert "Current Run:\n  <none>\nRecent Runs:\n  <none>\n" in out
    assert "Timeframe:  all data\n" in out


def test_history_merges_jobs_newest_first_and_filters() -> None:
    rows = jobviews.history_rows([job(status=running_status("contacts")),
                                  job("orders", failed_status("orders"))])
    assert [r.id for r in rows] == ["contacts.3", "orders.2", "contacts.2", "orders.1",
                                    "contacts.1"]
    failed = jobviews.filter_rows(rows, RunPhase.FAILED, None)
    assert [r.id for r in failed] == ["orders.2"]
    recent = jobviews.filter_rows(rows, None, NOW - dt.timedelta(hours=3))
    assert [r.id for r in recent] == ["contacts.3", "orders.2", "contacts.2"]


def test_history_row_json_shape() -> None:
    row = jobviews.history_rows([job("orders", failed_status("orders"))])[0]
    assert row.to_dict() == {
        "namespace": "team-a", "job": "orders", "id": "orders.2", "trigger": "schedule",
        "phase": "Failed", "startedAt": "2026-11-22T11:00:00Z",
        "finishedAt": "2026-11-22T11:10:00Z", "durationSeconds": 600, "records": 0,
        "files": 0, "errorReport": None,
    }


def test_retry_target_accepts_the_latest_failed_run() -> None:
    assert retry_target(job("orders", failed_status("orders")), "orders", None) == "orders.2"
    assert retry_target(job("orders", failed_status("orders")), "orders", 2) == "orders.2"


@pytest.mark.parametrize(
    ("number", "message"),
    [(9, 'run orders.9 not found in the history of exportjob "orders"'),
     (1, "run orders.1 Succeeded: only a Failed, PartiallySucceeded or Canceled run can be "
         "retried")],
)
def test_retry_target_rejects(number: int, message: str) -> None:
    with pytest.raises(CliError) as info:
        retry_target(job("orders", failed_status("orders")), "orders", number)
    assert str(info.value) == message


def test_retry_target_rejects_while_running_and_before_any_run() -> None:
    with pytest.raises(CliError) as running:
        retry_target(job(status=running_status("contacts")), "contacts", None)
    assert str(running.value) == "run contacts.3 is InProgress: retry after it ends"
    with pytest.raises(CliError) as fresh:
        retry_target(job(), "contacts", None)
    assert str(fresh.value) == 'exportjob "contacts" has not run yet: nothing to retry'



def test_pick_run_defaults_to_latest_and_follows_retries() -> None:
    status = failed_status("orders")
    assert pick_run(job("orders", status), None).id == "orders.2"
    retried = status.model_copy(deep=True)
    assert retried.history is not None
    retried.history[0] = retried.history[0].model_copy(
        update={"trigger": "retry", "retry_of": "orders.1"})
    ref = pick_run(job("orders", retried), 2)
    assert (ref.id, ref.folder) == ("orders.2", "orders.1")
    with pytest.raises(CliError) as info:
        pick_run(job("orders", status), 5)
    assert str(info.value) == 'run orders.5 not found: exportjob "orders" has no run number 5'


def test_clone_body_drops_status_annotations_ownership_and_gitops_labels() -> None:
    raw = exportjob("contacts")
    raw["metadata"].update(
        namespace="team-a", uid="u", resourceVersion="9", annotations={"a": "b"},
        labels={"team": "crm", "app.kubernetes.io/instance": "argo-app"},
        ownerReferences=[{"kind": "X"}], managedFields=[{}],
    )
    raw["status"] = {"phase": "Succeeded"}
    body = clone_body(raw, "copy", "Copy of contacts")
    assert body["metadata"] == {"name": "copy", "namespace": "team-a", "labels": {"team": "crm"}}
    assert body["spec"]["suspend"] is True
    assert body["spec"]["title"] == "Copy of contacts"
    assert "status" not in body
    assert raw["spec"].get("suspend") is None  # the source is not modified


def test_gitops_manager_detection() -> None:
    assert gitops_manager({"metadata": {"annotations": {"argocd.argoproj.io/tracking-id": "x"}}}
                          ) == "Argo CD"
    assert gitops_manager({"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "x"}}}
                          ) == "Flux"
    assert gitops_manager({"metadata": {}}) is None


def test_group_views() -> None:
    raw = {"apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup",
           "metadata": {"name": "nightly", "namespace": "team-a"},
           "spec": {"title": "Nightly", "members": ["lists", "profiles"]},
           "status": group_status("nightly", ["lists", "profiles"]).to_k8s()}
    group = parse_group(raw)
    assert groupviews.list_table([group], NOW, False).splitlines()[1] == (
        "nightly   Nightly   2         InProgress   2/2 profiles   Failed 2h58m ago   -"
    )
    out = groupviews.describe_group(group, NOW)
    assert "  2   profiles   profiles.7   InProgress   2026-11-22T11:45:00Z   -" in out
    assert "Failure Policy:  StopOnFailure\n" in out
    history = groupviews.history_table(groupviews.all_runs([group]), False)
    assert history.splitlines()[2].split() == [
        "nightly.1", "schedule", "2026-11-22T09:00:00Z", "2026-11-22T09:02:00Z", "2m",
        "Failed", "0/2", "succeeded"]


@pytest.mark.parametrize("phase", sorted(FINISHED_RUN_PHASES))
def test_cli_retry_and_operator_retry_agree_on_every_finished_phase(phase: RunPhase) -> None:
    """`kubectl ferry retry` refuses exactly what the operator would refuse."""
    status = ExportJobStatus(last_run=HistoryEntry(
        id="contacts.1", number=1, trigger="schedule", phase=phase, batches_planned=1,
        started_at=NOW - dt.timedelta(minutes=5), failed_batches=[0]))
    try:
        retry_target(job(status=status), "contacts", None)
        cli_accepts = True
    except CliError:
        cli_accepts = False
    decision = reconcile(observation(spec().build(), NOW, status=status,
                                     annotations={ANNOTATION_RETRY_REQUESTED_AT: "r1"}))
    operator_accepts = decision.status.current_run is not None
    assert cli_accepts == operator_accepts == (
        phase not in {RunPhase.SUCCEEDED, RunPhase.SUCCEEDED_WITH_ERRORS})


def test_describe_shows_the_rate_beside_the_eta() -> None:
    status = running_status("contacts")
    assert status.current_run is not None
    status.current_run.records_per_second = 1250
    out = jobviews.describe_job(job(status=status), NOW)
    assert "  ETA:         12m at 1250 rows/s\n" in out


def test_a_finished_runs_batches_come_from_its_run_marker() -> None:
    entry = HistoryEntry(
        id="contacts.1", number=1, trigger="manual", phase=RunPhase.CANCELED,
        batches_planned=3, canceled_batches=[1, 2], records=100, files=1,
        run_marker="s3://exports/ferry/contacts/contacts.1/_run.json", complete=False,
        message="stopped by request (ferry.dev/stop-requested-at)")
    marker = {"batches": [{"batch": 0, "records": 100, "files": 1,
                           "startedAt": "2026-11-22T11:00:00Z",
                           "finishedAt": "2026-11-22T11:01:00Z"}],
              "missingBatches": [1, 2]}
    out = jobviews.finished_run_section(entry, marker, "")
    assert "Run Marker:  s3://exports/ferry/contacts/contacts.1/_run.json (incomplete)\n" in out
    assert out.endswith(
        "Batches:\n"
        "  BATCH   STATUS      STARTED                FINISHED               RECORDS   FILES\n"
        "  0       Succeeded   2026-11-22T11:00:00Z   2026-11-22T11:01:00Z   100/100   1\n"
        "  1       Canceled    -                      -                      -         -\n"
        "  2       Canceled    -                      -                      -         -\n")
    unsealed = jobviews.finished_run_section(entry, None, "no marker yet")
    assert unsealed.endswith("Batches:\n  <no marker yet>\n")


def test_list_and_describe_show_an_importjob_as_an_import() -> None:
    raw = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ImportJob",
           "metadata": {"name": "lists", "namespace": "team-a"},
           "spec": {**import_spec().set("mode", "Merge").set("keyColumns", ["id"]).doc},
           "status": {"phase": "Succeeded"}}
    imported = parse_import(raw)

    row = jobviews.list_table([imported], NOW, False).splitlines()[1]
    assert row.split()[:3] == ["lists", "Import", "Partner"]
    page = jobviews.describe_job(imported, NOW)
    assert "Source:       s3://landing/partner/lists; csv\n" in page
    assert ("Destination:  postgres table crm.lists (Secret crm-db, key dsn), Merge on id\n"
            in page)
    assert job_ref("importjob/lists") == ("importjobs", "lists") == job_ref("ij/lists")
    assert job_ref("lists") == ("exportjobs", "lists")
    with pytest.raises(CliError, match='"cronjob/x" is not a job: use NAME'):
        job_ref("cronjob/x")
