"""The two ways a command ends badly, mapped to kubectl's exit codes by main."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure the user can act on: printed as one ``error: ...`` line, exit 1."""


class UsageError(CliError):
    """The command line itself is wrong: printed like argparse does, exit 2."""
