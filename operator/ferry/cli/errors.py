"""The two ways a command ends badly, mapped to kubectl's exit codes by main."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 1  # kubectl exits 1 for usage errors too: "error: unknown flag: --x"


class CliError(Exception):
    """A failure the user can act on: printed as one ``error: ...`` line, exit 1."""


class UsageError(CliError):
    """The command line itself is wrong: argparse's message and a pointer to --help, exit 1."""
