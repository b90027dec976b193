"""What the operator, the worker, the CLI and the API models must agree on, once.

The lowest layer beside ``ferry.constants``: every other package may import it and it
imports none of them, so the worker (which stands alone, see .importlinter) and the API
models read the same limits, exit codes and file names.
"""
