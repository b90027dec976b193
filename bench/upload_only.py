"""Upload one local file to S3 the way ferry-worker does, and nothing else.

Usage: ``python -P bench/upload_only.py FILE KEY`` with ``BENCH_S3_ENDPOINT``,
``BENCH_S3_REGION``, ``BENCH_BUCKET``, ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` set (bench/worker.py runs it).

bench/worker.py times this on the table's CSV (what psql produced) to show the ceiling
the upload alone puts on any exporter on this machine: the worker's own multipart
writer (1 MiB writes, 8 MiB parts, 2 in flight, SHA-256 for the manifest, SigV4) and
the S3 server, without reading from PostgreSQL at all.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys

from ferry.worker.plan import Destination, Secrets
from ferry.worker.upload import MAX_IN_FLIGHT, MultipartWriter, Retrier, make_client

WRITE_BYTES = 1024 * 1024


def main(path: str, key: str) -> int:
    dest = Destination(bucket=os.environ["BENCH_BUCKET"], prefix="", path_style=True,
                       endpoint=os.environ["BENCH_S3_ENDPOINT"],
                       region=os.environ["BENCH_S3_REGION"])
    secrets = Secrets("", os.environ["AWS_ACCESS_KEY_ID"],
                      os.environ["AWS_SECRET_ACCESS_KEY"], None)
    client = make_client(dest, secrets)
    with concurrent.futures.ThreadPoolExecutor(MAX_IN_FLIGHT, "upload") as pool, \
            open(path, "rb") as source:
        writer = MultipartWriter(client, dest.bucket, key, "text/csv", pool, Retrier())
        while block := source.read(WRITE_BYTES):
            writer.write(block)
        stored = writer.close()
    print(f"{stored.key}: {stored.size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
