"""Key ranges for a run split by ``source.keyColumn``: planned once, committed once.

A run split into N batches by key used to give batch i the rows whose key hashes to i,
so each of the N batches scanned the whole window. A batch whose plan carries
``keySplit`` instead reads one contiguous range of the key, ``[lo, hi)``, which an
index on the key (or the table's physical order, for keys that grow with it) lets the
database read on its own.

The ranges come from the data, so skewed keys still give batches of about equal row
counts: the quantiles ``1/N .. (N-1)/N`` of the key over the run's window and filters,
in a block sample of the table (``TABLESAMPLE SYSTEM``, :data:`SAMPLE_PAGES_PER_BATCH`
pages a batch; a full read of the key where the sample holds too few rows, e.g. a small
table or a narrow window). The operator holds no database credentials, so the worker plans them:

1. Read ``<run folder>/_keyranges.json``. If it is there (and the same ExportJob's), use it.
2. Otherwise sample, and write the plan only if absent: S3's ``If-None-Match: *``
   (MinIO honours it, as the batch manifests rely on), SFTP's rename that refuses an
   existing target. Exactly one such write creates the object; a batch that loses
   (412) reads the winner's plan and uses it. So every batch, and every retry of the run (which
   exports into the same folder), reads the same ranges, whatever each one's sample
   would have said.

The ranges cover every key: batch 0 is ``key < b1`` and the NULL keys, batch i is
``b_i <= key < b_i+1``, the last is ``key >= b_N-1``. Rows inserted after the plan was
made still land in exactly one batch. Where fewer distinct bounds exist than batches
(a key with few values), the batches past them are empty (``lo == hi``).

Where no range can be planned the plan records ``method: hash`` and the reason, and
every batch uses the hash partition (``hashtextextended(key) mod N``), which needs no
order: a ``query`` source (no statistics, no sample, and a range predicate on a
subquery need not reach an index), a view or foreign table (no ``TABLESAMPLE``) and a
key type without a b-tree order (``json``, ``point``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import ClientCursor, sql

from ferry.contract.plan import KeyPartition, KeyRange, KeySplit, Plan, Scalar
from ferry.worker import layout
from ferry.worker import sql as batch_sql
from ferry.worker.errors import ConfigError, TransientError
from ferry.worker.source import classify, open_session

log = logging.getLogger(__name__)

SAMPLE_PAGES_PER_BATCH = 400
"""Pages a sample reads per batch. ``TABLESAMPLE SYSTEM`` takes whole pages, and where the
key follows the table's order (a serial id) a page's rows are one point of the key, so
a batch's share is off by about 1/sqrt(its sampled pages): 5 % at 400. Measured at 3M
rows and 16 batches, a 100,000-row sample (1,230 pages, 77 a batch) gave batches of
0.79-1.19x the mean."""

MIN_SAMPLE_PAGES = 2_000
"""A table of at most this many pages (or of at most the pages the batches want) is
read whole: it costs about as little as a sample."""

MIN_SAMPLE_ROWS = 1_000
"""Fewer sampled rows than this (a narrow window of a big table): sample 10x more pages,
up to reading the whole window."""

PLAN_VERSION = 1
_INTEGER_TYPES = frozenset({20, 21, 23})
"""int8, int2, int4: bounds kept as JSON integers; every other key type's bounds are its
text form, which the database parses back into the column's type when it compares."""
_SHOWN_CHARACTERS = 60


@dataclasses.dataclass(frozen=True)
class KeyPlan:
    """The committed plan: ``bounds`` (strictly increasing) split ``column`` into
    ``count`` ranges, or ``method`` is ``hash`` and ``reason`` says why."""

    column: str
    count: int
    method: str
    bounds: tuple[Scalar, ...] = ()
    reason: str | None = None
    sampled_rows: int = 0
    sample: str = ""


# --------------------------------------------------------------------------- pure


def quantile_fractions(count: int) -> list[float]:
    """The cut points between ``count`` equal shares: 1/count .. (count-1)/count."""
    return [i / count for i in range(1, count)]


def bounds_from_quantiles(quantiles: Sequence[Scalar | None]) -> tuple[Scalar, ...]:
    """The distinct quantiles in their (ascending) order: a value that holds more than
    one share of the rows appears once, and cannot be split further by a range."""
    bounds: list[Scalar] = []
    for value in quantiles:
        if value is not None and (not bounds or bounds[-1] != value):
            bounds.append(value)
    return tuple(bounds)


def batch_range(column: str, bounds: Sequence[Scalar], index: int) -> KeyRange:
    """Batch ``index``'s range of ``column``; together the batches cover every key once.

    Batch 0 also takes the NULL keys. A batch past the last bound gets an empty range
    (``lo == hi``, which ferry.worker.sql reads as no rows)."""
    if index > len(bounds):
        last = bounds[-1] if bounds else ""
        return KeyRange(column, last, last, include_nulls=False)
    lo = bounds[index - 1] if index >= 1 else None
    hi = bounds[index] if index < len(bounds) else None
    return KeyRange(column, lo, hi, include_nulls=index == 0)


def _shown(value: Scalar) -> str:
    text = str(value)
    return text if len(text) <= _SHOWN_CHARACTERS else text[:_SHOWN_CHARACTERS - 3] + "..."


def describe_range(key_range: KeyRange) -> str:
    """The range as a batch's status shows it, e.g. ``100 <= id < 200``."""
    col, lo, hi = key_range.column, key_range.lo, key_range.hi
    if lo is not None and lo == hi:
        return f"no keys ({col}: the run's ranges end before this batch)"
    if lo is None and hi is None:
        text = f"every {col}"
    elif lo is None:
        text = f"{col} < {_shown(hi)}"  # type: ignore[arg-type]
    elif hi is None:
        text = f"{col} >= {_shown(lo)}"
    else:
        text = f"{_shown(lo)} <= {col} < {_shown(hi)}"
    return text + (f", and NULL {col}" if key_range.include_nulls else "")


def describe_partition(partition: KeyPartition, reason: str | None) -> str:
    """A hash partition as a batch's status shows it, with why no range was planned."""
    text = f"hash({partition.column}) mod {partition.count} = {partition.index}"
    return f"{text} (no key ranges: {reason})"[:250] if reason else text


def plan_document(plan: Plan, key_plan: KeyPlan, planned_by: str | None) -> dict[str, Any]:
    """``_keyranges.json``: the plan, and what it was made for and by."""
    return {
        "version": PLAN_VERSION, "job": plan.job, "jobUid": plan.job_uid, "run": plan.run,
        "column": key_plan.column, "count": key_plan.count, "method": key_plan.method,
        "bounds": list(key_plan.bounds), "reason": key_plan.reason,
        "sampledRows": key_plan.sampled_rows, "sample": key_plan.sample,
        "plannedBy": planned_by,
        "plannedAt": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
    }


def read_plan_document(document: dict[str, Any], key: str) -> KeyPlan:
    """A committed plan; a document this worker cannot read is a configuration error
    naming the object (deleting it lets the next batch plan again)."""
    bounds = document.get("bounds")
    method = document.get("method")
    column, count = document.get("column"), document.get("count")
    if (method not in ("ranges", "hash") or not isinstance(bounds, list)
            or not isinstance(column, str) or not isinstance(count, int)):
        raise ConfigError(f"{key}: not a key-range plan this worker can read (version "
                          f"{document.get('version')!r}); delete it to plan the run again")
    return KeyPlan(column, count, method, tuple(bounds), document.get("reason"),
                   int(document.get("sampledRows") or 0), str(document.get("sample") or ""))


def resolved(plan: Plan, key_plan: KeyPlan) -> tuple[Plan, str]:
    """The batch's plan with ``keySplit`` replaced by its range (or hash partition), and
    the text its status shows."""
    split = plan.key_split
    assert split is not None
    if key_plan.method == "hash":
        partition = KeyPartition(split.column, split.index, split.count)
        return (dataclasses.replace(plan, key_split=None, key_partition=partition),
                describe_partition(partition, key_plan.reason))
    key_range = batch_range(split.column, key_plan.bounds, split.index)
    return (dataclasses.replace(plan, key_split=None, key_range=key_range),
            describe_range(key_range))


# --------------------------------------------------------------------------- database


def _hash(split: KeySplit, reason: str) -> KeyPlan:
    return KeyPlan(split.column, split.count, "hash", reason=reason)


def _catalog(conn: psycopg.Connection[Any], plan: Plan) -> tuple[str, float] | None:
    """(relkind, relpages) of the source table; None where it does not resolve (the
    sample query then fails with the database's own message)."""
    source = plan.source
    assert source.table is not None
    name = (sql.Identifier(source.schema, source.table) if source.schema
            else sql.Identifier(source.table)).as_string(conn)
    row = conn.execute("SELECT c.relkind::text, c.relpages FROM pg_class c "
                       "WHERE c.oid = to_regclass(%s)", (name,)).fetchone()
    return (str(row[0]), float(row[1])) if row else None


def _sample(conn: psycopg.Connection[Any], plan: Plan, column: str, count: int,
            percent: float | None) -> tuple[list[str | None], int, int]:
    """(quantiles as text, rows sampled, key type oid) of ``column`` over the batch's
    window and filters, in a ``percent`` block sample (None: every row)."""
    bare = dataclasses.replace(plan, key_split=None, key_range=None, key_partition=None)
    where, params = batch_sql.predicate(bare)
    col = sql.Identifier(column)
    sample = (sql.SQL(" TABLESAMPLE SYSTEM (%s) REPEATABLE (0)") if percent is not None
              else sql.SQL(""))
    query = sql.SQL(
        "SELECT (percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {col}))::text[], "
        "count(*), min(pg_typeof({col})::oid) FROM {rel} AS {src}{sample} "
        "WHERE {where} AND {col} IS NOT NULL"
    ).format(col=col, rel=batch_sql.relation(plan.source), src=batch_sql.SRC,
             sample=sample, where=where)
    values: list[Any] = [quantile_fractions(count)]
    if percent is not None:
        values.append(percent)
    with ClientCursor(conn) as cur:
        cur.execute(query, [*values, *params])
        row = cur.fetchone()
    assert row is not None
    return list(row[0] or []), int(row[1]), int(row[2] or 0)


def sample_plan(conn: psycopg.Connection[Any], plan: Plan) -> KeyPlan:
    """Plan the ranges of ``plan.key_split`` from the data (or say why hash it is)."""
    split = plan.key_split
    assert split is not None
    if plan.source.table is None:
        return _hash(split, "source.query has no table to sample")
    try:
        catalog = _catalog(conn, plan)
        if catalog is not None and catalog[0] not in ("r", "m", "p"):
            kind = {"v": "a view", "f": "a foreign table"}.get(catalog[0], "not a table")
            return _hash(split, f"source.table is {kind}, which cannot be sampled")
        pages = catalog[1] if catalog else 0.0  # 0: never analyzed, or partitioned
        wanted = max(MIN_SAMPLE_PAGES, SAMPLE_PAGES_PER_BATCH * split.count)
        percent: float | None = (1.0 if pages <= 0 else None if pages <= wanted
                                 else 100.0 * wanted / pages)
        while True:
            conn.execute("SAVEPOINT ferry_sample")
            try:
                quantiles, rows, type_oid = _sample(conn, plan, split.column, split.count,
                                                    percent)
            except psycopg.errors.UndefinedFunction as exc:
                conn.execute("ROLLBACK TO SAVEPOINT ferry_sample")
                return _hash(split, f"{split.column} has no sort order "
                             f"({exc.diag.message_primary})")
            if percent is None or rows >= MIN_SAMPLE_ROWS or percent >= 100.0:
                break
            percent = None if percent * 10 >= 100.0 else percent * 10
    except psycopg.Error as exc:
        raise classify(exc) from None
    values: list[Scalar | None] = [
        None if q is None else int(q) if type_oid in _INTEGER_TYPES else q for q in quantiles]
    described = "every row" if percent is None else f"TABLESAMPLE SYSTEM ({percent:.4g}%)"
    return KeyPlan(split.column, split.count, "ranges", bounds_from_quantiles(values),
                   sampled_rows=rows, sample=described)


# --------------------------------------------------------------------------- commit


Read = Callable[[], tuple[bytes, str] | None]
"""The committed plan's bytes and version tag, or None where there is none."""
Create = Callable[[bytes, str | None], bool]
"""Write the plan if absent (tag None) or if still that version; False: another won."""


def _matches(plan: Plan, key_plan: KeyPlan, key: str) -> None:
    """A committed plan for another split of the run is refused: mixing two splits
    would lose or repeat rows."""
    split = plan.key_split
    assert split is not None
    if (key_plan.column, key_plan.count) != (split.column, split.count):
        raise ConfigError(
            f"{key} splits {key_plan.column!r} into {key_plan.count} batches, this batch "
            f"asks for {split.column!r} into {split.count}: the run's batches must share "
            "one split (run the job again for a new one)")


def _committed(plan: Plan, body: bytes, key: str) -> KeyPlan:
    key_plan = read_plan_document(json.loads(body), key)
    _matches(plan, key_plan, key)
    return key_plan


def committed_plan(read: Read, create: Create, dsn: str, plan: Plan,
                   planned_by: str | None, connect_timeout_s: int = 30) -> KeyPlan:
    """The run's key plan: the committed one, or this batch's, committed first-writer-wins."""
    key = layout.key_plan_key(plan)
    found = read()
    stale_tag: str | None = None
    if found is not None:
        if plan.job_uid is None or json.loads(found[0]).get("jobUid") == plan.job_uid:
            return _committed(plan, found[0], key)
        stale_tag = found[1]  # an earlier ExportJob of the same name planned this folder
    conn = open_session(dsn, plan, connect_timeout_s)
    try:
        ours = sample_plan(conn, plan)
    finally:
        conn.close()
    if not create(json.dumps(plan_document(plan, ours, planned_by)).encode(), stale_tag):
        winner = read()
        if winner is None:
            raise TransientError(f"{key} was deleted while this batch committed it")
        log.info("key plan: another batch committed it first; using theirs")
        return _committed(plan, winner[0], key)
    log.info("key plan committed: %s of %s into %d batches (%d distinct bounds, %s, %d rows "
             "sampled)", ours.method, ours.column, ours.count, len(ours.bounds), ours.sample,
             ours.sampled_rows)
    return ours
