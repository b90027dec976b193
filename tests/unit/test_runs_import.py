"""An ImportJob's runs, decided by the same state machine as an ExportJob's, with its rules."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ferry.api.common import ConditionType
from ferry.api.importjob import ImportJobSpec
from ferry.api.output import S3Bucket
from ferry.api.status import HistoryEntry, ImportJobStatus, RunPhase
from ferry.constants import ANNOTATION_RUN_REQUESTED_AT, LABEL_IMPORTJOB, LABEL_JOB
from ferry.contract.importplan import decode_import_plan
from ferry.reconcile.importrules import ExportView
from ferry.reconcile.progress import JobObservation, PodObservation
from ferry.reconcile.runs import reconcile
from tests.unit.builders import T0, import_observation, import_spec

NOW = T0 + dt.timedelta(hours=1)
RUN_NOW = {ANNOTATION_RUN_REQUESTED_AT: "now"}


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def plan_of(job: dict[str, Any]) -> dict[str, Any]:
    return json.loads(env_of(job)["FERRY_PLAN"])  # type: ignore[no-any-return]


def started(spec: ImportJobSpec) -> ImportJobStatus:
    """The status after a run-now request started run lists.1."""
    decision = reconcile(import_observation(spec, NOW, annotations=RUN_NOW))
    assert isinstance(decision.status, ImportJobStatus)
    return decision.status


def finished(records: list[int], rejected: list[int]) -> JobObservation:
    pods = [PodObservation(completion_index=i, phase="Succeeded", created_at=NOW,
                           summary={"status": "Imported", "batch": i, "records": n,
                                    "rejected": r, "bytes": 10 * n, "fileCount": 1})
            for i, (n, r) in enumerate(zip(records, rejected, strict=True))]
    return JobObservation(name="lists-import-1", run_number=1, completions=len(pods),
                          finished="Complete",
                          completed_indexes=frozenset(range(len(pods))), pods=pods)


def export_view(*runs: HistoryEntry) -> ExportView:
    return ExportView(name="contacts", namespace="team-a", found=True, runs=runs,
                      bucket=S3Bucket(bucket="exports", prefix="ferry",
                                      endpoint="http://minio:9000", force_path_style=True))


def succeeded(number: int, retry_of: str | None = None) -> HistoryEntry:
    return HistoryEntry(id=f"contacts.{number}", number=number, trigger="manual",
                        phase=RunPhase.SUCCEEDED, retry_of=retry_of)


def test_a_run_is_an_import_job_labelled_for_its_kind_with_the_destination_secret() -> None:
    decision = reconcile(import_observation(import_spec().build(), NOW, annotations=RUN_NOW))

    job = decision.create_job
    assert job is not None
    assert job["metadata"]["name"] == "lists-import-1", "never an ExportJob lists' lists-1"
    assert job["metadata"]["labels"] == {LABEL_IMPORTJOB: "lists", "ferry.dev/run": "1"}
    assert LABEL_JOB not in job["spec"]["template"]["metadata"]["labels"]
    assert job["metadata"]["ownerReferences"][0]["kind"] == "ImportJob"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["import"]
    env = env_of(job)
    assert env["FERRY_DESTINATION_DSN"] == {"secretKeyRef": {"name": "crm-db", "key": "dsn"}}
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "bucket", "key": "id"}}
    assert "FERRY_SOURCE_DSN" not in env
    plan = plan_of(job)
    assert plan["source"]["s3"] == {"bucket": "landing", "prefix": "partner/lists"}
    assert plan["destination"]["table"] == "crm.lists"
    assert plan["errors"] == {"bucket": "landing", "prefix": "partner/lists"}
    assert plan["batchIndexes"] == [0]
    run = decision.status.current_run
    assert run is not None and run.phase == RunPhase.IN_PROGRESS
    assert decision.status.concurrency_key == "crm-db/dsn/crm.lists"


def test_the_job_plan_decodes_with_the_workers_own_decoder() -> None:
    spec = import_spec().set("mode", "Merge").set("keyColumns", ["id"]).set(
        "maxErrors", "2.5%").set("batching", {"batches": 3}).build()
    job = reconcile(import_observation(spec, NOW, annotations=RUN_NOW)).create_job
    assert job is not None

    plan = decode_import_plan(plan_of(job), lambda: 2)

    assert (plan.batch_index, plan.batch_count, plan.mode) == (2, 3, "Merge")
    assert plan.key_columns == ("id",)
    assert str(plan.max_errors) == "2.5%"
    assert job["spec"]["completions"] == 3


def test_rows_rejected_under_max_errors_end_the_run_succeeded_with_errors() -> None:
    spec = import_spec().set("maxErrors", 2).set("batching", {"batches": 2}).build()
    decision = reconcile(import_observation(spec, NOW, started(spec),
                                            jobs=[finished([100, 50], [2, 0])]))

    last = decision.status.last_run
    assert last is not None
    assert last.phase == RunPhase.SUCCEEDED_WITH_ERRORS
    assert (last.records, last.records_rejected) == (150, 2)
    assert last.audit_log == "s3://landing/partner/lists/lists/lists.1/_rejects/"
    assert last.manifest is None and last.sealed is None, "imports have no manifest or seal"
    assert last.message == ("2 of 2 batches succeeded; 2 row(s) rejected under "
                            "spec.maxErrors, listed in the audit log")


def test_a_run_with_nothing_rejected_succeeds_without_an_audit_log() -> None:
    spec = import_spec().build()
    decision = reconcile(import_observation(spec, NOW, started(spec),
                                            jobs=[finished([100], [0])]))

    last = decision.status.last_run
    assert last is not None and last.phase == RunPhase.SUCCEEDED
    assert last.audit_log is None


def test_from_export_loads_the_exports_newest_succeeded_run_and_pins_it() -> None:
    view = export_view(succeeded(3), HistoryEntry(id="contacts.4", number=4, trigger="manual",
                                                  phase=RunPhase.FAILED), succeeded(2))
    spec = import_spec().from_export("contacts").build()
    decision = reconcile(import_observation(spec, NOW, annotations=RUN_NOW, inputs=view))

    run = decision.status.current_run
    assert run is not None and run.source_run == "contacts.3"
    assert decision.create_job is not None
    plan = plan_of(decision.create_job)
    assert plan["source"]["fromExport"] == {"bucket": "exports", "prefix": "ferry",
                                            "runFolder": "contacts/contacts.3"}
    assert plan["source"]["endpoint"] == "http://minio:9000"
    assert plan["errors"] == {"bucket": "exports", "prefix": "ferry"}
    assert "files of contacts.3" in next(e.message for e in decision.events
                                          if e.reason == "Started")


def test_from_export_reads_a_retried_runs_folder() -> None:
    spec = import_spec().from_export("contacts", run="contacts.5").build()
    view = export_view(succeeded(5, retry_of="contacts.4"))
    decision = reconcile(import_observation(spec, NOW, annotations=RUN_NOW, inputs=view))

    assert decision.create_job is not None
    assert plan_of(decision.create_job)["source"]["fromExport"]["runFolder"] == \
        "contacts/contacts.4"


def test_from_export_with_no_succeeded_run_fails_the_run_and_says_what_to_do() -> None:
    spec = import_spec().from_export("contacts").build()
    decision = reconcile(import_observation(spec, NOW, annotations=RUN_NOW,
                                            inputs=export_view()))

    assert decision.create_job is None
    last = decision.status.last_run
    assert last is not None and last.phase == RunPhase.FAILED
    assert last.message == (
        "spec.source.fromExport: ExportJob contacts has no Succeeded run yet: run it first "
        "(kubectl ferry run contacts --wait), or name a run in spec.source.fromExport.run")
    ready = next(c for c in decision.status.conditions or [] if c.type == ConditionType.READY)
    assert (ready.status, ready.reason) == ("False", "ConfigurationError")


def test_from_export_of_a_missing_export_names_it() -> None:
    spec = import_spec().from_export("contacts").build()
    decision = reconcile(import_observation(
        spec, NOW, annotations=RUN_NOW,
        inputs=ExportView(name="contacts", namespace="team-a")))

    last = decision.status.last_run
    assert last is not None and last.phase == RunPhase.FAILED
    assert last.message == ("spec.source.fromExport.name: ExportJob contacts not found in "
                            "namespace team-a: create it, or fix the name")


def test_from_export_of_an_export_without_an_s3_output_says_so() -> None:
    spec = import_spec().from_export("contacts").build()
    decision = reconcile(import_observation(
        spec, NOW, annotations=RUN_NOW,
        inputs=ExportView(name="contacts", namespace="team-a", found=True)))

    assert decision.create_job is None
    last = decision.status.last_run
    assert last is not None and last.phase == RunPhase.FAILED
    assert last.message == (
        "spec.source.fromExport.name: ExportJob contacts does not write to S3 (its "
        "spec.output.s3, or its spec, does not read): fromExport reads S3 run folders only")
