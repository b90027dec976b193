"""Baseline: the import script a user would write with pandas (read_csv in chunks, to_sql).

Downloads ``--key`` from ``--bucket`` with boto3 (``BENCH_S3_ENDPOINT``,
``BENCH_S3_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``) to a temp file,
reads it with ``read_csv`` in chunks (timestamps parsed, PostgreSQL's ``t``/``f`` as
booleans, the JSON column decoded so that it goes in as jsonb) and appends each chunk
with ``DataFrame.to_sql`` through SQLAlchemy and psycopg to ``--table`` of ``BENCH_DSN``.
A standalone program, as a user's script would be, run by bench/importer.py with
``python -P``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import boto3
import pandas as pd
import sqlalchemy
from sqlalchemy.dialects.postgresql import JSONB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--chunksize", type=int, default=100_000)
    args = parser.parse_args()
    dsn = os.environ["BENCH_DSN"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sqlalchemy.create_engine(dsn)
    s3 = boto3.client("s3", endpoint_url=os.environ["BENCH_S3_ENDPOINT"],
                      region_name=os.environ["BENCH_S3_REGION"])
    with tempfile.NamedTemporaryFile(suffix=".csv") as local:
        s3.download_file(args.bucket, args.key, local.name)
        chunks = pd.read_csv(local.name, chunksize=args.chunksize,
                             parse_dates=["created_at", "updated_at"],
                             true_values=["t"], false_values=["f"])
        with engine.begin() as conn:
            for chunk in chunks:
                chunk["payload"] = chunk["payload"].map(
                    lambda v: json.loads(v) if isinstance(v, str) else None)
                chunk.to_sql(args.table, conn, if_exists="append", index=False,
                             dtype={"payload": JSONB})
    return 0


if __name__ == "__main__":
    sys.exit(main())
