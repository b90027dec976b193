"""Argument handling and exit codes that need no cluster."""

from __future__ import annotations

import datetime as dt

import pytest

from ferry.cli.errors import UsageError
from ferry.cli.jobs import parse_since
from ferry.cli.main import build_parser, main

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "error: the following arguments are required: COMMAND"),
        (["frobnicate"], "error: argument COMMAND: invalid choice: 'frobnicate'"),
        (["describe"], "error: the following arguments are required: job"),
        (["history", "--phase", "done"], "error: argument --phase: 'done' is not a run phase"),
        (["retry", "x", "--run", "-1"], "error: argument --run: '-1' is not a non-negative"),
        (["download", "x"], "error: the following arguments are required: -o/--output-dir"),
        (["list", "-o", "wide"], "error: argument -o/--output: invalid choice: 'wide'"),
        (["describe", "x", "-A"], "error: unrecognized arguments: -A"),
        (["group"], "error: the following arguments are required: VERB"),
    ],
)
def test_usage_errors_exit_1_with_one_error_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == 1
    assert out == ""
    assert err.startswith(message)
    assert err.count("error:") == 1


def test_unknown_flag_and_verb_exit_1_like_kubectl(capsys: pytest.CaptureFixture[str]) -> None:
    """kubectl exits 1 for a usage error (`error: unknown flag: --x`), and so does the plugin."""
    assert run(["list", "--x"], capsys) == (
        1, "", "error: unrecognized arguments: --x\nSee 'kubectl ferry --help' for usage.\n")
    code, out, err = run(["frobnicate"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("error: argument COMMAND: invalid choice: 'frobnicate' (choose from ")
    assert err.endswith(")\nSee 'kubectl ferry --help' for usage.\n")
    assert err.count("\n") == 2


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "download" in out and "group" in out


def test_connection_flags_before_or_after_the_verb() -> None:
    parser = build_parser()
    before = parser.parse_args(["-n", "team-a", "--context", "c", "list"])
    after = parser.parse_args(["list", "-n", "team-a", "--context", "c"])
    for args in (before, after):
        assert (args.namespace, args.context, args.kubeconfig) == ("team-a", "c", None)


def test_phase_is_case_insensitive() -> None:
    args = build_parser().parse_args(["history", "--phase", "partiallysucceeded"])
    assert args.phase.value == "PartiallySucceeded"


def test_unreadable_kubeconfig_is_one_error_line(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["list", "--kubeconfig", "/nonexistent/kubeconfig"], capsys)
    assert code == 1
    assert out == ""
    assert err.startswith("error: cannot load kubeconfig: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("24h", NOW - dt.timedelta(hours=24)), ("1d12h", NOW - dt.timedelta(hours=36)),
     ("2026-11-20T00:00:00Z", dt.datetime(2026, 11, 20, tzinfo=dt.UTC)),
     ("2026-11-20", dt.datetime(2026, 11, 20, tzinfo=dt.UTC))],
)
def test_parse_since(value: str, expected: dt.datetime) -> None:
    assert parse_since(value, NOW) == expected


def test_parse_since_rejects_garbage() -> None:
    with pytest.raises(UsageError) as info:
        parse_since("yesterday", NOW)
    assert str(info.value).startswith('invalid --since "yesterday": use a duration')
