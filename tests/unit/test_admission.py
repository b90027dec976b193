"""Admission decisions (ferry.reconcile.admission) and what the reconciler makes of them."""

from __future__ import annotations

import argparse
import copy
import datetime as dt
from typing import Any

import kopf
import pytest

from ferry.api.status import ExportJobStatus, RunPhase
from ferry.constants import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_REQUESTED_BY,
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
)
from ferry.controller.admission import NoWebhookServer
from ferry.controller.main import main as operator_main
from ferry.controller.main import webhook_server
from ferry.reconcile import admission
from ferry.reconcile.admission import (
    Refusal,
    check_exportjob,
    check_exportjob_delete,
    check_jobgroup,
    record_users,
)
from ferry.reconcile.runs import reconcile

from .builders import T0, finished_job, observation, spec

ALICE = {"username": "alice", "groups": ["system:authenticated"]}
BOB = {"username": "bob"}


def exportjob(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "ferry.dev/v1alpha1", "kind": "ExportJob",
        "metadata": {"name": "contacts", "namespace": "team-a"},
        "spec": copy.deepcopy(spec().hourly().doc),
    }
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return body


def with_annotations(body: dict[str, Any], **annotations: str) -> dict[str, Any]:
    copied = copy.deepcopy(body)
    copied["metadata"].setdefault("annotations", {}).update(annotations)
    return copied


def jobgroup(schedule: dict[str, Any] | None = None, members: list[str] | None = None
             ) -> dict[str, Any]:
    group_spec: dict[str, Any] = {"title": "nightly", "members": members or ["a", "b"]}
    if schedule is not None:
        group_spec["schedule"] = schedule
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup",
            "metadata": {"name": "nightly", "namespace": "team-a"}, "spec": group_spec}


# --- CREATE / UPDATE validation ---------------------------------------------------------


def test_a_valid_exportjob_is_admitted() -> None:
    assert check_exportjob("CREATE", exportjob(), None) is None


def test_a_bad_cron_expression_is_refused_naming_the_field() -> None:
    body = exportjob(spec__schedule={"cron": {"expression": "61 * * * *"}})
    refusal = check_exportjob("CREATE", body, None)
    assert refusal == Refusal(
        "spec.schedule.cron.expression '61 * * * *' is not a valid five-field cron "
        'expression ("minute hour day-of-month month day-of-week", e.g. "15 */4 * * 1-5")',
        422)


def test_a_cron_expression_that_never_fires_is_refused() -> None:
    body = exportjob(spec__schedule={"cron": {"expression": "0 0 30 2 *"}})
    refusal = check_exportjob("CREATE", body, None)
    assert refusal is not None
    assert refusal.message.startswith("spec.schedule.cron.expression '0 0 30 2 *' never fires")


def test_an_unknown_time_zone_is_refused_naming_the_field() -> None:
    body = exportjob(spec__schedule={"daily": {"at": "02:30"}, "timeZone": "Mars/Olympus"})
    refusal = check_exportjob("CREATE", body, None)
    assert refusal is not None
    assert refusal.message == (
        "spec.schedule.timeZone 'Mars/Olympus' is not an IANA time zone "
        "(use e.g. UTC, Europe/Berlin, America/New_York)")


def test_the_first_model_error_names_its_yaml_field() -> None:
    body = exportjob(spec__schedule={"hourly": {"every": 24}})
    assert check_exportjob("CREATE", body, None) == Refusal(
        "spec.schedule.hourly.every: Input should be less than or equal to 23", 422)
    both = exportjob(spec__source__query="select 1")
    assert check_exportjob("CREATE", both, None) == Refusal(
        "spec.source: set exactly one of table or query", 422)


def test_a_missing_spec_is_refused() -> None:
    body = exportjob()
    del body["spec"]
    refusal = check_exportjob("CREATE", body, None)
    assert refusal is not None
    assert refusal.message.startswith("spec.title: Field required")


def test_an_update_is_checked_only_when_the_spec_changes() -> None:
    bad = exportjob(spec__schedule={"cron": {"expression": "bad"}})
    annotated = with_annotations(bad, **{ANNOTATION_STOP_REQUESTED_AT: "1"})
    # Stored before the rule (or while the webhook was off): still stoppable and deletable.
    assert check_exportjob("UPDATE", annotated, bad) is None
    changed = copy.deepcopy(bad)
    changed["spec"]["title"] = "renamed"
    assert check_exportjob("UPDATE", changed, bad) is not None
    fixed = exportjob()
    assert check_exportjob("UPDATE", fixed, bad) is None


def test_an_object_being_deleted_is_never_held_up() -> None:
    bad = exportjob(spec__schedule={"cron": {"expression": "bad"}})
    releasing = copy.deepcopy(bad)
    releasing["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    releasing["spec"]["title"] = "x"
    assert check_exportjob("UPDATE", releasing, bad) is None


def test_other_operations_are_not_validated() -> None:
    bad = exportjob(spec__schedule={"cron": {"expression": "bad"}})
    assert check_exportjob("DELETE", None, bad) is None
    assert check_exportjob("CONNECT", bad, bad) is None


def test_jobgroups_get_the_same_checks() -> None:
    assert check_jobgroup("CREATE", jobgroup(), None) is None
    assert check_jobgroup("CREATE", jobgroup({"weekly": {"day": "Monday", "at": "06:00"},
                                              "timeZone": "Europe/Berlin"}), None) is None
    zone = check_jobgroup("CREATE", jobgroup({"daily": {"at": "01:00"},
                                              "timeZone": "Nowhere/Land"}), None)
    assert zone is not None
    assert zone.message.startswith("spec.schedule.timeZone 'Nowhere/Land'")
    cron = check_jobgroup("CREATE", jobgroup({"cron": {"expression": "0 25 * * *"}}), None)
    assert cron is not None
    assert cron.message.startswith("spec.schedule.cron.expression '0 25 * * *' is not a valid")
    shape = check_jobgroup("CREATE", jobgroup({"cron": {"expression": "* * *"}}), None)
    assert shape is not None
    assert shape.message.startswith("spec.schedule.cron.expression: String should match")
    no_members = check_jobgroup("CREATE", jobgroup(members=[]) | {"spec": {"title": "t"}}, None)
    assert no_members == Refusal("spec.members: Field required", 422)


# --- DELETE guard -----------------------------------------------------------------------


def stored(phase: str | None) -> dict[str, Any]:
    body = exportjob()
    if phase is not None:
        body["status"] = {"currentRun": {"id": "contacts.3", "number": 3, "phase": phase,
                                         "trigger": "schedule"}}
    return body


def test_deleting_while_a_run_is_in_progress_is_refused_with_what_to_do() -> None:
    assert check_exportjob_delete("DELETE", stored("InProgress")) == Refusal(
        'exportjob "contacts" has run contacts.3 in progress: stop it first with '
        '"kubectl ferry stop contacts -n team-a" (or annotate ferry.dev/stop-requested-at), '
        "then delete", 409)


@pytest.mark.parametrize("phase", [None, "Queued", "Succeeded", "Failed"])
def test_deleting_an_idle_or_queued_job_is_allowed(phase: str | None) -> None:
    assert check_exportjob_delete("DELETE", stored(phase)) is None


def test_the_delete_guard_ignores_other_operations() -> None:
    assert check_exportjob_delete("UPDATE", stored("InProgress")) is None
    assert check_exportjob_delete("DELETE", None) is None


# --- who ----------------------------------------------------------------------------------


def test_create_records_the_creator_whatever_the_manifest_says() -> None:
    forged = with_annotations(exportjob(), **{ANNOTATION_CREATED_BY: "mallory",
                                              ANNOTATION_REQUESTED_BY: "mallory"})
    assert record_users("CREATE", forged, None, ALICE) == {
        ANNOTATION_CREATED_BY: "alice", ANNOTATION_REQUESTED_BY: None}
    assert record_users("CREATE", exportjob(), None, ALICE) == {ANNOTATION_CREATED_BY: "alice"}


def test_create_with_a_run_request_records_the_requester() -> None:
    body = with_annotations(exportjob(), **{ANNOTATION_RUN_REQUESTED_AT: "1"})
    assert record_users("CREATE", body, None, ALICE) == {
        ANNOTATION_CREATED_BY: "alice", ANNOTATION_REQUESTED_BY: "alice"}


@pytest.mark.parametrize("request_key", [ANNOTATION_RUN_REQUESTED_AT,
                                         ANNOTATION_RETRY_REQUESTED_AT])
def test_a_new_request_records_who_asked(request_key: str) -> None:
    old = with_annotations(exportjob(), **{ANNOTATION_CREATED_BY: "alice",
                                           ANNOTATION_REQUESTED_BY: "alice",
                                           request_key: "1"})
    new = with_annotations(old, **{request_key: "2"})
    assert record_users("UPDATE", new, old, BOB) == {ANNOTATION_REQUESTED_BY: "bob"}
    same = with_annotations(old, **{request_key: "1"})  # the same value twice: no request
    assert record_users("UPDATE", same, old, BOB) == {}


def test_a_stop_request_does_not_change_the_requester() -> None:
    old = with_annotations(exportjob(), **{ANNOTATION_REQUESTED_BY: "alice"})
    new = with_annotations(old, **{ANNOTATION_STOP_REQUESTED_AT: "9"})
    assert record_users("UPDATE", new, old, BOB) == {}


def test_updates_cannot_forge_or_drop_the_recorded_users() -> None:
    old = with_annotations(exportjob(), **{ANNOTATION_CREATED_BY: "alice",
                                           ANNOTATION_REQUESTED_BY: "alice"})
    forged = with_annotations(old, **{ANNOTATION_CREATED_BY: "bob",
                                      ANNOTATION_REQUESTED_BY: "bob"})
    assert record_users("UPDATE", forged, old, BOB) == {
        ANNOTATION_CREATED_BY: "alice", ANNOTATION_REQUESTED_BY: "alice"}
    # A GitOps apply of the manifest from Git (no such annotations) keeps them.
    applied = exportjob()
    assert record_users("UPDATE", applied, old, {"username": "argocd"}) == {
        ANNOTATION_CREATED_BY: "alice", ANNOTATION_REQUESTED_BY: "alice"}


def test_objects_created_without_the_webhook_stay_unattributed() -> None:
    old = exportjob()
    forged = with_annotations(old, **{ANNOTATION_CREATED_BY: "bob"})
    assert record_users("UPDATE", forged, old, BOB) == {ANNOTATION_CREATED_BY: None}
    assert record_users("UPDATE", old, old, BOB) == {}


def test_long_user_names_fit_the_status_field() -> None:
    long_name = "system:serviceaccount:" + "x" * 400
    changes = record_users("CREATE", exportjob(), None, {"username": long_name})
    assert changes[ANNOTATION_CREATED_BY] == long_name[:admission.MAX_USER_LENGTH]
    assert record_users("DELETE", None, exportjob(), ALICE) == {}


def test_the_reconciler_copies_the_recorded_users_into_status() -> None:
    job = spec().hourly().batches(3).relative("1h").build()
    hour = dt.timedelta(hours=1)
    created = reconcile(observation(job, T0, annotations={ANNOTATION_CREATED_BY: "alice"}))
    assert created.status.created_by == "alice"
    later = reconcile(observation(job, T0, status=created.status,
                                  annotations={ANNOTATION_CREATED_BY: "mallory"}))
    assert later.status.created_by == "alice"  # the first recorded value stays

    manual = reconcile(observation(job, T0, annotations={ANNOTATION_RUN_REQUESTED_AT: "1",
                                                         ANNOTATION_REQUESTED_BY: "bob"}))
    assert manual.status.current_run is not None
    assert manual.status.current_run.started_by == "bob"

    running = reconcile(observation(job, T0 + hour)).status
    assert running.current_run is not None and running.current_run.started_by is None
    finished = reconcile(observation(job, T0 + hour, status=running,
                                     jobs=[finished_job(1, 3, failed={1})])).status
    assert finished.last_run is not None
    assert finished.last_run.phase == RunPhase.PARTIALLY_SUCCEEDED
    retry = reconcile(observation(
        job, T0 + hour, status=finished, jobs=[finished_job(1, 3, failed={1})],
        annotations={ANNOTATION_RETRY_REQUESTED_AT: "t1", ANNOTATION_REQUESTED_BY: "carol"}))
    assert retry.status.current_run is not None
    assert (retry.status.current_run.trigger, retry.status.current_run.started_by) == (
        "retry", "carol")


def test_webhook_ids_are_unique_and_path_safe() -> None:
    assert len(set(admission.WEBHOOK_IDS)) == len(admission.WEBHOOK_IDS)
    assert all(i.replace("-", "").isalpha() for i in admission.WEBHOOK_IDS)
    assert ExportJobStatus().created_by is None


# --- ferry-operator flags -----------------------------------------------------------------


def test_webhook_flags_need_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--webhook-port=9443"], ["--webhook-port=9443", "--webhook-cert=c"],
                 ["--webhook-cert=c", "--webhook-key=k"]):
        with pytest.raises(SystemExit) as exited:
            operator_main(argv)
        assert exited.value.code == 2
    assert "--webhook-port needs --webhook-cert and --webhook-key" in capsys.readouterr().err


def test_webhook_server_from_flags() -> None:
    options = argparse.Namespace(webhook_port=9443, webhook_host="127.0.0.1",
                                 webhook_cert="/tls/tls.crt", webhook_key="/tls/tls.key")
    server = webhook_server(options)
    assert isinstance(server, kopf.WebhookServer)
    assert (server.addr, server.port, server.certfile, server.pkeyfile) == (
        "127.0.0.1", 9443, "/tls/tls.crt", "/tls/tls.key")
    assert isinstance(webhook_server(argparse.Namespace(webhook_port=None)), NoWebhookServer)
