"""File splitting: size limit honoured, records never cut, every file well-formed."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from ferry.worker.codecs import Codec, make_codec
from ferry.worker.errors import DataError, WorkerError
from ferry.worker.parquet import ParquetSplitter
from ferry.worker.splitting import Chunk, StoredObject, TextSplitter


class MemorySink:
    """A Sink that keeps the bytes (the S3 writer's stand-in)."""

    def __init__(self, store: dict[str, bytes], key: str) -> None:
        self._store, self._key, self._buf = store, key, bytearray()
        self.aborted = False

    def write(self, data: bytes) -> None:
        self._buf += data

    def close(self) -> StoredObject:
        self._store[self._key] = bytes(self._buf)
        return StoredObject(self._key, len(self._buf), hashlib.sha256(self._buf).hexdigest(), "e")

    def abort(self) -> None:
        self.aborted = True


def opener(store: dict[str, bytes]) -> Callable[[int], MemorySink]:
    return lambda n: MemorySink(store, f"f-{n}")


DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "none": lambda b: b,
    "gzip": gzip.decompress,
    "zstd": lambda b: zstandard.ZstdDecompressor().stream_reader(io.BytesIO(b)).read(),
}


def rows(n: int) -> list[bytes]:
    return [f"{i},value {i} {'x' * (i % 37)}\n".encode() for i in range(n)]


def codec_factory(compression: str) -> Callable[[], Codec]:
    return lambda: make_codec(compression, 1 if compression == "gzip" else 3)


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("limit", [1024, 5000, None])
def test_text_files_respect_limit_and_keep_records(compression: str, limit: int | None) -> None:
    store: dict[str, bytes] = {}
    splitter = TextSplitter(opener(store), limit, codec_factory(compression), b"id,v\n")
    data = rows(3000)
    for start in range(0, len(data), 700):
        splitter.write_chunk(Chunk.of(data[start:start + 700]))
    files = splitter.finish()
    assert [f.stored.key for f in files] == [f"f-{i}" for i in range(len(files))]
    seen: list[bytes] = []
    for f in files:
        raw = store[f.stored.key]
        if limit is not None:
            assert len(raw) <= limit
        text = DECOMPRESS[compression](raw)
        assert text.startswith(b"id,v\n")
        body = text[len(b"id,v\n"):].splitlines(keepends=True)
        assert len(body) == f.records
        seen.extend(body)
    assert seen == data
    if limit is None:
        assert len(files) == 1
    elif compression == "none":
        assert len(files) > 1
        # no file ends far below the limit except the last one
        assert all(f.stored.size > limit - 120 for f in files[:-1])


COPY_SHAPED = [  # as COPY's CSV writes them: quoted when holding a quote or a line break
    b"1,plain\n", b'2,"two\nlines"\n', b'3,"say ""hi""\n, ok"\n', b'4,""\n', b"5,\n",
    b'6,"a\r\nb","""\n"""\n', b'7,"\n\n"\n', b'8,""""\n',
]


def test_record_ends_are_found_outside_quotes() -> None:
    chunk = Chunk.of(COPY_SHAPED * 3)
    lengths = [len(r) for r in COPY_SHAPED * 3]
    assert list(chunk.ends) == [sum(lengths[:i + 1]) for i in range(len(lengths))]
    jsonl = [b'{"a":"x\\ny"}\n', b'{"b":"\\"\\n"}\n', b"{}\n"]
    assert list(Chunk.of(jsonl, quote=b"\x01").ends) == [13, 26, 29]


def test_record_ends_that_disagree_with_the_count_are_an_internal_error() -> None:
    """Exit 1, retried like a transient failure: never a file cut inside a record."""
    with pytest.raises(WorkerError, match="found 0 record ends where COPY sent 1 records") as err:
        _ = Chunk(bytearray(b'1,"never closed\n'), 1).ends
    assert err.value.kind == "internal"


@pytest.mark.parametrize("limit", [40, 64, 200])
def test_quoted_line_breaks_are_never_cut(limit: int) -> None:
    store: dict[str, bytes] = {}
    splitter = TextSplitter(opener(store), limit, codec_factory("none"), b"id,v\n")
    for _ in range(5):
        splitter.write_chunk(Chunk.of(COPY_SHAPED))
    files = splitter.finish()
    assert len(files) > 1
    seen = b""
    for f in files:
        raw = store[f.stored.key]
        assert len(raw) <= limit and raw.startswith(b"id,v\n")
        assert len(list(csv.reader(io.StringIO(raw.decode(), newline="")))) == 1 + f.records
        seen += raw[len(b"id,v\n"):]
    assert seen == b"".join(COPY_SHAPED * 5)


def test_empty_batch_gives_one_valid_file() -> None:
    store: dict[str, bytes] = {}
    files = TextSplitter(opener(store), 2048, codec_factory("gzip"), b"a,b\n").finish()
    assert len(files) == 1 and files[0].records == 0
    assert gzip.decompress(store["f-0"]) == b"a,b\n"
    store.clear()
    files = TextSplitter(opener(store), None, codec_factory("none")).finish()
    assert store == {"f-0": b""}


def test_record_larger_than_limit_is_a_data_error() -> None:
    splitter = TextSplitter(opener({}), 1024, codec_factory("none"), b"h\n")
    splitter.write_chunk(Chunk.of([b"small\n"]))
    with pytest.raises(DataError, match="record 2 of this batch is 2001 bytes"):
        splitter.write_chunk(Chunk.of([b"y" * 2000 + b"\n"]))


def test_parquet_files_respect_limit_and_are_complete() -> None:
    store: dict[str, bytes] = {}
    schema = pa.schema([("id", pa.int64()), ("s", pa.string()), ("d", pa.decimal128(12, 2))])
    splitter = ParquetSplitter(opener(store), 64 * 1024, schema, "zstd", 3,
                               row_group_bytes=100_000)
    total = 20_000
    for start in range(0, total, 2500):
        ids = list(range(start, start + 2500))
        splitter.write_table(pa.table({
            "id": pa.array(ids, pa.int64()),
            "s": pa.array([f"row {i} " + "z" * (i % 50) for i in ids]),
            "d": pa.array([None if i % 9 == 0 else i * 1 for i in ids], pa.decimal128(12, 2)),
        }, schema=schema))
    files = splitter.finish()
    assert len(files) > 1
    back = []
    for f in files:
        raw = store[f.stored.key]
        assert len(raw) <= 64 * 1024
        table = pq.read_table(io.BytesIO(raw))
        assert table.schema == schema
        assert table.num_rows == f.records
        back.extend(table.column("id").to_pylist())
    assert back == list(range(total))


def test_parquet_empty_batch_has_schema() -> None:
    store: dict[str, bytes] = {}
    schema = pa.schema([("id", pa.int32())])
    files = ParquetSplitter(opener(store), None, schema, "none", 0).finish()
    assert len(files) == 1
    table = pq.read_table(io.BytesIO(store["f-0"]))
    assert table.num_rows == 0 and table.schema == schema
