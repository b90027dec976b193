"""The local development harness: cluster, services, ports, certificates, the demo.

A package so that the tests and the benchmarks import it by name (`from hack import
services`) with the repo root on the path: pytest's `pythonpath`, or `python -m
hack.cluster up` run from the repo root. `nodeagent.py` is the exception, started as a
script by `cluster.py`.
"""
