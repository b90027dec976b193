"""The seal's pure parts: what counts as a committed batch, the run marker, and the
termination message that must stay under Kubernetes' limit for any batch count."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from ferry.contract.limits import TERMINATION_MESSAGE_BYTES as TERMINATION_LIMIT
from ferry.worker.main import build_parser, seal_command
from ferry.worker.plan import parse_plan
from ferry.worker.seal import Committed, committed, run_marker, sealed_message

PLAN: dict[str, Any] = {
    "job": "orders", "jobUid": "uid-1", "run": "orders.2", "source": {"table": "orders"},
    "destination": {"bucket": "exports", "prefix": "team-a"}, "batchCount": 3,
    "seal": {"runId": "orders.5", "outcome": "Canceled"},
}
MANIFEST = {"batch": 1, "records": 10, "bytes": 200, "files": [{"key": "a"}, {"key": "b"}],
            "startedAt": "2026-01-01T00:00:00.000Z", "finishedAt": "2026-01-01T00:01:00.000Z"}


def batch(i: int, records: int = 10) -> Committed:
    return Committed(i, f"team-a/orders/orders.2/_manifests/batch-{i}.json", records, 1,
                     records * 20, "2026-01-01T00:00:00.000Z", "2026-01-01T00:01:00.000Z")


def test_committed_reads_a_manifest_and_refuses_what_is_not_one() -> None:
    entry = committed(1, "k", MANIFEST)
    assert entry == Committed(1, "k", 10, 2, 200, MANIFEST["startedAt"], MANIFEST["finishedAt"])
    assert committed(1, "k", {**MANIFEST, "startedAt": None}) is not None
    for bad in (None, [], {**MANIFEST, "records": "10"}, {**MANIFEST, "bytes": -1},
                {**MANIFEST, "records": True}, {k: v for k, v in MANIFEST.items() if k != "files"}):
        assert committed(1, "k", bad) is None


def test_run_marker_sums_the_committed_batches_and_names_the_missing() -> None:
    plan = parse_plan(PLAN, {}, sealing=True)
    marker = run_marker(plan, [batch(2, 5), batch(0, 7)], "2026-01-02T00:00:00.000Z")
    assert marker == {
        "version": 1, "job": "orders", "jobUid": "uid-1", "run": "orders.2",
        "runId": "orders.5", "outcome": "Canceled", "complete": False, "batchCount": 3,
        "batches": [batch(0, 7).to_json(), batch(2, 5).to_json()],
        "missingBatches": [1], "records": 12, "files": 2, "bytes": 240,
        "sealedAt": "2026-01-02T00:00:00.000Z",
    }
    whole = run_marker(plan, [batch(i) for i in range(3)], "t")
    assert whole["complete"] and whole["missingBatches"] == []
    no_uid = run_marker(parse_plan({**PLAN, "jobUid": None}, {}, sealing=True), [], "t")
    assert "jobUid" not in no_uid and no_uid["missingBatches"] == [0, 1, 2]


def test_message_carries_the_batches_when_they_fit() -> None:
    plan = parse_plan(PLAN, {}, sealing=True)
    text = sealed_message(run_marker(plan, [batch(0), batch(2)], "t"), "m/_run.json")
    assert "\n" not in text
    assert json.loads(text) == {
        "status": "Sealed", "complete": False, "records": 20, "files": 2, "bytes": 400,
        "marker": "m/_run.json", "missing": [1],
        "batches": [[0, 10, 1, 200, "2026-01-01T00:00:00.000Z", "2026-01-01T00:01:00.000Z"],
                    [2, 10, 1, 200, "2026-01-01T00:00:00.000Z", "2026-01-01T00:01:00.000Z"]],
    }


def test_message_drops_the_batches_table_when_it_does_not_fit() -> None:
    plan = parse_plan({**PLAN, "batchCount": 1000}, {}, sealing=True)
    marker = run_marker(plan, [batch(i, 10**9) for i in range(999)], "t")
    text = sealed_message(marker, "m/_run.json")
    message = json.loads(text)
    assert len(text.encode()) <= TERMINATION_LIMIT
    assert "batches" not in message and message["batchesOmitted"] == 999
    assert message["missing"] == [999] and "missingOmitted" not in message
    assert message["records"] == 999 * 10**9


def test_message_shortens_a_missing_list_too_long_to_fit() -> None:
    """A 1000-batch run canceled early: nearly every index is missing."""
    plan = parse_plan({**PLAN, "batchCount": 1000}, {}, sealing=True)
    key = "p" * 512 + "/orders/orders.2/_run.json"
    text = sealed_message(run_marker(plan, [batch(0)], "t"), key)
    message = json.loads(text)
    assert len(text.encode()) <= TERMINATION_LIMIT
    assert message["batchesOmitted"] == 1 and message["marker"] == key
    kept = message["missing"]
    assert kept == list(range(1, len(kept) + 1)) and len(kept) + message["missingOmitted"] == 999


def test_seal_subcommand_and_its_config_errors(tmp_path: Path) -> None:
    """No seal object: exit 3, a failure message naming the field (batch -1: the seal
    has no batch); no FERRY_SOURCE_DSN is asked for."""
    args = build_parser().parse_args(["seal"])
    assert args.run is seal_command
    term = tmp_path / "term"
    plan = {k: v for k, v in PLAN.items() if k != "seal"}
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = seal_command(args, {"FERRY_PLAN": json.dumps(plan),
                                   "FERRY_TERMINATION_MESSAGE_PATH": str(term)})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 3
    message = json.loads(term.read_text())
    assert message["status"] == "Failed" and message["batch"] == -1
    assert message["reason"].startswith("plan.seal: is required")


@pytest.mark.parametrize("command", ["export", "seal"])
def test_both_commands_take_a_plan_file(command: str) -> None:
    assert build_parser().parse_args([command, "--plan-file", "p.json"]).plan_file == "p.json"
