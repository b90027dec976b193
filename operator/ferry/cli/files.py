"""download, errors and logs: what a run left behind, in the bucket (or SFTP directory)
and in its pods.

Only files listed in a batch manifest (``<run>/_manifests/batch-<i>.json``) belong
to a run: the manifest is the commit record, and a data file without one is a
leftover of an attempt that lost or crashed. So download reads manifests first and
never lists data files. A manifest or error record whose ``jobUid`` is not the
ExportJob's was left by an earlier ExportJob of the same name in the same folder (run
numbers start at 1 again): it is not this run's, and is skipped until the run's
workers remove it (docs/worker.md, file layout).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ferry.api.exportjob import ExportJob
from ferry.api.importjob import ImportJob
from ferry.cli import render
from ferry.cli.context import Context
from ferry.cli.errors import CliError
from ferry.cli.jobs import get_export, get_job
from ferry.cli.model import RunRef, name_of, pick_run
from ferry.cli.s3 import Bucket, split_url
from ferry.cli.sftp import SftpFiles
from ferry.constants import LABEL_IMPORTJOB, LABEL_JOB, LABEL_RUN
from ferry.contract.layout import ERRORS, MANIFESTS

COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class RunFolder:
    """A run's folder: the bucket (or SFTP directory) and the key prefix ending in '/'."""

    bucket: Bucket | SftpFiles
    prefix: str
    url: str
    job_uid: str | None = None

    def owns(self, document: dict[str, Any]) -> bool:
        """Whether a manifest or error record is this ExportJob's (one written before
        uids were recorded cannot be told apart, and counts as this job's)."""
        uid = document.get("jobUid")
        return uid is None or self.job_uid is None or uid == self.job_uid


def open_folder(ctx: Context, job: ExportJob, ref: RunRef) -> RunFolder:
    """The folder the run's files are in (a retry's files are in the run it repairs)."""
    output = job.spec.output
    url = output.location(name_of(job), ref.folder)
    if output.sftp is not None:
        return RunFolder(SftpFiles.open(ctx.kube, output.sftp), f"{name_of(job)}/{ref.folder}/",
                         url, job.metadata.uid)
    assert output.s3 is not None
    _, prefix = split_url(url)
    return RunFolder(Bucket.open(ctx.kube, output.s3), prefix + "/", url, job.metadata.uid)


def batch_of(key: str) -> int:
    """``.../_manifests/batch-3.json`` or ``.../_errors/batch-3.jsonl`` -> 3."""
    stem = key.rsplit("/", 1)[-1].split(".", 1)[0]
    return int(stem.removeprefix("batch-"))


@dataclass(frozen=True)
class RemoteFile:
    """One committed data file, as its manifest lists it."""

    key: str
    size: int
    sha256: str
    batch: int


def committed_files(folder: RunFolder, ref: RunRef, batch: int | None) -> list[RemoteFile]:
    """The files of every committed batch (or of one) from the manifests."""
    keys = [k for k in folder.bucket.keys(folder.prefix + MANIFESTS) if k.endswith(".json")]
    if batch is not None:
        keys = [k for k in keys if batch_of(k) == batch]
    manifests = [m for m in (folder.bucket.read_json(k) for k in keys) if folder.owns(m)]
    if batch is not None and not manifests:
        raise CliError(f"batch {batch} of run {ref.id} has no manifest: it did not commit "
                       f"any files (see kubectl ferry errors ... --run)")
    if not manifests:
        raise CliError(f"run {ref.id} has no committed files (no manifests under "
                       f"{folder.url}/{MANIFESTS})")
    files = []
    for manifest in manifests:
        for entry in manifest.get("files", []):
            files.append(RemoteFile(str(entry["key"]), int(entry["size"]),
                                    str(entry["sha256"]), int(manifest.get("batch", -1))))
    return sorted(files, key=lambda f: (f.batch, f.key))


def local_path(directory: Path, folder: RunFolder, key: str) -> Path:
    """Where a file lands: its key relative to the run folder, never outside ``directory``."""
    relative = key.removeprefix(folder.prefix)
    target = (directory / relative).resolve()
    if not target.is_relative_to(directory.resolve()):
        raise CliError(f"refusing to write {key!r} outside {directory}")
    return target


class Progress:
    """A byte progress bar on a terminal; silence on pipes (the file lines suffice)."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.done = 0
        self.live = stream.isatty()

    def add(self, amount: int) -> None:
        self.done += amount
        if self.live:
            share = self.done * 100 // self.total
            self.stream.write(f"\r{render.bar(share)} {render.size(self.done)}"
                              f"/{render.size(self.total)}")
            self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")


def create_temp(directory: Path) -> tuple[int, str]:
    """A new, empty hidden file in ``directory``, opened for writing.

    Created with mode 0666 so the umask (or the directory's default ACL) decides its
    final mode, as for any downloaded file; ``tempfile.mkstemp`` would make it 0600,
    and the rename would keep that. O_EXCL makes the name this call's own.
    """
    for _ in range(100):
        path = directory / f".ferry-{secrets.token_hex(8)}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(path)
        except FileExistsError:
            continue
    raise CliError(f"cannot create a temporary file in {directory}")


def fetch(folder: RunFolder, remote: RemoteFile, target: Path, progress: Progress) -> None:
    """Download to a temporary file, check size and SHA-256, then rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    fd, temp = create_temp(target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in folder.bucket.stream(remote.key):
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                progress.add(len(chunk))
        if written != remote.size or digest.hexdigest() != remote.sha256:
            raise CliError(f"{folder.bucket.url(remote.key)} does not match its manifest "
                           f"({written} bytes, sha256 {digest.hexdigest()[:12]}...): not saved")
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def cmd_download(ctx: Context, args: argparse.Namespace) -> int:
    """The committed files of a run (default: the latest), optionally of one batch."""
    _, job = get_export(ctx, args.job, "download")
    ref = pick_run(job, args.run)
    folder = open_folder(ctx, job, ref)
    files = committed_files(folder, ref, args.batch)
    directory = Path(args.output_dir)
    progress = Progress(ctx.err, sum(f.size for f in files))
    for remote in files:
        target = local_path(directory, folder, remote.key)
        fetch(folder, remote, target, progress)
        ctx.out.write(f"{target}  ({render.size(remote.size)}, batch {remote.batch})\n")
    progress.close()
    ctx.out.write(f"downloaded {len(files)} file(s), {render.size(sum(f.size for f in files))}, "
                  f"of run {ref.id} to {directory}\n")
    return 0


# --- errors -----------------------------------------------------------------------------


def error_records(folder: RunFolder) -> list[dict[str, Any]]:
    """Every line of every batch's error report, oldest first."""
    records = []
    for key in folder.bucket.keys(folder.prefix + ERRORS):
        for number, line in enumerate(folder.bucket.read(key).decode().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = {"reason": f"unreadable line {number} of {key}: {line[:200]}"}
            record.setdefault("batch", batch_of(key))
            if folder.owns(record):
                records.append(record)
    return sorted(records, key=lambda r: (str(r.get("time", "")), r.get("batch", 0)))


def errors_table(records: list[dict[str, Any]]) -> str:
    """TIME, BATCH, ATTEMPT, KIND, EXIT, REASON: one line per failed attempt."""
    return render.table(
        ["TIME", "BATCH", "ATTEMPT", "KIND", "EXIT", "REASON"],
        [[str(r.get("time") or render.NONE), str(r.get("batch", render.NONE)),
          str(r.get("attempt") or render.NONE), str(r.get("kind") or render.NONE),
          str(r.get("exitCode", render.NONE)), render.text(r.get("reason"))]
         for r in records],
    )


def cmd_errors(ctx: Context, args: argparse.Namespace) -> int:
    """The error report of a run (default: the latest), one line per failed attempt."""
    _, job = get_export(ctx, args.job, "errors")
    ref = pick_run(job, args.run)
    records = error_records(open_folder(ctx, job, ref))
    if args.output:
        ctx.out.write(render.dump(records, args.output))
    elif not records:
        ctx.err.write(f"No errors recorded for run {ref.id}.\n")
    else:
        ctx.out.write(errors_table(records))
    return 0


# --- logs -------------------------------------------------------------------------------


def cmd_logs(ctx: Context, args: argparse.Namespace) -> int:
    """The worker pods' logs of a run (default: the current, else the latest run)."""
    _, job = get_job(ctx, args.job)
    status = job.status
    current = status.current_run if status else None
    ref = pick_run(job, args.run if args.run is not None or current is None else current.number)
    number = ref.id.rsplit(".", 1)[1]
    label = LABEL_IMPORTJOB if isinstance(job, ImportJob) else LABEL_JOB
    pods = ctx.kube.pods(f"{label}={name_of(job)},{LABEL_RUN}={number}")
    if args.batch is not None:
        pods = [p for p in pods if (p.metadata.labels or {}).get(COMPLETION_INDEX_LABEL)
                == str(args.batch)]
    if not pods:
        which = f"batch {args.batch} of run {ref.id}" if args.batch is not None else f"run {ref.id}"
        raise CliError(f"no pods found for {which}: they are deleted with the run's Job "
                       "(see kubectl ferry errors for failed batches)")
    pods.sort(key=lambda p: (int((p.metadata.labels or {}).get(COMPLETION_INDEX_LABEL, 0)),
                             p.metadata.creation_timestamp))
    failed = 0
    for pod in pods:
        batch = (pod.metadata.labels or {}).get(COMPLETION_INDEX_LABEL, "?")
        if len(pods) > 1:
            ctx.out.write(f"==> pod/{pod.metadata.name} (batch {batch}, "
                          f"{pod.status.phase}) <==\n")
        try:
            log = ctx.kube.pod_log(pod.metadata.name, None)
        except CliError as exc:
            ctx.err.write(f"error: {exc}\n")
            failed += 1
            continue
        ctx.out.write(log if log.endswith("\n") or not log else log + "\n")
    return 1 if failed else 0
