"""What the `group` verbs print for JobGroups (pure functions)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ferry.api.jobgroup import (
    GroupHistoryEntry,
    GroupRunStatus,
    JobGroup,
    JobGroupStatus,
    MemberPhase,
    MemberRun,
)
from ferry.cli import render
from ferry.cli.jobviews import RECENT_RUNS
from ferry.cli.model import name_of
from ferry.reconcile.schedule.describe import describe as describe_schedule


def group_runs(status: JobGroupStatus | None) -> list[GroupHistoryEntry]:
    """history (newest first), plus lastRun when history was trimmed past it."""
    if status is None:
        return []
    runs = list(status.history or [])
    if status.last_run is not None and all(h.id != status.last_run.id for h in runs):
        runs.insert(0, status.last_run)
    return runs


def members_done(members: list[MemberRun] | None) -> str:
    """``2/3 succeeded``."""
    if not members:
        return render.NONE
    ok = sum(m.phase == MemberPhase.SUCCEEDED for m in members)
    return f"{ok}/{len(members)} succeeded"


def current_cell(group: JobGroup) -> str:
    """``2/3 contacts``: which member the current group run is at."""
    status = group.status or JobGroupStatus()
    run = status.current_run
    if run is None:
        return render.NONE
    if run.member_index is not None and run.member_index < len(group.spec.members):
        position = status.current or f"{run.member_index + 1}/{len(group.spec.members)}"
        return f"{position} {group.spec.members[run.member_index]}"
    return status.current or run.phase.value


def list_table(groups: list[JobGroup], now: dt.datetime, all_namespaces: bool) -> str:
    """Groups at a glance: phase, position of the current run, last and next run."""
    headers = ["NAME", "TITLE", "MEMBERS", "PHASE", "CURRENT", "LAST RUN", "NEXT RUN"]
    rows = []
    for group in groups:
        status = group.status or JobGroupStatus()
        last = status.last_run
        row = [
            name_of(group), group.spec.title, str(len(group.spec.members)),
            status.phase.value if status.phase else render.NONE,
            current_cell(group),
            f"{last.phase.value} {render.relative(last.finished_at, now)}" if last else render.NONE,
            render.relative(status.next_run_at, now),
        ]
        rows.append([group.metadata.namespace or "", *row] if all_namespaces else row)
    return render.table(["NAMESPACE", *headers] if all_namespaces else headers, rows)


def member_rows(members: list[MemberRun]) -> list[list[str]]:
    """One row per member run, in group order."""
    return [
        [str(i + 1), m.name, m.run_id or render.NONE, m.phase.value,
         render.timestamp(m.started_at), render.timestamp(m.finished_at), render.text(m.message)]
        for i, m in enumerate(members)
    ]


MEMBER_HEADERS = ["#", "JOB", "RUN", "PHASE", "STARTED", "FINISHED", "MESSAGE"]


def current_run_section(run: GroupRunStatus, now: dt.datetime) -> str:
    """The group run in progress and each member's part in it."""
    pairs = [("ID", run.id), ("Trigger", run.trigger),
             ("Phase", run.phase.value + (f": {run.message}" if run.message else ""))]
    if run.started_by:
        pairs.append(("Started By", run.started_by))
    pairs.append(("Started", f"{render.timestamp(run.started_at)} "
                  f"({render.relative(run.started_at, now)})" if run.started_at else render.NONE))
    out = render.fields(pairs, indent="  ")
    if run.members:
        out += render.table(MEMBER_HEADERS, member_rows(run.members), indent="  ")
    return out


def history_table(
    runs: list[tuple[str, GroupHistoryEntry | GroupRunStatus]],
    all_namespaces: bool,
    indent: str = "",
) -> str:
    """RUN, TRIGGER, STARTED, FINISHED, DURATION, RESULT, MEMBERS (with the namespace)."""
    headers = ["RUN", "TRIGGER", "STARTED", "FINISHED", "DURATION", "RESULT", "MEMBERS"]
    rows = []
    for namespace, r in runs:
        done = r if isinstance(r, GroupHistoryEntry) else None
        cells = [r.id, r.trigger, render.timestamp(r.started_at),
                 render.timestamp(done.finished_at if done else None),
                 render.duration(done.duration_seconds if done else None), r.phase.value,
                 members_done(r.members)]
        rows.append([namespace, *cells] if all_namespaces else cells)
    return render.table(["NAMESPACE", *headers] if all_namespaces else headers, rows, indent)


def all_runs(groups: list[JobGroup]) -> list[tuple[str, GroupHistoryEntry | GroupRunStatus]]:
    """Every group's current and finished runs with their namespace, newest start first."""
    runs: list[tuple[str, GroupHistoryEntry | GroupRunStatus]] = []
    for group in groups:
        namespace = group.metadata.namespace or ""
        status = group.status or JobGroupStatus()
        if status.current_run is not None:
            runs.append((namespace, status.current_run))
        runs += [(namespace, r) for r in group_runs(status)]
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(runs, key=lambda nr: (nr[1].started_at or epoch, nr[1].id), reverse=True)


def describe_group(group: JobGroup, now: dt.datetime) -> str:
    """Everything about one group, in kubectl describe's shape."""
    spec, status = group.spec, group.status or JobGroupStatus()
    schedule = status.schedule_summary or (
        describe_schedule(spec.schedule) if spec.schedule else "on demand")
    pairs = [("Name", name_of(group)), ("Namespace", group.metadata.namespace or ""),
             ("Title", spec.title)]
    if spec.description:
        pairs.append(("Description", render.text(spec.description)))
    pairs += [
        ("Members", ", ".join(spec.members)),
        ("Failure Policy", spec.failure_policy.value),
        ("Schedule", schedule),
        ("Suspend", str(spec.suspend).lower()),
        ("Phase", status.phase.value if status.phase else render.NONE),
        ("Next Run", f"{render.timestamp(status.next_run_at)} "
         f"({render.relative(status.next_run_at, now)})" if status.next_run_at else render.NONE),
    ]
    out = render.fields(pairs)
    out += "Current Run:\n"
    out += current_run_section(status.current_run, now) if status.current_run else "  <none>\n"
    runs = group_runs(status)[:RECENT_RUNS]
    out += "Recent Runs:\n"
    namespace = group.metadata.namespace or ""
    out += history_table([(namespace, r) for r in runs], False, indent="  ") \
        if runs else "  <none>\n"
    out += "Conditions:\n"
    out += render.table(
        ["TYPE", "STATUS", "REASON", "MESSAGE"],
        [[c.type, c.status.value, c.reason, render.text(c.message)] for c in status.conditions],
        indent="  ",
    ) if status.conditions else "  <none>\n"
    return out


def history_dicts(
    runs: list[tuple[str, GroupHistoryEntry | GroupRunStatus]],
) -> list[dict[str, Any]]:
    """-o json|yaml of group history: the API's own shape plus the namespace."""
    return [{"namespace": namespace, **r.to_k8s()} for namespace, r in runs]
