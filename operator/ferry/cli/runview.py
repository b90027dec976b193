"""`kubectl ferry describe JOB [--run N] [-w]`: a job (with its Events and the next step
when it is stuck), or one run with its batches; -w prints the job again when it changes.

A finished run's batches are no longer in status (only the current run's are): they
come from the run folder's marker `_run.json` (docs/worker.md, "The run marker"), read
with the bucket credentials the ExportJob references, as `download` reads its files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from ferry.api.importjob import ImportJob
from ferry.api.status import HistoryEntry, RunStatus
from ferry.cli import render
from ferry.cli.context import Context
from ferry.cli.errors import CliError
from ferry.cli.files import open_folder
from ferry.cli.jobs import POLL_SECONDS, get_job
from ferry.cli.jobviews import (
    current_run_section,
    describe_job,
    events_section,
    finished_run_section,
    next_step,
)
from ferry.cli.model import AnyJob, name_of, pick_run
from ferry.contract.layout import RUN_MARKER


def read_marker(ctx: Context, raw_job: Any, ref: Any) -> tuple[dict[str, Any] | None, str]:
    """The run marker, or None with why not (a note for the reader, not an error: the
    run's status is still worth showing when the bucket cannot be read)."""
    try:
        folder = open_folder(ctx, raw_job, ref)
        key = folder.prefix + RUN_MARKER
        if key not in folder.bucket.keys(key):
            return None, (f"{folder.url}/{RUN_MARKER} does not exist (yet): the run is being "
                          "sealed, or ended before Ferry wrote run markers")
        return folder.bucket.read_json(key), ""
    except CliError as exc:
        return None, f"cannot read the run marker: {exc}"


def job_page(ctx: Context, job: AnyJob, now: dt.datetime) -> str:
    """describe's page: the job, its Events, and the next step when it is stuck."""
    name = name_of(job)
    out = describe_job(job, now) + events_section(ctx.kube.events(job.kind, name), now)
    step = next_step(name, job.status)
    return out + (f"Next Step:\n  {step}\n" if step else "")


def cmd_describe(ctx: Context, args: argparse.Namespace) -> int:
    """Spec summary, current run, history, missed runs, conditions; with --run one run
    and its batches."""
    raw, job = get_job(ctx, args.job)
    if args.output:
        ctx.out.write(render.dump(raw, args.output))
        return 0
    if args.run is None:
        ctx.out.write(job_page(ctx, job, ctx.now))
        version = raw["metadata"].get("resourceVersion")
        while getattr(args, "watch", False):
            time.sleep(POLL_SECONDS)
            raw, job = get_job(ctx, args.job)
            if raw["metadata"].get("resourceVersion") != version:
                version = raw["metadata"].get("resourceVersion")
                ctx.out.write("\n" + job_page(ctx, job, dt.datetime.now(dt.UTC)))
                ctx.out.flush()
        return 0
    ref = pick_run(job, args.run)
    if isinstance(ref.entry, RunStatus):
        ctx.out.write(f"Run {ref.id} (in progress):\n" + current_run_section(ref.entry, ctx.now))
    elif isinstance(ref.entry, HistoryEntry) and isinstance(job, ImportJob):
        ctx.out.write(finished_run_section(ref.entry, None, "an import's batches are in its "
                                           "Job while it is kept, and in its message"))
    elif isinstance(ref.entry, HistoryEntry):
        marker, note = read_marker(ctx, job, ref)
        ctx.out.write(finished_run_section(ref.entry, marker, note))
    else:
        raise CliError(f"run {ref.id} is no longer in the history of exportjob "
                       f'"{args.job}": kubectl ferry download --run {args.run} lists its files')
    return 0
