"""``ferry-worker export``: the program each batch pod runs (``seal``: see below).

Input (details and an example plan in docs/worker.md):

* ``FERRY_PLAN`` JSON plan (or ``FERRY_PLAN_FILE`` / ``--plan-file``), see
  :mod:`ferry.worker.plan`; ``--batch-index`` or ``JOB_COMPLETION_INDEX`` pick the batch.
* Secrets: ``FERRY_SOURCE_DSN``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``
  (``AWS_SESSION_TOKEN``); for an SFTP destination ``FERRY_SFTP_USER`` and
  ``FERRY_SFTP_PRIVATE_KEY`` or ``FERRY_SFTP_PASSWORD``.
* ``POD_NAME`` / ``POD_NAMESPACE`` (progress annotation), ``FERRY_TERMINATION_MESSAGE_PATH``
  (default ``/dev/termination-log``), ``FERRY_MAX_ATTEMPTS`` (in-process tries for
  transient failures, default 3), ``FERRY_S3_RETRY_SECONDS`` (per-call S3 retry budget,
  default 120), ``FERRY_LOG_LEVEL`` (default INFO).

Exit codes: 0 success (also when a racing attempt committed the batch first), 2 bad
command line, 3 fatal configuration error, 4 fatal data error, 75 transient failure
after the in-process retries, 1 unexpected internal error. 3 and 4 are meant for a
podFailurePolicy ``FailIndex`` rule; the others should use the index's retry budget.

``ferry-worker seal`` writes the run marker ``_run.json`` once a run has ended
(:mod:`ferry.worker.seal`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import functools
import gc
import logging
import os
import secrets as random_ids
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TypeVar

import psycopg

from ferry.contract.plan import Plan, SftpDestination
from ferry.worker import layout
from ferry.worker.batch import Attempt, append_error, run_attempt
from ferry.worker.errors import (
    ConfigError,
    ExitCode,
    Redactor,
    Terminated,
    TransientError,
    WorkerError,
)
from ferry.worker.manifest import failure, summary, write_termination_message
from ferry.worker.plan import Secrets, load_plan, load_secrets
from ferry.worker.progress import Progress, Publisher, pod_patcher
from ferry.worker.seal import seal_run, sealed_message
from ferry.worker.storage import S3Store, Store
from ferry.worker.upload import MAX_IN_FLIGHT, Retrier, make_client

log = logging.getLogger("ferry.worker")
T = TypeVar("T")


class _RedactingFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


def _redactor(env: Mapping[str, str]) -> Redactor:
    """Knows every secret value this process was given."""
    dsns = [env.get("FERRY_SOURCE_DSN"), env.get("FERRY_DESTINATION_DSN")]
    redact = Redactor([*dsns, env.get("AWS_SECRET_ACCESS_KEY"),
                       env.get("AWS_SESSION_TOKEN"), env.get("PGPASSWORD"),
                       env.get("FERRY_SFTP_PASSWORD"), env.get("FERRY_SFTP_PRIVATE_KEY")])
    for dsn in dsns:
        if dsn:
            with contextlib.suppress(psycopg.ProgrammingError):
                redact.add(psycopg.conninfo.conninfo_to_dict(dsn).get("password"))  # type: ignore[arg-type]
    return redact


def _setup_logging(env: Mapping[str, str], redact: Redactor) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(env.get("FERRY_LOG_LEVEL", "INFO").upper())
    for noisy in ("botocore", "boto3", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


TERMINATED = "terminated by SIGTERM (pod deleted or evicted)"
"""The reason of an attempt SIGTERM ended: never retried (the pod is going away)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Pod deletion: unwind through the cleanup paths instead of dying mid-upload."""
    del signum, frame
    raise Terminated


def _fallback_index(env: Mapping[str, str], cli_index: int | None) -> int:
    if cli_index is not None:
        return cli_index
    value = env.get("JOB_COMPLETION_INDEX", "")
    return int(value) if value.isdigit() else -1


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    return int(value)


def _gives_up(error: WorkerError, number: int, max_attempts: int) -> bool:
    """Whether a failed attempt is the last: fatal kinds, the last try and SIGTERM are."""
    retryable = error.exit_code in (ExitCode.TRANSIENT, ExitCode.INTERNAL)
    return not retryable or number == max_attempts or error.reason == TERMINATED


def _backoff(number: int) -> None:
    time.sleep(min(30, 2 ** (number + 1)))


def _attempt(step: Callable[[], T]) -> T | WorkerError:
    """One try of ``step``: its result, or the failure as a WorkerError (an unexpected
    exception is an internal error, logged with its traceback, and retried as one)."""
    try:
        return step()
    except Terminated:
        return TransientError(TERMINATED)
    except WorkerError as exc:
        return exc
    except Exception as exc:
        log.exception("unexpected error")
        return WorkerError(f"internal error: {type(exc).__name__}: {exc}")


def _export(plan: Plan, secrets: Secrets, env: Mapping[str, str], redact: Redactor,
            max_attempts: int, retrier: Retrier) -> int:
    term_path = env.get("FERRY_TERMINATION_MESSAGE_PATH")
    progress = Progress(plan.batch_index)
    patcher = pod_patcher(env)
    publisher = Publisher(progress, patcher).start() if patcher else None
    pod = env.get("POD_NAME")
    error: WorkerError = TransientError("no attempt made")
    with (concurrent.futures.ThreadPoolExecutor(MAX_IN_FLIGHT, "ferry-upload") as pool,
          contextlib.closing(open_store(plan, secrets, retrier, pool)) as store):
        for number in range(1, max_attempts + 1):
            at = Attempt(plan, secrets, store, progress, random_ids.token_hex(4), pod)
            progress.records = progress.bytes = progress.files = 0
            log.info("batch %d of %s.%s: attempt %s (%d/%d)", plan.batch_index, plan.job,
                     plan.run, at.attempt, number, max_attempts)
            outcome = _attempt(functools.partial(run_attempt, at))
            if not isinstance(outcome, WorkerError):
                text = summary(outcome.document, layout.manifest_key(plan), outcome.note,
                               progress.key_range)
                write_termination_message(redact(text), term_path)
                log.info("batch %d done: %s", plan.batch_index, redact(text))
                if publisher:
                    publisher.stop("Succeeded")
                return ExitCode.OK
            error = outcome
            error.reason = redact(error.reason)
            log.error("attempt %s failed (%s): %s", at.attempt, error.kind, error.reason)
            try:
                append_error(at, error)
            except Exception as exc:
                log.warning("error report not written: %s", type(exc).__name__)
            if _gives_up(error, number, max_attempts):
                break
            _backoff(number)
    write_termination_message(
        failure(plan.batch_index, error.kind, int(error.exit_code), error.reason), term_path)
    if publisher:
        publisher.stop("Failed")
    return int(error.exit_code)


def open_store(plan: Plan, secrets: Secrets, retrier: Retrier,
               pool: concurrent.futures.ThreadPoolExecutor | None = None) -> Store:
    """The run's destination: an SFTP directory or an S3 bucket (one retry budget)."""
    dest = plan.destination
    if isinstance(dest, SftpDestination):
        # Imported here: paramiko is only loaded by a pod that writes to SFTP.
        from ferry.worker.sftp import SftpStore  # noqa: PLC0415

        return SftpStore(dest, secrets, budget_s=retrier.budget_s)
    return S3Store(make_client(dest, secrets), dest.bucket, retrier, pool)


def _seal(plan: Plan, secrets: Secrets, env: Mapping[str, str], redact: Redactor,
          max_attempts: int, retrier: Retrier) -> int:
    """Seal the run; after a transient failure start over (the seal only reads the
    manifests and rewrites one object, so a repeat is harmless). A failure's
    termination message is the export's with ``batch`` -1: the seal has no batch."""
    term_path = env.get("FERRY_TERMINATION_MESSAGE_PATH")
    store = open_store(plan, secrets, retrier)
    error: WorkerError = TransientError("no attempt made")
    for number in range(1, max_attempts + 1):
        log.info("sealing %s.%s (%d/%d)", plan.job, plan.run, number, max_attempts)
        marker = _attempt(lambda: seal_run(store, plan))
        if not isinstance(marker, WorkerError):
            text = redact(sealed_message(marker, layout.run_marker_key(plan)))
            write_termination_message(text, term_path)
            log.info("sealed: complete=%s, %d of %d batches, %d records", marker["complete"],
                     len(marker["batches"]), plan.batch_count, marker["records"])
            return ExitCode.OK
        error = marker
        error.reason = redact(error.reason)
        log.error("seal failed (%s): %s", error.kind, error.reason)
        if _gives_up(error, number, max_attempts):
            break
        _backoff(number)
    write_termination_message(failure(-1, error.kind, int(error.exit_code), error.reason),
                              term_path)
    return int(error.exit_code)


def _start(env: Mapping[str, str]) -> Redactor:
    """What every command sets up first: redacted logging, SIGTERM as a failure."""
    redact = _redactor(env)
    _setup_logging(env, redact)
    signal.signal(signal.SIGTERM, _on_sigterm)
    return redact


def _invalid(exc: ConfigError, env: Mapping[str, str], redact: Redactor, index: int) -> int:
    """Report a configuration error found before any attempt; returns its exit code."""
    reason = redact(exc.reason)
    log.error("invalid configuration: %s", reason)
    write_termination_message(failure(index, exc.kind, int(exc.exit_code), reason),
                              env.get("FERRY_TERMINATION_MESSAGE_PATH"))
    return int(exc.exit_code)


def export_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``export``; returns the exit code."""
    redact = _start(env)
    try:
        plan = load_plan(env, args.plan_file, args.batch_index)
        secrets = load_secrets(env)
        max_attempts = _int_env(env, "FERRY_MAX_ATTEMPTS", 3)
        retrier = Retrier(budget_s=_int_env(env, "FERRY_S3_RETRY_SECONDS", 120))
    except ConfigError as exc:
        return _invalid(exc, env, redact, _fallback_index(env, args.batch_index))
    return _export(plan, secrets, env, redact, max_attempts, retrier)


def import_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``import`` (:mod:`ferry.worker.importer.main`); returns the exit code."""
    # Imported here: the importer builds on this module's attempt loop helpers.
    from ferry.worker.importer.main import import_command as run_import  # noqa: PLC0415

    return run_import(args, env)


def seal_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``seal``; returns the exit code."""
    redact = _start(env)
    try:
        plan = load_plan(env, args.plan_file, sealing=True)
        secrets = load_secrets(env, source=False)
        max_attempts = _int_env(env, "FERRY_MAX_ATTEMPTS", 3)
        retrier = Retrier(budget_s=_int_env(env, "FERRY_S3_RETRY_SECONDS", 120))
    except ConfigError as exc:
        return _invalid(exc, env, redact, -1)
    return _seal(plan, secrets, env, redact, max_attempts, retrier)


_SEAL_HELP = """\
Write the run marker <prefix>/<job>/<run>/_run.json once a run has ended: which batches
below batchCount are committed (their manifests), which are missing, and the sums.

Input: FERRY_PLAN (or FERRY_PLAN_FILE / --plan-file), the run's plan plus
"seal": {"runId": "<job>.<n>", "outcome": "Succeeded|PartiallySucceeded|Failed|Canceled"};
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN); no FERRY_SOURCE_DSN.
FERRY_TERMINATION_MESSAGE_PATH, FERRY_MAX_ATTEMPTS, FERRY_S3_RETRY_SECONDS and
FERRY_LOG_LEVEL as for export. The termination message is {"status": "Sealed", ...}.

Exit codes: 0 sealed, 2 bad command line, 3 fatal configuration error, 75 transient
failure after the in-process retries, 1 unexpected internal error.
"""


_IMPORT_HELP = """\
Load one batch of an ImportJob run: the batch's share of the source files (an S3 prefix,
or the files an export run's manifests commit) into one PostgreSQL table, in one
transaction with the ledger rows that make a retry skip what landed.

Input: FERRY_PLAN (or FERRY_PLAN_FILE / --plan-file), the import plan (docs/worker.md);
FERRY_DESTINATION_DSN; AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN);
JOB_COMPLETION_INDEX, POD_NAME / POD_NAMESPACE, FERRY_TERMINATION_MESSAGE_PATH,
FERRY_MAX_ATTEMPTS, FERRY_S3_RETRY_SECONDS and FERRY_LOG_LEVEL as for export. The
termination message is {"status": "Imported", ...} or the export's failure message.

Exit codes as for export: 0 committed, 3 configuration, 4 data (a corrupt file, more
rejected rows than maxErrors), 75 transient, 1 internal.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line (``ferry-worker export --help`` prints the contract)."""
    parser = argparse.ArgumentParser(
        prog="ferry-worker",
        description="Ferry's worker: one batch per run (export, import), a run's marker "
                    "(seal).")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser(
        "export", help="export one batch from PostgreSQL to S3",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("--plan-file", help="read the JSON plan from this file "
                        "(default: $FERRY_PLAN_FILE, then $FERRY_PLAN)")
    export.add_argument("--batch-index", type=int, help="batch to export (default: the "
                        "plan's batchIndex, then $JOB_COMPLETION_INDEX, then 0)")
    export.set_defaults(run=export_command)
    seal = commands.add_parser(
        "seal", help="write the run marker _run.json of a run that has ended",
        description=_SEAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    seal.add_argument("--plan-file", help="read the JSON plan from this file "
                      "(default: $FERRY_PLAN_FILE, then $FERRY_PLAN)")
    seal.set_defaults(run=seal_command)
    load = commands.add_parser(
        "import", help="import one batch of files from S3 into a PostgreSQL table",
        description=_IMPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    load.add_argument("--plan-file", help="read the JSON plan from this file "
                      "(default: $FERRY_PLAN_FILE, then $FERRY_PLAN)")
    load.add_argument("--batch-index", type=int, help="batch to import (default: the "
                      "plan's batchIndex, then $JOB_COMPLETION_INDEX, then 0)")
    load.set_defaults(run=import_command)
    return parser


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_ALLOCATION = 1024 * 1024


def _return_large_buffers_to_the_os() -> None:
    """Serve allocations of 1 MiB and more (COPY chunks, upload parts) from mmap.

    glibc raises its mmap threshold after the first large free, so later multi-MiB
    buffers of varying sizes come from the heap, fragment it and RSS creeps up with the
    table's size (measured on 5M rows: CSV 98 MB against 86 MB, Parquet 227 MB against
    198 MB with the threshold pinned). A fixed threshold keeps memory flat, for ~10 %
    more worker CPU in page faults on fresh mappings. No-op where the C library has no
    ``mallopt``.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION)


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point.

    Before returning it freezes the garbage collector's objects: the interpreter's exit
    otherwise walks every object boto3, botocore and psycopg created, 0.19-0.20 s here
    against 0.02 s frozen, at the end of every batch. Nothing is left to collect then;
    the process is about to end.
    """
    args = build_parser().parse_args(argv)
    _return_large_buffers_to_the_os()
    code: int = args.run(args, os.environ)
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(main())
