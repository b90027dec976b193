"""Test-wide configuration: the repo root on sys.path and the shared fixture plugins.

Hypothesis' per-example deadline is off everywhere: it measures wall time, and on a
shared two-core CI machine a slow example says nothing about the code under test.
"""

import sys
from pathlib import Path

from hypothesis import settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

settings.register_profile("ferry", deadline=None)
settings.load_profile("ferry")

pytest_plugins = ["tests.fixtures.services"]
