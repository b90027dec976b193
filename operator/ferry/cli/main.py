"""Entry point of `kubectl-ferry`."""

import sys

USAGE = """usage: kubectl ferry <command> [options]

Commands (being built; see the project's issues):
  list, describe, history, run, stop, retry, suspend, resume, clone, download, errors, logs
"""


def main() -> int:
    sys.stderr.write(USAGE)
    return 2
