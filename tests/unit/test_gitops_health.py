"""The Argo CD health checks in docs/gitops/, executed the way Argo CD executes them.

Argo CD (util/lua/lua.go) runs a custom health script in a fresh gopher-lua (Lua 5.1)
state opened with only the base, table and package libraries and a reduced os library,
converts the live object to nested Lua tables in a global ``obj``, runs the script, and
JSON-encodes the table it returns into ``{status, message}``; a status outside
Healthy / Progressing / Suspended / Degraded / Missing / Unknown becomes Unknown.
:func:`argo_health` does the same with lupa's Lua 5.1, with the string, math, io, debug
and coroutine libraries removed, so a script that calls ``string.format`` fails here as it
would in Argo CD.

The objects are real: specs validated by the pydantic models, statuses produced by the
ExportJob state machine (``ferry.reconcile.runs.reconcile``) from observed Jobs and pods,
dumped with ``to_k8s()`` exactly as the operator writes them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51  # type: ignore[import-untyped]

from ferry.api.common import Condition, ConditionStatus, ObjectMeta
from ferry.api.exportjob import ExportJob, ExportJobSpec
from ferry.api.jobgroup import (
    GroupHistoryEntry,
    GroupRunStatus,
    JobGroup,
    JobGroupSpec,
    JobGroupStatus,
    MemberPhase,
    MemberRun,
)
from ferry.api.status import ExportJobStatus, JobPhase, RunPhase
from ferry.constants import API_VERSION, EXPORTJOB_KIND, GROUP, JOBGROUP_KIND
from ferry.reconcile.conditions import set_condition
from ferry.reconcile.progress import JobObservation, PodObservation
from ferry.reconcile.runs import QueueView, reconcile

from .builders import T0, finished_job, observation, spec

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "docs" / "gitops"
EXPORTJOB_LUA = GITOPS / "argocd-health-exportjob.lua"
JOBGROUP_LUA = GITOPS / "argocd-health-jobgroup.lua"
ARGO_STATUSES = {"Healthy", "Progressing", "Suspended", "Degraded", "Missing", "Unknown"}
HOUR = dt.timedelta(hours=1)

# Argo CD's state: no string/math/io/debug/coroutine library, a reduced os, and nothing
# lupa adds. The string metatable goes too, so ("x"):sub(1) fails as in gopher-lua
# without the string library.
SANDBOX = """
debug.setmetatable("", nil)
local time, date = os.time, os.date
os = {time = time, date = date}
for _, lib in ipairs({"string", "math", "io", "debug", "coroutine", "python"}) do
  _G[lib] = nil
  package.loaded[lib] = nil
end
package.loaded.os = os
"""


# --- the harness -----------------------------------------------------------------------


def argo_health(script: Path, obj: dict[str, Any]) -> dict[str, str]:
    """Run a health script against ``obj`` as Argo CD does; return {status, message}."""
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    lua.execute(SANDBOX)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script.read_text())
    assert lua51.lua_type(result) == "table", "Argo CD requires the script to return a table"
    health = {str(k): v for k, v in result.items()}
    assert set(health) <= {"status", "message"}, health
    assert health["status"] in ARGO_STATUSES, health
    assert isinstance(health.get("message"), str) and health["message"], health
    return health


def exportjob(job_spec: ExportJobSpec, status: ExportJobStatus | None, *,
              generation: int = 1, name: str = "contacts") -> dict[str, Any]:
    meta = ObjectMeta(name=name, namespace="team-a", generation=generation, uid="uid-1",
                      creation_timestamp=T0 - dt.timedelta(minutes=1))
    return ExportJob(metadata=meta, spec=job_spec, status=status).to_k8s()


def health_of(job_spec: ExportJobSpec, status: ExportJobStatus | None,
              **kwargs: Any) -> dict[str, str]:
    return argo_health(EXPORTJOB_LUA, exportjob(job_spec, status, **kwargs))


def running_job(run_number: int, processed: int, total: int) -> JobObservation:
    """A Job with one pod exporting, reporting progress through its annotation."""
    pod = PodObservation(completion_index=0, phase="Running", created_at=T0 + HOUR,
                         started_at=T0 + HOUR,
                         progress={"batch": 0, "phase": "Running", "records": processed,
                                   "total": total, "bytes": 1000, "files": 1})
    return JobObservation(name=f"contacts-{run_number}", run_number=run_number, completions=1,
                          active=1, pods=[pod])


def hourly() -> ExportJobSpec:
    return spec().hourly().relative("1h").build()


def started(job_spec: ExportJobSpec) -> ExportJobStatus:
    """The status right after the 01:00 slot started run contacts.1."""
    status = reconcile(observation(job_spec, T0 + HOUR)).status
    assert status.current_run is not None and status.current_run.phase == RunPhase.IN_PROGRESS
    return status


def finished(job_spec: ExportJobSpec, failed: set[int] | None = None,
             batches: int = 1) -> ExportJobStatus:
    status = started(job_spec)
    return reconcile(observation(job_spec, T0 + HOUR + dt.timedelta(minutes=5), status=status,
                                 jobs=[finished_job(1, batches, failed=failed)])).status


def condition(status: ExportJobStatus | JobGroupStatus, type_: str) -> Condition:
    return next(c for c in status.conditions or [] if c.type == type_)


# --- ExportJob ------------------------------------------------------------------------


def test_a_freshly_created_job_waits_for_the_operator() -> None:
    health = health_of(hourly(), None)
    assert health["status"] == "Progressing"
    assert health["message"].startswith("Waiting for the operator")


def test_a_status_without_observed_generation_still_waits_for_the_operator() -> None:
    health = argo_health(EXPORTJOB_LUA, {**exportjob(hourly(), None), "status": {}})
    assert health["status"] == "Progressing"
    assert health["message"].startswith("Waiting for the operator")


def test_an_edit_the_operator_has_not_seen_is_progressing() -> None:
    job = hourly()
    status = reconcile(observation(job, T0 + dt.timedelta(minutes=10))).status
    assert status.observed_generation == 1

    health = health_of(job, status, generation=2)

    assert health == {
        "status": "Progressing",
        "message": "Waiting for the operator to observe generation 2 "
                   "(status is for generation 1)",
    }


def test_a_scheduled_job_that_has_not_run_yet_is_healthy() -> None:
    job = spec().hourly(every=4, minute=15).relative("4h").build()
    status = reconcile(observation(job, T0 + dt.timedelta(minutes=10))).status
    assert status.phase == JobPhase.SCHEDULED

    health = health_of(job, status)

    assert health["status"] == "Healthy"
    assert health["message"] == (
        "Scheduled, no run yet (every 4h at :15 UTC); next run at 2026-11-22T00:15:00Z")


def test_an_on_demand_job_that_never_ran_is_healthy() -> None:
    job = spec().build()
    status = reconcile(observation(job, T0)).status
    assert status.phase == JobPhase.DRAFTED

    assert health_of(job, status) == {"status": "Healthy",
                                      "message": "Drafted: never run (on demand)"}


def test_ready_false_is_degraded_with_the_conditions_reason_and_message() -> None:
    job = spec().set("schedule", {"cron": {"expression": "0 0 30 2 *"}}).build()
    status = reconcile(observation(job, T0)).status
    ready = condition(status, "Ready")
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "InvalidSchedule")

    health = health_of(job, status)

    assert health == {"status": "Degraded", "message": f"InvalidSchedule: {ready.message}"}


def test_an_invalid_time_zone_is_degraded() -> None:
    job = spec().set("schedule", {"daily": {"at": "02:00"}, "timeZone": "Mars/Olympus_Mons"})
    status = reconcile(observation(job.build(), T0)).status

    health = health_of(job.build(), status)

    assert health["status"] == "Degraded"
    assert health["message"].startswith("InvalidTimeZone: ")


def test_ready_unknown_is_progressing() -> None:
    job = hourly()
    status = reconcile(observation(job, T0)).status
    status.conditions = [c.model_copy(update={"status": ConditionStatus.UNKNOWN,
                                              "reason": "Checking", "message": "checking"})
                         if c.type == "Ready" else c for c in status.conditions or []]

    assert health_of(job, status) == {"status": "Progressing", "message": "Checking: checking"}


def test_stalled_true_is_degraded() -> None:
    job = hourly()
    status = reconcile(observation(job, T0)).status
    status.conditions = set_condition(status.conditions, "Stalled", True, "SourceUnreachable",
                                      "cannot reach the database", T0, 1)

    assert health_of(job, status) == {"status": "Degraded",
                                      "message": "SourceUnreachable: cannot reach the database"}


def test_a_run_in_progress_is_healthy_with_its_progress_and_eta() -> None:
    job = hourly()
    status = started(job)
    status = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=10), status=status,
                                   jobs=[running_job(1, 450_000, 1_000_000)])).status
    assert status.progress is not None and status.eta is not None

    health = health_of(job, status)

    assert health == {"status": "Healthy",
                      "message": f"Run contacts.1 is InProgress, {status.progress}, "
                                 f"ETA {status.eta}"}
    assert "45%" in health["message"]


def test_a_run_queued_behind_another_job_on_the_same_source_is_healthy() -> None:
    job = spec().build()
    status = reconcile(observation(job, T0, annotations={"ferry.dev/run-requested-at": "t1"},
                                   queue=QueueView(holder="orders.7"))).status
    assert status.phase == JobPhase.QUEUED

    health = health_of(job, status)

    assert health == {"status": "Healthy", "message": "Run contacts.1 is Queued: waiting for "
                                                      "run orders.7 on the same data source"}


def test_a_failed_run_is_degraded_with_its_message_and_what_to_do() -> None:
    job = hourly()
    status = finished(job, failed={0})
    assert status.last_run is not None and status.last_run.phase == RunPhase.FAILED

    health = health_of(job, status)

    assert health["status"] == "Degraded"
    assert health["message"] == (
        f"Last run contacts.1 Failed: {status.last_run.message} "
        "(error report: kubectl ferry errors contacts; "
        "re-run the failed batches: kubectl ferry retry contacts)")
    assert 'relation "x" does not exist' in health["message"]


def test_a_partially_succeeded_run_is_degraded() -> None:
    job = spec().hourly().relative("1h").batches(3).build()
    status = finished(job, failed={1}, batches=3)
    assert status.phase == JobPhase.PARTIALLY_SUCCEEDED

    health = health_of(job, status)

    assert health["status"] == "Degraded"
    assert health["message"].startswith("Last run contacts.1 PartiallySucceeded: 1 of 3 batches "
                                        "failed: batch 1: ")


def test_a_succeeded_run_is_healthy() -> None:
    job = hourly()
    status = finished(job)

    health = health_of(job, status)

    assert health == {"status": "Healthy",
                      "message": "Last run contacts.1 Succeeded: 1 of 1 batches succeeded; "
                                 "next run at 2026-11-22T02:00:00Z"}


def test_a_retry_that_repairs_a_failed_run_makes_the_job_healthy_again() -> None:
    job = hourly()
    failed = finished(job, failed={0})
    retrying = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=6), status=failed,
                                     annotations={"ferry.dev/retry-requested-at": "t1"})).status
    assert retrying.current_run is not None and retrying.current_run.trigger == "retry"
    assert health_of(job, retrying)["status"] == "Healthy"

    repaired = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=9), status=retrying,
                                     jobs=[finished_job(2, 1)])).status

    assert health_of(job, repaired)["status"] == "Healthy"


def test_a_stopped_run_is_not_a_failure() -> None:
    job = hourly()
    status = started(job)
    stopped = reconcile(observation(job, T0 + HOUR + dt.timedelta(minutes=2), status=status,
                                    annotations={"ferry.dev/stop-requested-at": "t1"})).status
    assert stopped.phase == JobPhase.CANCELED

    health = health_of(job, stopped)

    assert health["status"] == "Healthy"
    assert health["message"].startswith("Last run contacts.1 Canceled: stopped by request")


def test_a_suspended_job_is_suspended() -> None:
    job = spec().hourly().relative("1h").set("suspend", True).build()
    status = reconcile(observation(job, T0 + 3 * HOUR)).status
    assert status.phase == JobPhase.SUSPENDED

    health = health_of(job, status)

    assert health == {"status": "Suspended",
                      "message": "spec.suspend is true: no new scheduled runs"}


def test_suspended_after_a_failure_says_so() -> None:
    job = hourly()
    status = finished(job, failed={0})
    suspended_spec = spec().hourly().relative("1h").set("suspend", True).build()
    status = reconcile(observation(suspended_spec, T0 + 2 * HOUR, status=status)).status

    health = health_of(suspended_spec, status)

    assert health == {"status": "Suspended",
                      "message": "spec.suspend is true: no new scheduled runs; "
                                 "last run contacts.1 Failed"}


def test_a_run_that_continues_after_suspend_is_healthy() -> None:
    job = hourly()
    status = started(job)
    suspended_spec = spec().hourly().relative("1h").set("suspend", True).build()
    status = reconcile(observation(suspended_spec, T0 + HOUR + dt.timedelta(minutes=1),
                                   status=status, jobs=[running_job(1, 10, 100)])).status
    assert status.phase == JobPhase.IN_PROGRESS

    assert health_of(suspended_spec, status)["status"] == "Healthy"


def test_a_finished_one_time_job_is_healthy_not_suspended() -> None:
    job = spec().once().build()
    status = reconcile(observation(job, T0)).status
    status = reconcile(observation(job, T0 + dt.timedelta(minutes=5), status=status,
                                   jobs=[finished_job(1, 1)])).status
    suspended = condition(status, "Suspended")
    assert (suspended.status, suspended.reason) == (ConditionStatus.TRUE, "OneTimeStarted")

    health = health_of(job, status)

    assert health["status"] == "Healthy"
    assert health["message"].startswith("Last run contacts.1 Succeeded")


def test_a_failed_one_time_job_is_degraded() -> None:
    job = spec().once().build()
    status = reconcile(observation(job, T0)).status
    status = reconcile(observation(job, T0 + dt.timedelta(minutes=5), status=status,
                                   jobs=[finished_job(1, 1, failed={0})])).status

    assert health_of(job, status)["status"] == "Degraded"


def test_deletion_waiting_for_a_run_is_progressing_with_the_way_out() -> None:
    job = hourly()
    status = started(job)
    obs = dataclasses.replace(observation(job, T0 + HOUR + dt.timedelta(minutes=1),
                                          status=status, jobs=[running_job(1, 10, 100)]),
                              deleting=True)
    status = reconcile(obs).status
    obj = exportjob(job, status)
    obj["metadata"]["deletionTimestamp"] = "2026-11-22T01:01:00Z"

    health = argo_health(EXPORTJOB_LUA, obj)

    assert health == {"status": "Progressing",
                      "message": "Being deleted: deletion waits for run contacts.1 to end; "
                                 "to delete now, stop it: kubectl ferry stop contacts"}


# --- JobGroup -------------------------------------------------------------------------


def group_spec(**extra: Any) -> JobGroupSpec:
    return JobGroupSpec.model_validate(
        {"title": "Catalogue refresh", "members": ["products-full", "customers-snapshot"],
         **extra})


def group_status(phase: JobPhase, *, ready: tuple[bool, str, str] = (True, "Valid", "ok"),
                 suspended: bool = False, **fields: Any) -> JobGroupStatus:
    conditions = set_condition(None, "Ready", ready[0], ready[1], ready[2], T0, 1)
    conditions = set_condition(conditions, "Running", "current_run" in fields,
                               "InProgress" if "current_run" in fields else "Idle", "", T0, 1)
    conditions = set_condition(
        conditions, "Suspended", suspended, "SpecSuspend" if suspended else "Active",
        "spec.suspend is true: no new scheduled group runs" if suspended
        else "scheduled group runs are enabled", T0, 1)
    return JobGroupStatus(observed_generation=1, phase=phase, conditions=conditions,
                          schedule_summary="on demand", **fields)


def group(job_spec: JobGroupSpec, status: JobGroupStatus | None,
          generation: int = 1) -> dict[str, Any]:
    meta = ObjectMeta(name="catalogue-refresh", namespace="team-a", generation=generation)
    return JobGroup(metadata=meta, spec=job_spec, status=status).to_k8s()


def group_health(job_spec: JobGroupSpec, status: JobGroupStatus | None,
                 generation: int = 1) -> dict[str, str]:
    return argo_health(JOBGROUP_LUA, group(job_spec, status, generation))


def members(first: MemberPhase, second: MemberPhase,
            message: str | None = None) -> list[MemberRun]:
    return [MemberRun(name="products-full", run_id="products-full.3", phase=first),
            MemberRun(name="customers-snapshot", phase=second, message=message)]


def test_a_fresh_group_waits_for_the_operator() -> None:
    health = group_health(group_spec(), None)
    assert health["status"] == "Progressing"
    assert health["message"].startswith("Waiting for the operator")


def test_a_group_edit_not_yet_observed_is_progressing() -> None:
    health = group_health(group_spec(), group_status(JobPhase.DRAFTED), generation=3)
    assert health["status"] == "Progressing"
    assert "generation 3" in health["message"]


def test_a_missing_member_is_degraded() -> None:
    status = group_status(JobPhase.DRAFTED, ready=(False, "MemberNotFound",
                                                   'member "customers-snapshot" not found'))
    assert group_health(group_spec(), status) == {
        "status": "Degraded", "message": 'MemberNotFound: member "customers-snapshot" not found'}


def test_an_active_group_run_is_healthy_and_names_the_member() -> None:
    run = GroupRunStatus(
        id="catalogue-refresh.4", number=4, trigger="manual", phase=RunPhase.IN_PROGRESS,
        started_at=T0, member_index=1,
        members=members(MemberPhase.SUCCEEDED, MemberPhase.IN_PROGRESS),
        message='member 2/2 "customers-snapshot" is InProgress')
    status = group_status(JobPhase.IN_PROGRESS, current_run=run, current="2/2")

    assert group_health(group_spec(), status) == {
        "status": "Healthy",
        "message": 'Group run catalogue-refresh.4 is InProgress: member 2/2 '
                   '"customers-snapshot" is InProgress'}


def test_a_failed_group_run_is_degraded_with_its_message() -> None:
    last = GroupHistoryEntry(
        id="catalogue-refresh.4", number=4, trigger="schedule", phase=RunPhase.FAILED,
        started_at=T0, finished_at=T0 + HOUR,
        members=members(MemberPhase.FAILED, MemberPhase.SKIPPED),
        message='stopped at member "products-full": 0 of 2 members succeeded')
    status = group_status(JobPhase.FAILED, last_run=last, history=[last])

    health = group_health(group_spec(), status)

    assert health["status"] == "Degraded"
    assert health["message"].startswith(
        'Last group run catalogue-refresh.4 Failed: stopped at member "products-full"')
    assert "kubectl ferry group retry catalogue-refresh" in health["message"]


def test_a_succeeded_group_run_is_healthy() -> None:
    last = GroupHistoryEntry(
        id="catalogue-refresh.5", number=5, trigger="manual", phase=RunPhase.SUCCEEDED,
        members=members(MemberPhase.SUCCEEDED, MemberPhase.SUCCEEDED),
        message="2 of 2 members succeeded")
    status = group_status(JobPhase.SUCCEEDED, last_run=last)

    assert group_health(group_spec(), status) == {
        "status": "Healthy",
        "message": "Last group run catalogue-refresh.5 Succeeded: 2 of 2 members succeeded"}


def test_a_suspended_group_is_suspended() -> None:
    status = group_status(JobPhase.SUSPENDED, suspended=True)
    assert group_health(group_spec(suspend=True), status) == {
        "status": "Suspended", "message": "spec.suspend is true: no new scheduled group runs"}


def test_a_group_that_never_ran_is_healthy() -> None:
    assert group_health(group_spec(), group_status(JobPhase.DRAFTED)) == {
        "status": "Healthy", "message": "Drafted: never run (on demand)"}


# --- the harness is as strict as Argo CD ------------------------------------------------


def test_the_sandbox_has_no_string_library_like_argo_cd(tmp_path: Path) -> None:
    script = tmp_path / "uses_string.lua"
    for body in ('return {status = string.format("%s", "Healthy")}',
                 'return {status = ("Healthy"):sub(1)}',
                 'return {status = require("string").upper("healthy")}'):
        script.write_text(body)
        with pytest.raises(lua51.LuaError):
            argo_health(script, {"metadata": {"name": "x"}})


def test_both_scripts_are_lua_5_1_without_goto_or_integer_division() -> None:
    for script in (EXPORTJOB_LUA, JOBGROUP_LUA):
        source = script.read_text()
        lua = lua51.LuaRuntime(register_eval=False, register_builtins=False)
        assert lua.eval("_VERSION") == "Lua 5.1"
        lua.execute(f"assert(loadstring({lua_quote(source)}))")
        code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())
        for construct in ("goto ", "//", "::", "string.", "math.", ":sub(", ":find("):
            assert construct not in code, (script.name, construct)


def lua_quote(text: str) -> str:
    """A Lua long-bracket literal that cannot be closed by ``text``."""
    level = 0
    while "]" + "=" * level + "]" in text:
        level += 1
    return "[" + "=" * level + "[" + text + "]" + "=" * level + "]"


# --- the shipped configuration matches the scripts ------------------------------------


def test_argocd_cm_installs_both_scripts_verbatim_under_argos_keys() -> None:
    configmap = yaml.safe_load((GITOPS / "argocd-cm.yaml").read_text())
    assert (configmap["kind"], configmap["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert configmap["data"] == {
        f"resource.customizations.health.{GROUP}_{EXPORTJOB_KIND}": EXPORTJOB_LUA.read_text(),
        f"resource.customizations.health.{GROUP}_{JOBGROUP_KIND}": JOBGROUP_LUA.read_text(),
    }


def test_flux_example_points_the_kustomization_at_its_source_and_checks_ferry_kinds() -> None:
    documents = list(yaml.safe_load_all((GITOPS / "flux-kustomization.yaml").read_text()))
    by_kind = {d["kind"]: d for d in documents}
    source, kustomization = by_kind["GitRepository"], by_kind["Kustomization"]
    assert source["apiVersion"] == "source.toolkit.fluxcd.io/v1"
    assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    ref = kustomization["spec"]["sourceRef"]
    assert (ref["kind"], ref["name"]) == ("GitRepository", source["metadata"]["name"])
    assert kustomization["spec"]["prune"] is True
    checked = {(e["apiVersion"], e["kind"]) for e in kustomization["spec"]["healthCheckExprs"]}
    assert checked == {(API_VERSION, EXPORTJOB_KIND), (API_VERSION, JOBGROUP_KIND)}
    for expression in kustomization["spec"]["healthCheckExprs"]:
        assert {"current", "failed", "inProgress"} <= set(expression)
