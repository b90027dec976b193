"""ExportJob and ImportJob verbs: list, describe, history, run, stop, retry, suspend,
resume, clone. A job is named as kubectl names it: ``NAME`` (an ExportJob),
``importjob/NAME`` or ``ij/NAME`` (`ferry.cli.model.job_ref`).

The imperative verbs never change what the operator decides: they set the Flux-style
``ferry.dev/*-requested-at`` annotations the operator reacts to, after checking the
status so that a request the operator would reject fails here with a clear message
instead of becoming a Warning event nobody reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from ferry.api.exportjob import ExportJob
from ferry.api.status import RETRYABLE_RUN_PHASES, ExportJobStatus, run_id
from ferry.api.units import parse_duration
from ferry.cli import render
from ferry.cli.context import Context
from ferry.cli.errors import EXIT_ERROR, EXIT_OK, CliError, UsageError
from ferry.cli.jobviews import (
    event_time,
    filter_rows,
    history_rows,
    history_table,
    list_table,
    next_step,
)
from ferry.cli.model import AnyJob, finished_runs, job_ref, parse_any
from ferry.cli.waiting import Ended, wait_state
from ferry.constants import (
    ANNOTATION_BACKFILL,
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
    EXPORTJOB_PLURAL,
    IMPORTJOB_PLURAL,
)

KIND_OF = {EXPORTJOB_PLURAL: "ExportJob", IMPORTJOB_PLURAL: "ImportJob"}
GITOPS_MARKERS = (
    "argocd.argoproj.io/",
    "kustomize.toolkit.fluxcd.io/",
    "helm.toolkit.fluxcd.io/",
)
"""Label/annotation prefixes Argo CD and Flux put on objects they manage."""
DROPPED_LABELS = (*GITOPS_MARKERS, "app.kubernetes.io/instance", "app.kubernetes.io/managed-by")
"""Labels a clone must not inherit: they would make a GitOps tool prune or adopt it."""
POLL_SECONDS = 1.0
"""How often --wait and -w read the object: the operator writes progress every few seconds."""


def display(ref: str) -> str:
    """``exportjob.ferry.dev/NAME`` or ``importjob.ferry.dev/NAME``, as kubectl prints it."""
    plural, name = job_ref(ref)
    return f"{KIND_OF[plural].lower()}.ferry.dev/{name}"


def get_job(ctx: Context, ref: str) -> tuple[dict[str, Any], AnyJob]:
    """The raw object (for -o) and its parsed model."""
    plural, name = job_ref(ref)
    raw = ctx.kube.get(plural, name)
    return raw, parse_any(plural, raw)


def get_export(ctx: Context, ref: str, verb: str) -> tuple[dict[str, Any], ExportJob]:
    """An ExportJob, for the verbs that read a run folder's files."""
    raw, job = get_job(ctx, ref)
    if not isinstance(job, ExportJob):
        raise CliError(f"{display(ref)} is an ImportJob: {verb} reads an ExportJob's run "
                       "folder; an import's rejected rows are in the audit log that "
                       f"`kubectl ferry describe {ref}` names")
    return raw, job


def all_jobs(ctx: Context) -> list[dict[str, Any]]:
    """Every ExportJob, then every ImportJob (none where that CRD is not installed)."""
    return [*ctx.kube.objects(EXPORTJOB_PLURAL), *ctx.kube.objects(IMPORTJOB_PLURAL,
                                                                   missing_ok=True)]


def parsed(raws: list[dict[str, Any]]) -> list[AnyJob]:
    return [parse_any(IMPORTJOB_PLURAL if r.get("kind") == "ImportJob" else EXPORTJOB_PLURAL, r)
            for r in raws]


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    """Jobs with phase, progress bar, ETA, last and next run."""
    raws = all_jobs(ctx)
    if args.output:
        ctx.out.write(render.dump(render.item_list(raws), args.output))
        return 0
    if not raws:
        where = "any namespace" if ctx.kube.all_namespaces else f'namespace "{ctx.kube.namespace}"'
        ctx.err.write(f"No exportjobs or importjobs found in {where}.\n")
        return 0
    jobs = parsed(raws)
    ctx.out.write(list_table(jobs, ctx.now, ctx.kube.all_namespaces))
    if getattr(args, "watch", False):
        watch_list(ctx, {version_key(r): r["metadata"]["resourceVersion"] for r in raws})
    return 0


def version_key(raw: dict[str, Any]) -> tuple[str, str]:
    return raw["metadata"].get("namespace", ""), raw["metadata"]["name"]


def watch_list(ctx: Context, seen: dict[tuple[str, str], str]) -> None:
    """-w: after the table, a row for each job that changes (as kubectl get -w), until
    interrupted. Rows come without the header, in the table's column order."""
    while True:
        time.sleep(POLL_SECONDS)
        raws = all_jobs(ctx)
        changed = [r for r in raws if seen.get(version_key(r)) != r["metadata"]["resourceVersion"]]
        seen = {version_key(r): r["metadata"]["resourceVersion"] for r in raws}
        if changed:
            rows = list_table(parsed(changed), utcnow(), ctx.kube.all_namespaces)
            ctx.out.write("".join(rows.splitlines(keepends=True)[1:]))
            ctx.out.flush()


def utcnow() -> dt.datetime:
    """The clock for rows printed after the command started (ctx.now is its start)."""
    return dt.datetime.now(dt.UTC)


def cmd_history(ctx: Context, args: argparse.Namespace) -> int:
    """Runs of one job, or of every job in scope (the seeds' History page)."""
    jobs = [get_job(ctx, args.job)[1]] if args.job else parsed(all_jobs(ctx))
    since = parse_since(args.since, ctx.now) if args.since else None
    rows = filter_rows(history_rows(jobs), args.phase, since)
    if args.output:
        ctx.out.write(render.dump([r.to_dict() for r in rows], args.output))
    elif not rows:
        ctx.err.write("No runs found.\n")
    else:
        ctx.out.write(history_table(rows, ctx.kube.all_namespaces and not args.job))
    return 0


def request(ctx: Context, plural: str, name: str, annotation: str) -> str:
    """Set one request annotation to a fresh timestamp; returns the value set."""
    stamp = ctx.request_stamp()
    ctx.kube.patch(plural, name, {"metadata": {"annotations": {annotation: stamp}}})
    return stamp


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    """Run now, outside the schedule (the schedule is unchanged)."""
    _, job = get_job(ctx, args.job)
    current = (job.status or ExportJobStatus()).current_run
    if current is not None:
        raise CliError(
            f"run {current.id} is {current.phase.value}: wait for it to end or stop it "
            f"(kubectl ferry stop {args.job})"
        )
    after = (job.status or ExportJobStatus()).run_counter or 0
    stamp = request(ctx, *job_ref(args.job), ANNOTATION_RUN_REQUESTED_AT)
    ctx.out.write(f"{display(args.job)} run requested ({ANNOTATION_RUN_REQUESTED_AT}={stamp})\n")
    if not (getattr(args, "wait", False) or getattr(args, "follow", False)):
        return 0
    timeout = parse_timeout(args.timeout) if getattr(args, "timeout", None) else None
    return wait_for_run(ctx, args.job, stamp, after, follow=args.follow, timeout=timeout)


def parse_timeout(value: str) -> float:
    """--timeout: a duration (30s, 10m, 2h)."""
    try:
        return parse_duration(value).total_seconds()
    except ValueError:
        raise UsageError(f'invalid --timeout "{value}": use a duration such as 30m or 2h'
                         ) from None


def rejection(ctx: Context, name: str, stamp: str) -> str | None:
    """The message of the RunRequestRejected event the operator posted for a request
    made at ``stamp`` (events are how it answers a request it will not run)."""
    since = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).replace(microsecond=0)
    plural, bare = job_ref(name)
    found = [e for e in ctx.kube.events(KIND_OF[plural], bare)
             if e.reason == "RunRequestRejected"
             and (event_time(e) or since) >= since]
    return found[-1].message if found else None


def wait_for_run(ctx: Context, name: str, stamp: str, after: int, *, follow: bool,
                 timeout: float | None) -> int:
    """Poll the job until the request's run ends: exit 0 if it Succeeded, else 1 with
    the run's message. --follow prints the progress line each time it changes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = ""
    while True:
        status = get_job(ctx, name)[1].status
        state = wait_state(status, stamp, after, None)
        if isinstance(state, Ended) and state.run is None:
            state = wait_state(status, stamp, after, rejection(ctx, name, stamp))
        if isinstance(state, Ended):
            if state.succeeded:
                ctx.out.write(state.line + "\n")
                return EXIT_OK
            hint = next_step(name, status) if state.run is not None else None
            ctx.err.write(f"error: {state.line}\n")
            if hint:
                ctx.hint(hint)
            return EXIT_ERROR
        if follow and state.line != shown:
            ctx.out.write(state.line + "\n")
            ctx.out.flush()
            shown = state.line
        if deadline is not None and time.monotonic() >= deadline:
            ctx.err.write(f"error: timed out waiting for the run of {display(name)}: "
                          f"{state.line}\n")
            return EXIT_ERROR
        time.sleep(POLL_SECONDS)


def cmd_backfill(ctx: Context, args: argparse.Namespace) -> int:
    """Ask for one run per past slot of the schedule in [--from, --to)."""
    _, job = get_job(ctx, args.job)
    if not isinstance(job, ExportJob):
        raise CliError(f"{display(args.job)} is an ImportJob: a backfill replays an "
                       "ExportJob's past time windows")
    if job.spec.schedule is None:
        raise CliError(f'exportjob "{args.job}" has no schedule: a backfill runs its past slots')
    bounds = []
    for flag, text in (("--from", args.start), ("--to", args.end)):
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise CliError(f"{flag} {text!r} is not an RFC 3339 time, e.g. 2026-11-01T00:00:00Z"
                           ) from None
        if moment.tzinfo is None:
            raise CliError(f"{flag} {text!r} needs a UTC offset or Z")
        bounds.append(moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"))
    if bounds[0] >= bounds[1]:
        raise CliError("--from must be before --to")
    value = "/".join(bounds)
    ctx.kube.patch(EXPORTJOB_PLURAL, job_ref(args.job)[1],
                   {"metadata": {"annotations": {ANNOTATION_BACKFILL: value}}})
    ctx.out.write(f"{display(args.job)} backfill requested ({ANNOTATION_BACKFILL}={value})\n")
    return 0


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    """Cancel the current run (its pods are terminated, the run ends Canceled)."""
    _, job = get_job(ctx, args.job)
    current = (job.status or ExportJobStatus()).current_run
    if current is None:
        raise CliError(f'exportjob "{args.job}" has no run in progress: nothing to stop')
    stamp = request(ctx, *job_ref(args.job), ANNOTATION_STOP_REQUESTED_AT)
    ctx.out.write(f"{display(args.job)} stop of run {current.id} requested "
                  f"({ANNOTATION_STOP_REQUESTED_AT}={stamp})\n")
    return 0


def retry_target(job: AnyJob, name: str, number: int | None) -> str:
    """The run a retry repairs, checked the way the operator will check it.

    The operator retries the latest finished run (a retry of a retry repairs the
    original run), so ``--run N`` must name that run or the run it repairs.
    """
    status = job.status or ExportJobStatus()
    if status.current_run is not None:
        raise CliError(f"run {status.current_run.id} is {status.current_run.phase.value}: "
                       "retry after it ends")
    runs = finished_runs(status)
    if number is not None:
        wanted = run_id(name, number)
        entry = next((h for h in runs if h.id == wanted), None)
        if entry is None:
            raise CliError(f'run {wanted} not found in the history of exportjob "{name}"')
        if entry.phase not in RETRYABLE_RUN_PHASES:
            raise CliError(f"run {wanted} {entry.phase.value}: only a Failed, "
                           "PartiallySucceeded or Canceled run can be retried")
        if wanted not in (runs[0].id, runs[0].retry_of):
            raise CliError(f"run {wanted} is not the latest run ({runs[0].id}): only the "
                           "latest run's failed batches can be retried")
    if not runs:
        raise CliError(f'exportjob "{name}" has not run yet: nothing to retry')
    last = runs[0]
    if last.phase not in RETRYABLE_RUN_PHASES:
        raise CliError(f"run {last.id} {last.phase.value}: nothing to retry")
    return last.folder


def cmd_retry(ctx: Context, args: argparse.Namespace) -> int:
    """Re-run the batches of a Failed, PartiallySucceeded or Canceled run that did not
    commit, into the same run folder."""
    _, job = get_job(ctx, args.job)
    target = retry_target(job, args.job, args.run)
    stamp = request(ctx, *job_ref(args.job), ANNOTATION_RETRY_REQUESTED_AT)
    ctx.out.write(f"{display(args.job)} retry of run {target} requested "
                  f"({ANNOTATION_RETRY_REQUESTED_AT}={stamp})\n")
    return 0


def gitops_manager(raw: dict[str, Any]) -> str | None:
    """"Argo CD" or "Flux" when the object carries their tracking labels/annotations."""
    meta = raw.get("metadata", {})
    keys = [*meta.get("labels", {}), *meta.get("annotations", {})]
    if any(k.startswith("argocd.argoproj.io/") for k in keys):
        return "Argo CD"
    if any(k.startswith(("kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/"))
           for k in keys):
        return "Flux"
    return None


def set_suspend(ctx: Context, name: str, suspend: bool) -> int:
    """Patch spec.suspend: the one spec field the CLI writes, with a GitOps warning."""
    raw, job = get_job(ctx, name)
    word = "suspended" if suspend else "resumed"
    if not suspend and (job.status or ExportJobStatus()).one_time_started_at is not None:
        raise CliError(f'exportjob "{name}" is a one-time job that has already started: it '
                       f"cannot be resumed; clone it to run it again (kubectl ferry clone "
                       f"{name} NEW)")
    if job.spec.suspend == suspend:
        ctx.out.write(f"{display(name)} already {word}\n")
        return 0
    ctx.kube.patch(*job_ref(name), {"spec": {"suspend": suspend}})
    ctx.out.write(f"{display(name)} {word}\n")
    manager = gitops_manager(raw)
    who = f"{manager} manages this object" if manager else "if Git is the source of this object"
    ctx.hint(f"{who}: set spec.suspend: {str(suspend).lower()} in Git too, or the next sync "
             "reverts this change")
    return 0


def cmd_suspend(ctx: Context, args: argparse.Namespace) -> int:
    """Start no new scheduled runs (a running run continues)."""
    return set_suspend(ctx, args.job, True)


def cmd_resume(ctx: Context, args: argparse.Namespace) -> int:
    """Schedule runs again; missed slots follow schedule.missedRunPolicy."""
    return set_suspend(ctx, args.job, False)


def clone_body(raw: dict[str, Any], new: str, title: str | None) -> dict[str, Any]:
    """A copy of the spec under a new name, suspended, without status or ownership."""
    meta = raw.get("metadata", {})
    labels = {k: v for k, v in meta.get("labels", {}).items() if not k.startswith(DROPPED_LABELS)}
    spec = {**raw["spec"], "suspend": True}
    if title is not None:
        spec["title"] = title
    metadata: dict[str, Any] = {"name": new, "namespace": meta.get("namespace")}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": raw["apiVersion"], "kind": raw["kind"], "metadata": metadata,
            "spec": spec}


def cmd_clone(ctx: Context, args: argparse.Namespace) -> int:
    """Copy a job under a new name; the copy starts suspended."""
    raw, _ = get_job(ctx, args.source)
    plural = job_ref(args.source)[0]
    ctx.kube.create(plural, clone_body(raw, args.new, args.title))
    new = f"importjob/{args.new}" if plural == IMPORTJOB_PLURAL else args.new
    ctx.out.write(f"{display(new)} created from {args.source} (suspended)\n")
    ctx.hint(f"review it with `kubectl ferry describe {new}`, then start its schedule "
             f"with `kubectl ferry resume {new}`")
    return 0


def parse_since(value: str, now: dt.datetime) -> dt.datetime:
    """--since: a duration back from now (24h, 7d, 1d12h) or an RFC 3339 time/date."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f'invalid --since "{value}": use a duration such as 24h or 7d, or an '
                       "RFC 3339 time such as 2026-11-20T00:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


