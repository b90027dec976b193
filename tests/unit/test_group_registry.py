"""What the operator remembers of JobGroups between reconciles (controller.groupregistry)."""

from __future__ import annotations

from typing import Any

from ferry.controller.groupregistry import GroupRegistry
from ferry.reconcile.requests import GroupRequest


def group(members: list[str], version: str, current: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if current is not None:
        status["currentRun"] = {
            "id": "nightly.1", "number": 1, "trigger": "manual", "phase": "Queued",
            "memberIndex": 0, "startedAt": "2026-11-22T00:00:00Z",
            "members": [{"name": current, "phase": "Queued",
                         "requestedAt": "2026-11-22T00:00:00Z"}]}
    return {"metadata": {"resourceVersion": version}, "spec": {"members": members},
            "status": status}


def test_a_group_asks_its_current_member_and_an_older_write_never_rolls_back() -> None:
    registry = GroupRegistry()
    assert registry.observe("ns", "nightly", group(["a", "b"], "5", current="a")) == ["a"]
    assert [r.group_run for r in registry.requests_for("ns", "a")] == ["nightly.1"]
    assert registry.requests_for("ns", "b") == ()
    assert registry.requests_for("other", "a") == ()

    registry.observe("ns", "nightly", group(["a", "b"], "4"))
    assert isinstance(registry.requests_for("ns", "a")[0], GroupRequest)
    registry.observe("ns", "nightly", group(["a", "b"], "6"))
    assert registry.requests_for("ns", "a") == ()


def test_groups_are_woken_only_when_what_they_follow_changes() -> None:
    registry = GroupRegistry()
    registry.observe("ns", "nightly", group(["a"], "1"))
    assert registry.groups_of("ns", "a") == [("ns", "nightly")]
    job = {"metadata": {}, "spec": {}, "status": {"currentRun": {"id": "a.1",
                                                                 "phase": "InProgress"}}}
    assert registry.member_changed("ns", "a", job)
    job["status"]["progress"] = "45%"
    assert not registry.member_changed("ns", "a", job)
    assert registry.member_changed("ns", "a", None)


def test_later_members_are_told_they_wait_and_woken_when_they_no_longer_do() -> None:
    registry = GroupRegistry()
    doc = group(["a", "b", "c"], "1", current="a")
    doc["status"]["currentRun"]["members"] += [{"name": "b", "phase": "AwaitingDependency"},
                                               {"name": "c", "phase": "AwaitingDependency"}]
    assert registry.observe("ns", "nightly", doc) == ["a", "b", "c"]
    assert registry.requests_for("ns", "b") == (GroupRequest("nightly.1", waiting=True),)
    assert registry.observe("ns", "nightly", group(["a", "b", "c"], "2")) == ["a", "b", "c"], \
        "members that waited are woken when the group run ends, to stop showing it"
    assert registry.requests_for("ns", "b") == ()
