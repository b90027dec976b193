"""Test-wide configuration: Hypothesis' profile and the shared fixture plugins.

The repo root is on sys.path through pytest's `pythonpath` option (pyproject.toml), so
`tests` and `hack` are imported by name, as `ferry` (installed) is.

Hypothesis' per-example deadline is off everywhere: it measures wall time, and on a
shared two-core CI machine a slow example says nothing about the code under test.
"""

from hypothesis import settings

settings.register_profile("ferry", deadline=None)
settings.load_profile("ferry")

pytest_plugins = ["tests.fixtures.services"]
