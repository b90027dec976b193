"""Parts of download/errors that need no bucket: key parsing, target paths, the progress
bar, and how a downloaded file is written to the (real) file system."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry.cli.errors import CliError
from ferry.cli.files import (
    Progress,
    RemoteFile,
    RunFolder,
    batch_of,
    errors_table,
    fetch,
    local_path,
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def folder() -> RunFolder:
    bucket: Any = None  # not touched by local_path
    return RunFolder(bucket, "ferry/contacts/contacts.2/", "s3://b/ferry/contacts/contacts.2")


def test_batch_of_manifest_and_error_keys() -> None:
    assert batch_of("p/j/j.2/_manifests/batch-12.json") == 12
    assert batch_of("p/j/j.2/_errors/batch-3.jsonl") == 3


def test_local_path_keeps_the_name_relative_to_the_run(tmp_path: Path) -> None:
    key = "ferry/contacts/contacts.2/contacts-0-0-1a2b3c4d.csv"
    assert local_path(tmp_path, folder(), key) == tmp_path / "contacts-0-0-1a2b3c4d.csv"


def test_local_path_refuses_to_escape_the_directory(tmp_path: Path) -> None:
    with pytest.raises(CliError) as info:
        local_path(tmp_path, folder(), "ferry/contacts/contacts.2/../../../../etc/passwd")
    assert str(info.value).startswith("refusing to write ")


def test_progress_draws_a_bar_on_a_terminal_only() -> None:
    tty = Terminal()
    progress = Progress(tty, 2048)
    progress.add(1024)
    progress.close()
    assert tty.getvalue() == "\r[##########----------]  50% 1.0 KiB/2.0 KiB\n"
    pipe = io.StringIO()
    quiet = Progress(pipe, 2048)
    quiet.add(2048)
    quiet.close()
    assert pipe.getvalue() == ""


def test_errors_table_tolerates_missing_fields() -> None:
    assert errors_table([{"batch": 1, "reason": "unreadable line 2 of k: x"}]) == (
        "TIME   BATCH   ATTEMPT   KIND   EXIT   REASON\n"
        "-      1       -         -      -      unreadable line 2 of k: x\n"
    )


class Chunks:
    """The part of a Bucket that fetch reads: an object's URL and its bytes in chunks."""

    name = "b"

    def __init__(self, data: bytes) -> None:
        self.data = data

    def url(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def stream(self, key: str) -> Iterator[bytes]:
        yield self.data[:3]
        yield self.data[3:]


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for one test; the old one comes back afterwards."""
    old = os.umask(0o022)

    def set_umask(value: int) -> None:
        os.umask(value)

    try:
        yield set_umask
    finally:
        os.umask(old)


def download(directory: Path, data: bytes, sha256: str | None = None) -> Path:
    key = "ferry/contacts/contacts.2/contacts-0-0-1a2b3c4d.csv"
    remote = RemoteFile(key, len(data), sha256 or hashlib.sha256(data).hexdigest(), 0)
    bucket: Any = Chunks(data)
    run = RunFolder(bucket, "ferry/contacts/contacts.2/", "s3://b/ferry/contacts/contacts.2")
    target = local_path(directory, run, key)
    fetch(run, remote, target, Progress(io.StringIO(), len(data)))
    return target


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664),
                                            (0o077, 0o600)], ids=["022", "027", "002", "077"])
def test_downloaded_file_mode_follows_the_umask(
    tmp_path: Path, umask: Callable[[int], None], mask: int, mode: int
) -> None:
    umask(mask)
    target = download(tmp_path, b"id,name\n1,a\n")
    assert target.read_bytes() == b"id,name\n1,a\n"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert os.listdir(tmp_path) == [target.name]


def test_a_file_that_does_not_match_its_manifest_is_not_saved(tmp_path: Path) -> None:
    with pytest.raises(CliError) as info:
        download(tmp_path, b"id,name\n1,a\n", sha256="0" * 64)
    assert str(info.value) == (
        "s3://b/ferry/contacts/contacts.2/contacts-0-0-1a2b3c4d.csv does not match its "
        "manifest (12 bytes, sha256 " + hashlib.sha256(b"id,name\n1,a\n").hexdigest()[:12]
        + "...): not saved")
    assert os.listdir(tmp_path) == []
