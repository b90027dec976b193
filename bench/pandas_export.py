"""Baseline: the export script a user would write with pandas (read_sql in chunks).

Reads ``FERRY_SOURCE_DSN``, writes the table as one CSV or Parquet file to a local temp
file chunk by chunk, then uploads it with boto3's ``upload_file`` to ``BENCH_S3_ENDPOINT``
(region ``BENCH_S3_REGION``, keys ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``): a
standalone program, as a user's script would be, run by bench/worker.py with
``python -P``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", required=True)
    parser.add_argument("--format", choices=["csv", "parquet"], required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--chunksize", type=int, default=100_000)
    args = parser.parse_args()
    dsn = os.environ["FERRY_SOURCE_DSN"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sqlalchemy.create_engine(dsn)
    with tempfile.NamedTemporaryFile(suffix=f".{args.format}") as out, engine.connect() as raw:
        conn = raw.execution_options(stream_results=True)
        writer: pq.ParquetWriter | None = None
        first = True
        for chunk in pd.read_sql(f"SELECT * FROM {args.table}", conn, chunksize=args.chunksize):
            if args.format == "csv":
                chunk.to_csv(out, header=first, index=False)
            else:
                table = pa.Table.from_pandas(chunk, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(out.name, table.schema)
                writer.write_table(table.cast(writer.schema))
            first = False
        if writer is not None:
            writer.close()
        out.flush()
        s3 = boto3.client("s3", endpoint_url=os.environ["BENCH_S3_ENDPOINT"],
                          region_name=os.environ["BENCH_S3_REGION"])
        s3.upload_file(out.name, args.bucket, f"pandas/{args.table}.{args.format}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
