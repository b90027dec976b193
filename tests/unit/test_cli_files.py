"""Pure parts of download/errors: key parsing, target paths, the progress bar."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from ferry.cli.errors import CliError
from ferry.cli.files import Progress, RunFolder, batch_of, errors_table, local_path


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
