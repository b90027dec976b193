"""Entry point of `kubectl-ferry` (run as `kubectl ferry ...`): arguments and exit codes.

Exit codes follow kubectl: 0 success, 1 an error (one ``error: ...`` line on stderr),
including a usage error (unknown verb or flag, bad flag value: ``error: ...`` and
``See 'kubectl ferry [VERB] --help' for usage.``, as kubectl prints for an unknown flag).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from ferry.api.status import RunPhase
from ferry.cli import files, groups, jobs, runview
from ferry.cli.context import Context
from ferry.cli.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CliError, UsageError
from ferry.cli.kube import Target
from ferry.cli.render import OUTPUT_FORMATS
from ferry.cli.ui.command import cmd_ui

Command = Callable[[Context, argparse.Namespace], int]

DESCRIPTION = """Operate Ferry ExportJobs and JobGroups: list, inspect, run, stop, retry,
suspend, resume, clone, and fetch a run's files, error report and logs; `ui` serves the
same in a browser.
Flags follow kubectl: --kubeconfig, --context, -n/--namespace (default: the
context's namespace) and, for list and history, -A/--all-namespaces."""


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main owns the output and exit code."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\nSee '{self.prog} --help' for usage.")


def utcnow() -> dt.datetime:
    """The clock (tests replace it to get stable relative times)."""
    return dt.datetime.now(dt.UTC)


def phase_arg(value: str) -> RunPhase:
    """--phase, case-insensitive: succeeded, Failed, partiallysucceeded, ..."""
    for phase in RunPhase:
        if phase.value.lower() == value.lower():
            return phase
    choices = ", ".join(p.value for p in RunPhase)
    raise argparse.ArgumentTypeError(f"{value!r} is not a run phase (one of {choices})")


def number_arg(value: str) -> int:
    """--run and --batch: run numbers start at 1, batch indexes at 0."""
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a non-negative integer")
    return int(value)


def add_connection(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """kubectl's connection flags, accepted before and after the verb.

    On subcommands the defaults are suppressed, so a flag given before the verb is not
    overwritten by the subcommand's default.
    """
    default = {"default": argparse.SUPPRESS} if suppress else {"default": None}
    parser.add_argument("--kubeconfig", help="path to the kubeconfig file", **default)
    parser.add_argument("--context", help="kubeconfig context to use", **default)
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)",
                        **default)


def add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS,
                        help="print the data as json or yaml instead of a table")


def add_watch(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("-w", "--watch", action="store_true", help=f"{text} (until Ctrl-C)")


def add_all_namespaces(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-A", "--all-namespaces", action="store_true", default=argparse.SUPPRESS,
                        help="list across all namespaces")


def verb(sub: argparse._SubParsersAction[Parser], name: str, command: Command,
         help_text: str) -> Parser:
    """A subcommand with the connection flags, dispatching to ``command``."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    add_connection(parser, suppress=True)
    parser.set_defaults(func=command)
    return parser


def add_job_verbs(sub: argparse._SubParsersAction[Parser]) -> None:
    p = verb(sub, "list", jobs.cmd_list, "list ExportJobs and ImportJobs with type, phase, "
             "progress, ETA, last/next run")
    add_all_namespaces(p)
    add_output(p)
    add_watch(p, "after the table, print a row for each job that changes")
    p = verb(sub, "describe", runview.cmd_describe,
             "show a job: spec summary, current run and batches, history, conditions; "
             "with --run one run and its batches")
    p.add_argument("job")
    p.add_argument("--run", type=number_arg, help="run number: that run and its batches")
    add_output(p)
    add_watch(p, "print the job again each time it changes")
    p = verb(sub, "history", jobs.cmd_history, "runs of a job, or of all jobs (newest first)")
    p.add_argument("job", nargs="?")
    p.add_argument("--phase", type=phase_arg, help="only runs in this phase, e.g. Failed")
    p.add_argument("--since", help="only runs started since: a duration (24h, 7d) or a time")
    add_all_namespaces(p)
    add_output(p)
    p = verb(sub, "run", jobs.cmd_run, "run a job now (the schedule is unchanged)")
    p.add_argument("job")
    p.add_argument("--wait", action="store_true",
                   help="wait for the run to end: exit 0 if it Succeeded, else 1 with its "
                   "message")
    p.add_argument("-f", "--follow", action="store_true",
                   help="--wait, printing the run's progress line as it changes")
    p.add_argument("--timeout", help="with --wait or --follow: give up (exit 1) after this "
                   "long, e.g. 2h (default: wait until the run ends)")
    for name, command, text in (
        ("stop", jobs.cmd_stop, "cancel the job's current run"),
        ("suspend", jobs.cmd_suspend, "start no new scheduled runs (spec.suspend: true)"),
        ("resume", jobs.cmd_resume, "schedule runs again (spec.suspend: false)"),
    ):
        verb(sub, name, command, text).add_argument("job")
    p = verb(sub, "retry", jobs.cmd_retry,
             "re-run the failed batches of the latest Failed or PartiallySucceeded run")
    p.add_argument("job")
    p.add_argument("--run", type=number_arg, help="run number to retry (must be the latest)")
    p = verb(sub, "backfill", jobs.cmd_backfill,
             "run each past schedule slot in [--from, --to), one after another")
    p.add_argument("job")
    p.add_argument("--from", dest="start", required=True, help="RFC 3339 start (inclusive)")
    p.add_argument("--to", dest="end", required=True, help="RFC 3339 end (exclusive)")
    p = verb(sub, "clone", jobs.cmd_clone, "copy a job under a new name; the copy is suspended")
    p.add_argument("source")
    p.add_argument("new")
    p.add_argument("--title", help="title of the copy (default: the source's)")


def add_file_verbs(sub: argparse._SubParsersAction[Parser]) -> None:
    p = verb(sub, "download", files.cmd_download, "download the committed files of a run")
    p.add_argument("job")
    p.add_argument("--run", type=number_arg, help="run number (default: the latest run)")
    p.add_argument("--batch", type=number_arg, help="only this batch index")
    p.add_argument("-o", "--output-dir", required=True, help="directory to write the files to")
    p = verb(sub, "errors", files.cmd_errors, "show the error report of a run")
    p.add_argument("job")
    p.add_argument("--run", type=number_arg, help="run number (default: the latest run)")
    add_output(p)
    p = verb(sub, "logs", files.cmd_logs, "print the worker pods' logs of a run")
    p.add_argument("job")
    p.add_argument("--run", type=number_arg, help="run number (default: current, else latest)")
    p.add_argument("--batch", type=number_arg, help="only this batch index")


def add_group_verbs(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("group", help="JobGroup verbs: list, describe, run, stop, retry, "
                           "history")
    gsub = group.add_subparsers(dest="group_verb", metavar="VERB", required=True)
    p = verb(gsub, "list", groups.cmd_list, "list JobGroups")
    add_all_namespaces(p)
    add_output(p)
    p = verb(gsub, "describe", groups.cmd_describe, "show a group, its current run and history")
    p.add_argument("group")
    add_output(p)
    p = verb(gsub, "history", groups.cmd_history, "group runs of a group, or of all groups")
    p.add_argument("group", nargs="?")
    add_all_namespaces(p)
    add_output(p)
    for name, command, text in (
        ("run", groups.cmd_run, "run the group now"),
        ("stop", groups.cmd_stop, "cancel the group's current run"),
        ("retry", groups.cmd_retry, "retry the latest failed group run"),
    ):
        verb(gsub, name, command, text).add_argument("group")


def build_parser() -> Parser:
    """The whole command line (also what docs/cli.md describes)."""
    parser = Parser(prog="kubectl ferry", description=DESCRIPTION)
    add_connection(parser, suppress=False)
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True,
                                parser_class=Parser)
    add_job_verbs(sub)
    add_file_verbs(sub)
    add_group_verbs(sub)
    p = verb(sub, "ui", cmd_ui, "serve the Jobs, History, run and job pages on 127.0.0.1 (a "
             "URL with a token) with your kubeconfig, live; Ctrl-C stops it")
    add_all_namespaces(p)
    p.add_argument("--port", type=number_arg, default=0, help="port (default: any free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL, open no browser")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run one verb, and map the outcome to kubectl's exit codes."""
    try:
        args = build_parser().parse_args(argv)
        ctx = Context(
            target=Target(args.kubeconfig, args.context, args.namespace,
                          getattr(args, "all_namespaces", False)),
            now=utcnow(), out=sys.stdout, err=sys.stderr,
        )
        code: int = args.func(ctx, args)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except CliError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_ERROR
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
