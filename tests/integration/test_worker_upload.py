"""The multipart writer against the real S3 server: what lands is what was written."""

from __future__ import annotations

import concurrent.futures
import hashlib
import random

import pytest

from ferry.worker.upload import MultipartWriter, Retrier
from tests.fixtures.services import S3Server

pytestmark = pytest.mark.integration

MIN_PART = 5 * 1024 * 1024
"""S3's smallest part but the last."""


@pytest.mark.parametrize("in_flight", [1, 2, 3])
def test_reused_part_buffers_never_mix_parts(s3: S3Server, s3_bucket: str,
                                             in_flight: int) -> None:
    """Writes of uneven sizes across 6 parts: every part buffer is reused while others
    upload, and the object is still byte for byte what was written, in order."""
    rng = random.Random(in_flight)
    data = rng.randbytes(5 * MIN_PART + 12345)
    client = s3.client()
    key = f"upload/reuse-{in_flight}.bin"
    with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
        writer = MultipartWriter(client, s3_bucket, key, "application/octet-stream", pool,
                                 Retrier(budget_s=10), part_size=MIN_PART,
                                 max_in_flight=in_flight)
        offset = 0
        while offset < len(data):
            size = rng.choice([1, 4093, 700_001, 3 * 1024 * 1024, MIN_PART + 17])
            writer.write(data[offset:offset + size])
            offset += size
        stored = writer.close()
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    head = client.head_object(Bucket=s3_bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-6")
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data


def test_a_file_smaller_than_a_part_is_one_put(s3: S3Server, s3_bucket: str) -> None:
    client = s3.client()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        writer = MultipartWriter(client, s3_bucket, "upload/small.csv", "text/csv", pool,
                                 Retrier(budget_s=10), part_size=MIN_PART)
        writer.write(b"id\n")
        writer.write(bytearray(b"1\n2\n"))
        stored = writer.close()
    assert stored.size == 7
    head = client.head_object(Bucket=s3_bucket, Key="upload/small.csv")
    assert "-" not in head["ETag"]
    body = client.get_object(Bucket=s3_bucket, Key="upload/small.csv")["Body"].read()
    assert body == b"id\n1\n2\n"
