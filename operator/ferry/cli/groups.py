"""JobGroup verbs: group list, describe, run, stop, retry, history.

Same conventions as the ExportJob verbs: requests are the ferry.dev/*-requested-at
annotations on the JobGroup, checked against its status first.
"""

from __future__ import annotations

import argparse
from typing import Any

from ferry.api.jobgroup import JobGroup, JobGroupStatus
from ferry.api.status import RETRYABLE_RUN_PHASES
from ferry.cli import render
from ferry.cli.context import Context
from ferry.cli.errors import CliError
from ferry.cli.groupviews import (
    all_runs,
    describe_group,
    group_runs,
    history_dicts,
    history_table,
    list_table,
)
from ferry.cli.jobs import request
from ferry.cli.model import parse_group
from ferry.constants import (
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
    JOBGROUP_PLURAL,
)

REF = "jobgroup.ferry.dev"


def get_group(ctx: Context, name: str) -> tuple[dict[str, Any], JobGroup]:
    """The raw object (for -o) and its parsed model."""
    raw = ctx.kube.get(JOBGROUP_PLURAL, name)
    return raw, parse_group(raw)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    """Groups with phase, current member, last and next run."""
    raws = ctx.kube.objects(JOBGROUP_PLURAL)
    if args.output:
        ctx.out.write(render.dump(render.item_list(raws), args.output))
    elif not raws:
        where = "any namespace" if ctx.kube.all_namespaces else f'namespace "{ctx.kube.namespace}"'
        ctx.err.write(f"No jobgroups found in {where}.\n")
    else:
        groups = [parse_group(r) for r in raws]
        ctx.out.write(list_table(groups, ctx.now, ctx.kube.all_namespaces))
    return 0


def cmd_describe(ctx: Context, args: argparse.Namespace) -> int:
    """Members, failure policy, current run with each member's run, history."""
    raw, group = get_group(ctx, args.group)
    ctx.out.write(render.dump(raw, args.output) if args.output else describe_group(group, ctx.now))
    return 0


def cmd_history(ctx: Context, args: argparse.Namespace) -> int:
    """Group runs of one group, or of every group in scope."""
    if args.group:
        groups = [get_group(ctx, args.group)[1]]
    else:
        groups = [parse_group(r) for r in ctx.kube.objects(JOBGROUP_PLURAL)]
    runs = all_runs(groups)
    if args.output:
        ctx.out.write(render.dump(history_dicts(runs), args.output))
    elif not runs:
        ctx.err.write("No group runs found.\n")
    else:
        ctx.out.write(history_table(runs, ctx.kube.all_namespaces and not args.group))
    return 0


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    """Run the members now, one after another."""
    _, group = get_group(ctx, args.group)
    current = (group.status or JobGroupStatus()).current_run
    if current is not None:
        raise CliError(f"group run {current.id} is {current.phase.value}: wait for it to end "
                       f"or stop it (kubectl ferry group stop {args.group})")
    stamp = request(ctx, JOBGROUP_PLURAL, args.group, ANNOTATION_RUN_REQUESTED_AT)
    ctx.out.write(f"{REF}/{args.group} run requested ({ANNOTATION_RUN_REQUESTED_AT}={stamp})\n")
    return 0


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    """Cancel the group run: the running member is stopped, later ones are Canceled."""
    _, group = get_group(ctx, args.group)
    current = (group.status or JobGroupStatus()).current_run
    if current is None:
        raise CliError(f'jobgroup "{args.group}" has no run in progress: nothing to stop')
    stamp = request(ctx, JOBGROUP_PLURAL, args.group, ANNOTATION_STOP_REQUESTED_AT)
    ctx.out.write(f"{REF}/{args.group} stop of group run {current.id} requested "
                  f"({ANNOTATION_STOP_REQUESTED_AT}={stamp})\n")
    return 0


def cmd_retry(ctx: Context, args: argparse.Namespace) -> int:
    """Re-run the latest group run from the members that did not succeed."""
    _, group = get_group(ctx, args.group)
    status = group.status or JobGroupStatus()
    if status.current_run is not None:
        raise CliError(f"group run {status.current_run.id} is "
                       f"{status.current_run.phase.value}: retry after it ends")
    runs = group_runs(status)
    if not runs:
        raise CliError(f'jobgroup "{args.group}" has not run yet: nothing to retry')
    if runs[0].phase not in RETRYABLE_RUN_PHASES:
        raise CliError(f"group run {runs[0].id} {runs[0].phase.value}: nothing to retry")
    stamp = request(ctx, JOBGROUP_PLURAL, args.group, ANNOTATION_RETRY_REQUESTED_AT)
    ctx.out.write(f"{REF}/{args.group} retry of group run {runs[0].id} requested "
                  f"({ANNOTATION_RETRY_REQUESTED_AT}={stamp})\n")
    return 0
