"""The plugin installs without the operator's and the worker's dependencies (issue 22):
the base install of pyproject.toml is what `kubectl-ferry` imports, and nothing the
plugin imports lives only in the `operator` or `worker` extras."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    """Distribution names of requirement strings, normalized."""
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-")
            for r in requirements}


def plugin_imports() -> set[str]:
    """Top-level modules a fresh interpreter holds after importing the plugin's entry
    point and every verb module (the ui server included)."""
    code = ("import sys, json, ferry.cli.main, ferry.cli.ui.server; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=120).stdout
    return set(json.loads(out))


def test_the_heavy_dependencies_are_extras() -> None:
    base = names(PROJECT["dependencies"])
    extras = PROJECT["optional-dependencies"]
    assert {"kopf", "kubernetes-asyncio", "prometheus-client"} <= names(extras["operator"])
    assert {"pyarrow", "psycopg"} <= names(extras["worker"])
    assert not base & {"kopf", "kubernetes-asyncio", "prometheus-client", "pyarrow",
                       "psycopg"}


def test_everything_the_plugin_imports_is_in_the_base_install() -> None:
    base = names(PROJECT["dependencies"])
    owners = packages_distributions()
    imported = plugin_imports()
    assert not imported & {"kopf", "pyarrow", "psycopg", "prometheus_client",
                           "kubernetes_asyncio"}
    third_party = {m for m in imported if m in owners and m != "ferry"}
    needed = {owners[m][0].lower().replace("_", "-") for m in third_party}
    # Whatever a base requirement pulls in is fine; a module whose distribution only an
    # extra brings would break `pipx install`.
    only_in_extras = needed & (names(PROJECT["optional-dependencies"]["operator"])
                               | names(PROJECT["optional-dependencies"]["worker"]))
    assert only_in_extras - base == set()


def test_the_c_extension_is_optional() -> None:
    """Without a compiler the build skips the worker's extension instead of failing."""
    setup = (ROOT / "setup.py").read_text()
    assert re.search(r"Extension\(\"ferry\.worker\._copyrows\".*optional=True", setup, re.S)
