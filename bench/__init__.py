"""Benchmarks, run as modules from the repo root (`python -m bench.worker`,
`python -m bench.operator_scale`), so that they import `hack` and `bench.harness` by name.

`pandas_export.py` and `upload_only.py` are the exception: standalone programs that
bench/worker.py times with `python -P`, importing nothing of the harness.
"""
