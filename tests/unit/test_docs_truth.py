"""What the docs, examples and kubectl explain texts say, checked against the code.

Cheap, mechanical guards for claims that drifted before (issue 17): the object names a
run's folder holds, and the condition reasons the controllers set. The files read are
the real ones in the repository.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.api.common import ConditionReason
from ferry.api.status import FINISHED_RUN_PHASES, RunPhase
from ferry.worker import layout
from ferry.worker.plan import parse_plan

ROOT = Path(__file__).resolve().parents[2]

# Everything a user reads: docs, examples, the chart, the CRDs (kubectl explain), the
# API models' descriptions and the plugin's help.
TEXT_GLOBS = ("README.md", "docs/**/*.md", "docs/gitops/*", "examples/*.yaml",
              "charts/ferry/**/*.yaml", "charts/ferry/**/*.md", "crds/*.yaml",
              "operator/ferry/api/*.py", "operator/ferry/cli/*.py")

REASON_SOURCES = ("operator/ferry/reconcile/runs.py", "operator/ferry/reconcile/groups.py",
                  "operator/ferry/reconcile/conditions.py",
                  "operator/ferry/reconcile/lifecycle.py",
                  "operator/ferry/reconcile/schedule/validate.py",
                  "operator/ferry/reconcile/schedule/fires.py")


def user_facing_files() -> list[Path]:
    found = {p for pattern in TEXT_GLOBS for p in ROOT.glob(pattern) if p.is_file()}
    return sorted(found)


def texts() -> Iterator[tuple[str, int, str]]:
    for path in user_facing_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            yield str(path.relative_to(ROOT)), number, line


def layout_names() -> tuple[str, str, str]:
    """The worker's own key templates, from ferry.worker.layout on a real plan."""
    plan = parse_plan({"job": "jobname", "run": "jobname.7", "source": {"table": "t"},
                       "format": "csv", "destination": {"bucket": "exports"},
                       "batchIndex": 3, "batchCount": 4}, {})
    data = layout.data_key(plan, "abcdef01", 5).rsplit("/", 1)[1]
    assert data == "jobname-3-5-abcdef01.csv"
    template = (data.replace("jobname", "<job>").replace("-3-", "-<batch>-")
                .replace("-5-", "-<n>-").replace("abcdef01", "<attempt>")
                .replace(".csv", ".<ext>"))
    run = layout.run_prefix(plan) + "/"
    manifest = layout.manifest_key(plan).removeprefix(run).replace("3", "<batch>")
    errors = layout.error_key(plan).removeprefix(run).replace("3", "<batch>")
    return template, manifest, errors


def test_layout_templates_are_what_worker_md_shows() -> None:
    data, manifest, errors = layout_names()
    assert (data, manifest, errors) == ("<job>-<batch>-<n>-<attempt>.<ext>",
                                        "_manifests/batch-<batch>.json",
                                        "_errors/batch-<batch>.jsonl")
    worker_md = (ROOT / "docs" / "worker.md").read_text(encoding="utf-8")
    for name in (data, manifest, errors):
        assert f"<prefix>/<job>/<run>/{name}" in worker_md


def test_no_text_names_objects_the_worker_does_not_write() -> None:
    """A run's folder holds `_manifests/batch-<i>.json` and `_errors/batch-<i>.jsonl`,
    and data files `<job>-<batch>-<n>-<attempt>.<ext>`: no run-wide `_manifest.json`,
    no `_errors.jsonl`, no `<job>-<n>.<ext>`."""
    data, _, _ = layout_names()
    placeholder = re.compile(r"<job>-[^\s`'\",;)]*\.<ext>")
    # A concrete data file name in an example: <job>-<batch>-<n>-<8 hex>.<format>[.gz|.zst]
    concrete = re.compile(r"(?<![\w/<>.-])([a-z0-9][a-z0-9<>-]*-[\w<>-]*\.(?:csv|jsonl|parquet)"
                          r"(?:\.gz|\.zst)?)\b")
    concrete_ok = re.compile(r"(<job>|[a-z0-9]([a-z0-9-]*[a-z0-9])?)-(<batch>|\d+)-(<n>|\d+)-"
                             r"(<attempt>|[0-9a-f]{8})\.(csv|jsonl|parquet)(\.gz|\.zst)?")
    wrong = []
    for where, number, line in texts():
        if "_manifest.json" in line or "_errors.jsonl" in line:
            wrong.append(f"{where}:{number}: {line.strip()}")
        wrong += [f"{where}:{number}: {name}" for name in placeholder.findall(line)
                  if name != data]
        wrong += [f"{where}:{number}: {name}" for name in concrete.findall(line)
                  if not name.startswith("batch-") and not concrete_ok.fullmatch(name)]
    assert not wrong, "names the worker does not write (see ferry.worker.layout):\n" + \
        "\n".join(wrong)


def literal_reasons_in(source: str) -> set[str]:
    """Condition reasons written as bare string literals: the reason argument of
    set_condition, of InvalidScheduleError and of a lifecycle Verdict, and the (status,
    reason, message) triples the reconcilers build. Reasons belong in ConditionReason,
    where they are documented."""
    found: set[str] = set()
    tree = ast.parse((ROOT / source).read_text(encoding="utf-8"))

    def literals(node: ast.AST) -> set[str]:
        return {n.value for n in ast.walk(node)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)}

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name == "set_condition" and len(node.args) >= 4:
                found |= literals(node.args[3])
            elif name == "InvalidScheduleError" and node.args:
                found |= literals(node.args[0])
            elif name == "Verdict" and len(node.args) >= 2:
                found |= literals(node.args[1])
        elif isinstance(node, ast.Tuple) and len(node.elts) == 3:
            first, second = node.elts[0], node.elts[1]
            if isinstance(first, ast.Constant) and isinstance(first.value, bool) and \
                    isinstance(second, ast.Constant) and isinstance(second.value, str):
                found.add(second.value)
    return found


def condition_reasons() -> set[str]:
    # Running=True's reason is the active run's phase.
    return {r.value for r in ConditionReason} | {
        p.value for p in RunPhase if p not in FINISHED_RUN_PHASES}


def test_the_literal_scan_sees_a_bare_reason(tmp_path: Path) -> None:
    """The scan below works: it finds a reason written as a literal in each form."""
    source = tmp_path / "sample.py"
    source.write_text('set_condition(c, READY, False, "Oops", "m", now, g)\n'
                      'ready = (True, "Fine", "all good")\n'
                      'raise InvalidScheduleError("Bad", "m")\n')
    assert literal_reasons_in(str(source)) == {"Oops", "Fine", "Bad"}


@pytest.mark.parametrize("source", REASON_SOURCES)
def test_every_condition_reason_is_a_named_constant(source: str) -> None:
    assert literal_reasons_in(source) == set(), \
        f"{source} sets a condition reason as a bare string: add it to ConditionReason"


@pytest.mark.parametrize("reason", sorted(condition_reasons()))
def test_every_condition_reason_is_documented_in_api_md(reason: str) -> None:
    api_md = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    conditions = api_md.split("### Conditions", 1)[1].split("\n## ", 1)[0]
    assert f"`{reason}`" in conditions, \
        f"condition reason {reason} is set by the operator but not listed in docs/api.md"


def test_no_doc_calls_stalled_unset() -> None:
    lines = [f"{where}:{number}: {line.strip()}" for where, number, line in texts()
             if "Stalled" in line and re.search(r"reserved|never set|does not set", line)]
    assert not lines, "the operator sets Stalled (ferry.reconcile.runs):\n" + "\n".join(lines)
