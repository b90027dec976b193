"""``make bench-import``'s code at a tiny size, so that the benchmark cannot rot.

Runs bench.importer end to end (the real worker, psql, PostgreSQL and the S3 server of
hack.services) on 2,000 and 1,000 rows in a bucket and target table of its own, and
checks what it reports, not how fast: every run is listed, loaded the source's rows
(bench.importer checks the table after each run) and has the fields BENCHMARKS.md reads.
pandas and Sling are measured when the bench extra is installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from bench import importer

pytestmark = pytest.mark.integration


def test_bench_import_runs_at_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "import.json"
    baselines = importlib.util.find_spec("pandas") is not None
    argv = ["--rows", "2000", "--rss-rows", "1000", "--output", str(out),
            "--bucket", "ferry-bench-smoke", "--target", "import_target_smoke"]
    assert importer.main(argv if baselines else [*argv, "--skip-baselines"]) == 0

    report = json.loads(out.read_text())
    assert report["failed_baselines"] == []
    names = [r["name"] for r in report["results"]]
    expected = ["psql append", "hand-written merge", *(n for n, _, _ in importer.FERRY_RUNS)]
    if baselines:
        expected += ["pandas to_sql", "sling"]
    assert names == expected
    for r in report["results"]:
        assert r["rows"] == 2000
        assert r["rows_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert (r["ratio_to_baseline"] is not None) == (r["mode"] == "Merge")
    assert report["results"][0]["ratio_to_psql"] == 1.0
    assert [f["name"] for f in report["rss_flatness"]] == [n for n, _, _ in importer.FERRY_RUNS]
