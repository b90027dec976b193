"""The ImportJob models: defaults, wire names, and every rule with the message the CRD's
CEL rule gives (tests/e2e/test_api_validation.py checks the same messages against a
real API server)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ferry.api import (
    ExportJobStatus,
    Format,
    ImportJob,
    ImportJobSpec,
    ImportJobStatus,
    ImportMode,
    MissingColumns,
    RunPhase,
    UnknownColumns,
)
from ferry.api.destination import MSG_FROM_UNIQUE
from ferry.api.importjob import (
    MSG_CSV_NEEDS_CSV,
    MSG_CSV_QUOTE_IS_DELIMITER,
    MSG_KEYS_MAPPED,
    MSG_KEYS_NEED_MERGE,
    MSG_MAX_ERRORS,
    MSG_MERGE_NEEDS_KEYS,
    MSG_NEW_FILES_OVERWRITE,
    MSG_OVERWRITE_ONE_BATCH,
)
from ferry.api.importsource import MSG_GLOB_RELATIVE, MSG_IMPORT_SOURCE_ONE_OF, MSG_RUN_OF_EXPORT
from ferry.api.output import MSG_BUCKET_DOTS
from ferry.api.source import MSG_TABLE_PART_TOO_LONG
from ferry.api.status import FINISHED_RUN_PHASES, RETRYABLE_RUN_PHASES, JobPhase

S3 = {"s3": {"bucket": "landing", "prefix": "partner/lists/"}}
DESTINATION = {
    "type": "postgres",
    "connectionSecretRef": {"name": "crm-db", "key": "uri"},
    "table": "public.contacts",
}


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "Partner list load",
        "source": S3,
        "format": "csv",
        "destination": DESTINATION,
    }
    return base | changes


def destination(**changes: Any) -> dict[str, Any]:
    return DESTINATION | changes


def rejects(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ImportJobSpec.model_validate(data)
    assert message in str(info.value)


def test_defaults() -> None:
    parsed = ImportJobSpec.model_validate(spec())
    assert parsed.mode == ImportMode.APPEND
    assert parsed.key_columns is None
    assert parsed.new_files_only is False
    assert parsed.max_errors == 0
    assert parsed.errors is None
    assert parsed.suspend is False
    assert parsed.history_limit == 20
    assert parsed.destination.unknown_columns == UnknownColumns.REFUSE
    assert parsed.destination.missing_columns == MissingColumns.REFUSE
    assert parsed.csv is None
    options = parsed.csv_options
    assert options is not None
    assert (options.header, options.delimiter, options.quote, options.null_string) == (
        True, ",", '"', "")
    assert ImportJobSpec.model_validate(spec(format="parquet")).csv_options is None


def test_wire_names() -> None:
    parsed = ImportJobSpec.model_validate(spec(
        source={"fromExport": {"name": "contact-history", "run": "contact-history.42"}},
        format="parquet",
        destination=destination(columns=[{"name": "id", "from": "ID"}, {"name": "email"}],
                                unknownColumns="Ignore", missingColumns="Default"),
        mode="Merge", keyColumns=["id"], newFilesOnly=True, maxErrors="2%",
        errors={"s3": {"bucket": "audit", "prefix": "imports"}},
        batching={"batches": 3, "retriesPerBatch": 1},
    ))
    assert parsed.source.from_export is not None
    assert parsed.source.from_export.run == "contact-history.42"
    assert parsed.destination.columns is not None
    assert [c.source_name for c in parsed.destination.columns] == ["ID", "email"]
    dumped = parsed.to_k8s()
    assert dumped["source"] == {"fromExport": {"name": "contact-history",
                                               "run": "contact-history.42"}}
    assert dumped["destination"]["columns"] == [{"name": "id", "from": "ID"}, {"name": "email"}]
    assert dumped["keyColumns"] == ["id"]
    assert dumped["newFilesOnly"] is True
    assert dumped["maxErrors"] == "2%"
    assert dumped["batching"] == {"batches": 3, "parallelism": 1, "retriesPerBatch": 1}
    assert ImportJobSpec.model_validate(dumped) == parsed


def test_s3_source_shares_the_export_bucket_fields() -> None:
    parsed = ImportJobSpec.model_validate(spec(source={"s3": {
        "bucket": "landing", "glob": "*.csv.gz", "endpoint": "https://minio.example:9000",
        "region": "eu-central-1", "forcePathStyle": True,
        "credentialsSecretRef": {"name": "landing-bucket"}}}))
    s3 = parsed.source.s3
    assert s3 is not None
    assert s3.glob == "*.csv.gz"
    assert s3.credentials_secret_ref is not None
    assert s3.credentials_secret_ref.access_key_id_key == "AWS_ACCESS_KEY_ID"
    rejects(spec(source={"s3": {"bucket": "team..landing"}}), MSG_BUCKET_DOTS)


@pytest.mark.parametrize(("value", "rows", "allowed"), [
    (0, 1000, 0), (25, 10, 25), ("2%", 1000, 20), ("0.5%", 999, 4), ("100%", 7, 7),
    ("0%", 10**9, 0), ("2.5%", 3, 0),
])
def test_errors_allowed(value: int | str, rows: int, allowed: int) -> None:
    assert ImportJobSpec.model_validate(spec(maxErrors=value)).errors_allowed(rows) == allowed


@pytest.mark.parametrize("value", [-1, "101%", "2", "%", "2 %", "1e2%", "-1%", "100.5%",
                                   "2.5555%"])
def test_max_errors_is_a_count_or_a_percentage(value: int | str) -> None:
    rejects(spec(maxErrors=value), MSG_MAX_ERRORS)


@pytest.mark.parametrize(("changes", "message"), [
    ({"source": {}}, MSG_IMPORT_SOURCE_ONE_OF),
    ({"source": {**S3, "fromExport": {"name": "contact-history"}}}, MSG_IMPORT_SOURCE_ONE_OF),
    ({"source": {"s3": {"bucket": "landing", "glob": "/partner/*.csv"}}}, MSG_GLOB_RELATIVE),
    ({"source": {"fromExport": {"name": "contact-history", "run": "orders.3"}}},
     MSG_RUN_OF_EXPORT),
    ({"source": {"fromExport": {"name": "contact", "run": "contact-history.3"}}},
     MSG_RUN_OF_EXPORT),
    ({"format": "parquet", "csv": {"header": False}}, MSG_CSV_NEEDS_CSV),
    ({"csv": {"delimiter": "'", "quote": "'"}}, MSG_CSV_QUOTE_IS_DELIMITER),
    ({"csv": {"delimiter": '"'}}, MSG_CSV_QUOTE_IS_DELIMITER),
    ({"mode": "Merge"}, MSG_MERGE_NEEDS_KEYS),
    ({"keyColumns": ["id"]}, MSG_KEYS_NEED_MERGE),
    ({"mode": "Overwrite", "keyColumns": ["id"]}, MSG_KEYS_NEED_MERGE),
    ({"mode": "Merge", "keyColumns": ["id", "region"],
      "destination": destination(columns=[{"name": "id"}, {"name": "email"}])},
     MSG_KEYS_MAPPED),
    ({"mode": "Overwrite", "batching": {"batches": 2}}, MSG_OVERWRITE_ONE_BATCH),
    ({"mode": "Overwrite", "newFilesOnly": True}, MSG_NEW_FILES_OVERWRITE),
    ({"destination": destination(table="s." + "t" * 64)}, MSG_TABLE_PART_TOO_LONG),
    ({"destination": destination(columns=[{"name": "id"}, {"name": "id", "from": "ID"}])},
     "duplicate column 'id'"),
    ({"mode": "Merge", "keyColumns": ["id", "id"]}, "duplicate column 'id'"),
    ({"destination": destination(columns=[{"name": "id", "from": "ID"},
                                          {"name": "code", "from": "ID"}])}, MSG_FROM_UNIQUE),
    ({"destination": destination(columns=[{"name": "id"}, {"name": "code", "from": "id"}])},
     MSG_FROM_UNIQUE),
])
def test_invalid_import_job_specs(changes: dict[str, Any], message: str) -> None:
    rejects(spec(**changes), message)


@pytest.mark.parametrize(("changes", "field"), [
    ({"format": None}, "format"),
    ({"format": "xml"}, "format"),
    ({"mode": "Upsert"}, "mode"),
    ({"destination": destination(table="contacts; DROP TABLE x")}, "destination.table"),
    ({"destination": destination(columns=[{"name": "e-mail"}])}, "destination.columns.0.name"),
    ({"destination": destination(columns=[])}, "destination.columns"),
    ({"destination": destination(unknownColumns="Keep")}, "destination.unknownColumns"),
    ({"destination": destination(missingColumns="Null")}, "destination.missingColumns"),
    ({"destination": destination(connectionSecretRef={"name": "crm-db"})},
     "destination.connectionSecretRef.key"),
    ({"mode": "Merge", "keyColumns": []}, "keyColumns"),
    ({"mode": "Merge", "keyColumns": [f"k{i}" for i in range(33)]}, "keyColumns"),
    ({"csv": {"delimiter": ",,"}}, "csv.delimiter"),
    ({"csv": {"delimiter": "\n"}}, "csv.delimiter"),
    ({"csv": {"quote": "é"}}, "csv.quote"),
    ({"csv": {"delimiter": "\\"}}, "csv.delimiter"),
    ({"csv": {"nullString": "a\nb"}}, "csv.nullString"),
    ({"source": {"s3": {"bucket": "landing", "glob": "*\t.csv"}}}, "source.s3.glob"),
    ({"source": {"fromExport": {"name": "Contact_History"}}}, "source.fromExport.name"),
    ({"source": {"fromExport": {"name": "c", "run": "c"}}}, "source.fromExport.run"),
    ({"source": {"s3": {"bucket": "landing", "glob": ""}}}, "source.s3.glob"),
    ({"errors": {"s3": {"bucket": "audit", "prefix": "/abs"}}}, "errors.s3.prefix"),
    ({"errors": {}}, "errors.s3"),
    ({"batching": {"batches": 1001}}, "batching.batches"),
    ({"batching": {"parallelism": 0}}, "batching.parallelism"),
    ({"batching": {"retriesPerBatch": 11}}, "batching.retriesPerBatch"),
    ({"historyLimit": 0}, "historyLimit"),
    ({"title": ""}, "title"),
])
def test_schema_rules_name_the_field(changes: dict[str, Any], field: str) -> None:
    data = spec(**changes)
    if data.get("format") is None:
        del data["format"]
    with pytest.raises(ValidationError) as info:
        ImportJobSpec.model_validate(data)
    locations = {".".join(str(p) for p in error["loc"]) for error in info.value.errors()}
    assert any(loc == field or loc.startswith(f"{field}.") for loc in locations), locations


@pytest.mark.parametrize("changes", [
    {"mode": "Merge", "keyColumns": ["id"]},
    {"mode": "Merge", "keyColumns": ["id"], "destination": destination(columns=[{"name": "id"}])},
    {"mode": "Overwrite", "batching": {"batches": 1}},
    {"mode": "Overwrite", "newFilesOnly": False},
    {"mode": "Merge", "keyColumns": ["id"], "newFilesOnly": True},
    {"csv": {"delimiter": "\t", "quote": "'", "nullString": "\\N"}},
    {"source": {"fromExport": {"name": "contact-history", "run": "contact-history.42"}}},
    {"source": {"s3": {"bucket": "landing", "glob": "2024-*/part-?.csv"}}},
    {"maxErrors": "0.25%"},
    {"maxErrors": "99.999%"},
    {"csv": {"delimiter": "|", "quote": "["}},
    {"destination": destination(columns=[{"name": "id", "from": "1"}, {"name": "code"}])},
])
def test_valid_variants(changes: dict[str, Any]) -> None:
    ImportJobSpec.model_validate(spec(**changes))


def test_import_job_object_and_status() -> None:
    job = ImportJob.model_validate({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "ImportJob",
        "metadata": {"name": "partner-lists"}, "spec": spec(schedule={"once": {}}),
        "status": {
            "phase": "SucceededWithErrors",
            "currentRun": {"id": "partner-lists.2", "number": 2, "trigger": "manual",
                           "phase": "InProgress", "recordsRejected": 3,
                           "batchStatuses": [{"index": 0, "phase": "InProgress",
                                              "recordsRejected": 3}]},
            "lastRun": {"id": "partner-lists.1", "number": 1, "trigger": "schedule",
                        "phase": "SucceededWithErrors", "records": 998, "recordsRejected": 2,
                        "auditLog": "s3://landing/partner-lists/partner-lists.1/_errors/"},
        },
    })
    assert job.spec.is_one_time
    assert isinstance(job.status, ImportJobStatus)
    assert isinstance(job.status, ExportJobStatus)  # the loop and the CLI treat both alike
    assert job.status.phase == JobPhase.SUCCEEDED_WITH_ERRORS
    assert job.status.last_run is not None
    assert job.status.last_run.records_rejected == 2
    assert job.to_k8s()["status"]["lastRun"]["auditLog"].endswith("/_errors/")


def test_succeeded_with_errors_is_finished_and_not_retryable() -> None:
    """Every file committed: a retry would reject the same rows again."""
    assert RunPhase.SUCCEEDED_WITH_ERRORS in FINISHED_RUN_PHASES
    assert RunPhase.SUCCEEDED_WITH_ERRORS not in RETRYABLE_RUN_PHASES
    assert JobPhase(RunPhase.SUCCEEDED_WITH_ERRORS.value) == JobPhase.SUCCEEDED_WITH_ERRORS


def test_format_is_the_export_format() -> None:
    """An export's output.format names an import's format: one enum."""
    assert ImportJobSpec.model_fields["format"].annotation is Format
