"""``ferry-worker``'s exit codes: its only channel to the Job controller before the pod
is gone (docs/worker.md). The operator's Job spec fails an index at once on the fatal
ones (podFailurePolicy FailIndex); the others use the index's retry budget."""

import enum
from typing import Final


class ExitCode(enum.IntEnum):
    """Process exit codes of ``ferry-worker``."""

    OK = 0
    INTERNAL = 1  # unexpected bug: retried like a transient failure
    USAGE = 2  # bad command line (argparse's own code)
    CONFIG = 3  # fatal: invalid plan, missing secret, bad credentials, unknown table/column
    DATA = 4  # fatal: a value the chosen format cannot represent, record > fileSplitSize
    TRANSIENT = 75  # EX_TEMPFAIL: connection lost, S3 5xx/throttling after retries


FATAL_EXIT_CODES: Final = (ExitCode.CONFIG, ExitCode.DATA)
"""Exit codes no retry can fix: the plan or the data must change."""
