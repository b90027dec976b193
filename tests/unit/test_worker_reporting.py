"""Termination messages, redaction, S3 retry policy and progress publishing."""

from __future__ import annotations

import json
import time

import botocore.exceptions
import pytest

from ferry.contract.limits import TERMINATION_MESSAGE_BYTES as TERMINATION_LIMIT
from ferry.worker.errors import ConfigError, Redactor, TransientError, one_line
from ferry.worker.manifest import failure, summary
from ferry.worker.progress import Progress, Publisher, pod_patcher
from ferry.worker.upload import Retrier


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject")


def test_summary_stays_under_4k_with_many_files() -> None:
    files = [{"key": f"p/job/1/job-0-{i}-abcdef01.csv", "size": i, "sha256": "0" * 64}
             for i in range(500)]
    text = summary({"batch": 0, "records": 5, "bytes": 9, "files": files}, "p/m.json")
    assert len(text.encode()) <= TERMINATION_LIMIT < 4096
    doc = json.loads(text)
    assert doc["fileCount"] == 500
    assert doc["filesOmitted"] == 500 - len(doc["files"])
    assert "\n" not in text


def test_failure_is_one_line_and_short() -> None:
    text = failure(3, "config", 3, one_line("bad\nthing " * 2000))
    assert "\n" not in text and len(text.encode()) <= TERMINATION_LIMIT
    assert json.loads(text)["reason"].startswith("bad thing bad thing")


def test_redactor_removes_secrets_and_dsn_passwords() -> None:
    redact = Redactor(["s3cr3t-key"])
    redact.add("pg-pass")
    text = ("postgresql://u:pg-pass@h/db key=s3cr3t-key password=other "
            "postgresql://x:zzz@h2/db")
    assert redact(text) == ("postgresql://u:***@h/db key=*** password=*** "
                            "postgresql://x:***@h2/db")


def test_retrier_retries_5xx_then_succeeds() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise client_error("SlowDown", 503)
        return "ok"

    sleeps: list[float] = []
    assert Retrier(budget_s=60, sleep=sleeps.append)("PutObject", flaky) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2


def test_retrier_fatal_and_budget() -> None:
    def missing() -> None:
        raise client_error("NoSuchBucket", 404)

    with pytest.raises(ConfigError, match="S3 PutObject: NoSuchBucket"):
        Retrier(sleep=lambda s: None)("PutObject", missing)

    def down() -> None:
        raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://x")

    with pytest.raises(TransientError, match="S3 PutObject still failing after 0s"):
        Retrier(budget_s=0, sleep=lambda s: None)("PutObject", down)

    def other() -> None:
        raise client_error("PreconditionFailed", 412)

    with pytest.raises(botocore.exceptions.ClientError):
        Retrier(sleep=lambda s: None)("PutObject", other)


def test_publisher_rate_limits_and_publishes_final_state() -> None:
    sent: list[dict[str, object]] = []
    progress = Progress(batch=2)
    publisher = Publisher(progress, lambda v: sent.append(json.loads(v)), interval_s=0.05)
    publisher.start()
    progress.add(10, 100)
    time.sleep(0.3)
    unchanged = len(sent)
    time.sleep(0.2)
    assert len(sent) == unchanged == 1  # nothing new, nothing sent
    progress.add(5, 50)
    publisher.stop("Succeeded")
    assert sent[-1]["records"] == 15 and sent[-1]["phase"] == "Succeeded"
    assert sent[-1]["batch"] == 2 and "updatedAt" in sent[-1]


def test_publisher_survives_patch_failures() -> None:
    def broken(value: str) -> None:
        raise RuntimeError("api down")

    publisher = Publisher(Progress(0), broken, interval_s=0.01).start()
    time.sleep(0.05)
    publisher.stop("Failed")


def test_no_pod_name_no_patcher() -> None:
    assert pod_patcher({}) is None


def test_a_missing_bucket_is_named_with_what_to_do() -> None:
    """S3's own message does not say which bucket; the reason users read in Ready does."""
    def missing() -> None:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "NoSuchBucket", "Message": "The specified bucket does not exist",
                       "BucketName": "exports-2026"},
             "ResponseMetadata": {"HTTPStatusCode": 404}}, "ListMultipartUploads")

    with pytest.raises(ConfigError) as raised:
        Retrier(sleep=lambda s: None)("ListMultipartUploads", missing)
    assert raised.value.reason == (
        'S3 ListMultipartUploads: NoSuchBucket: bucket "exports-2026" does not exist: '
        "create it, or set spec.output.s3.bucket to an existing bucket")
