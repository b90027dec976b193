"""The plan's jobUid: validated, and what tells an earlier ExportJob's batches apart."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.worker.leftovers import earlier_job
from ferry.worker.plan import ConfigError, parse_plan

BASE: dict[str, Any] = {"job": "items", "run": "items.1", "source": {"table": "items"},
                        "destination": {"bucket": "b-1"}}


def test_job_uid_is_optional_and_kept() -> None:
    assert parse_plan(BASE, {}).job_uid is None
    uid = "0f6c1d2e-8a7b-4c3d-9e0f-123456789abc"
    assert parse_plan({**BASE, "jobUid": uid}, {}).job_uid == uid


@pytest.mark.parametrize("uid", ["../x", "a b", "x" * 129, 7])
def test_a_malformed_job_uid_is_refused_naming_the_field(uid: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_plan({**BASE, "jobUid": uid}, {})
    assert str(raised.value).startswith("plan.jobUid: ")


def test_earlier_job_is_any_other_uid_or_none_but_only_when_the_plan_has_one() -> None:
    plan = parse_plan({**BASE, "jobUid": "new"}, {})
    assert not earlier_job(plan, {"jobUid": "new"})
    assert earlier_job(plan, {"jobUid": "old"})
    assert earlier_job(plan, {})  # written before uids were recorded
    assert not earlier_job(parse_plan(BASE, {}), {"jobUid": "old"})
