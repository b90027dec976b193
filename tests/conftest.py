"""Test-wide configuration: the repo root on sys.path and the shared fixture plugins."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

pytest_plugins = ["tests.fixtures.services"]
