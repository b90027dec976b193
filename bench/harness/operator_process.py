"""`ferry-operator -n <namespace>` as a child process of the benchmark, sampled by psutil.

The operator runs as it would in a cluster (its own process, its defaults unless
`--workers`), so that its RSS and CPU are its own and not the benchmark's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import psutil

from bench.harness import cluster
from bench.harness.exportjobs import WORKER

LOGS = Path(__file__).resolve().parents[2] / ".cache" / "bench-operator"
OPERATOR = Path(sys.executable).parent / "ferry-operator"
STOP_GRACE = 30.0
"""Seconds from SIGTERM to SIGKILL: the operator gives held Events 5 s on shutdown."""


class Sample(NamedTuple):
    at: float
    rss_mb: float
    cpu_percent: float
    """Of one core, over the interval before `at`."""


class Sampler(threading.Thread):
    """RSS and CPU of one process every `interval` seconds (CPU over that interval).

    It stops at the first psutil error (the process is gone): a figure it repeats is
    then its last one, which is why the soak also reads RSS directly."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[Sample] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        self.process.cpu_percent(None)
        while not self.stopped.wait(self.interval):
            try:
                with self.process.oneshot():
                    rss = self.process.memory_info().rss / 2**20
                    cpu = self.process.cpu_percent(None)
            except psutil.Error:
                return
            self.samples.append(Sample(time.time(), rss, cpu))

    def window(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


class OperatorProcess:
    """The operator for one namespace, logging to LOGS/<name>.log; a context manager that
    stops it (SIGTERM, SIGKILL after STOP_GRACE) and its sampler on exit."""

    def __init__(self, namespace: str, name: str, port: int, workers: int) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.logfile = LOGS / f"{name}.log"
        self.port = port
        env = {**os.environ, "KUBECONFIG": cluster.kubeconfig(),
               "FERRY_WORKER_IMAGE": WORKER.image,
               "FERRY_WORKER_SERVICE_ACCOUNT": WORKER.service_account}
        if workers:
            env["FERRY_RECONCILE_WORKERS"] = str(workers)
        with self.logfile.open("w") as out:
            self.process = subprocess.Popen(
                [str(OPERATOR), "-n", namespace, "--metrics-port", str(port)],
                stdout=out, stderr=subprocess.STDOUT, env=env)
        self.sampler = Sampler(self.process.pid)
        self.sampler.start()

    def __enter__(self) -> OperatorProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def check(self) -> None:
        """Raise SystemExit if the operator has exited: nothing after that is a measurement."""
        if self.process.poll() is not None:
            raise SystemExit(f"operator exited ({self.process.returncode}): see {self.logfile}")

    def rss_mb(self) -> float:
        """RSS read now (not the sampler's last value)."""
        rss: int = psutil.Process(self.process.pid).memory_info().rss
        return round(rss / 2**20, 1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.sampler.stopped.set()

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace")
