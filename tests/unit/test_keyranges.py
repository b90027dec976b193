"""The pure part of key-range planning: quantiles to bounds, bounds to batch ranges."""

from __future__ import annotations

import pytest

from ferry.contract.plan import KeyRange
from ferry.worker.errors import ConfigError
from ferry.worker.keyranges import (
    KeyPlan,
    batch_range,
    bounds_from_quantiles,
    describe_range,
    quantile_fractions,
    read_plan_document,
)


def covering(bounds: tuple[int, ...], count: int, key: int | None) -> list[int]:
    """The batches whose range holds ``key`` (evaluated as the SQL predicate would)."""
    hits = []
    for index in range(count):
        kr = batch_range("k", bounds, index)
        if kr.lo is not None and kr.lo == kr.hi:
            continue
        if key is None:
            if kr.include_nulls:
                hits.append(index)
            continue
        if (kr.lo is None or key >= kr.lo) and (kr.hi is None or key < kr.hi):  # type: ignore[operator]
            hits.append(index)
    return hits


def test_fractions_cut_count_equal_shares() -> None:
    assert quantile_fractions(4) == [0.25, 0.5, 0.75]
    assert quantile_fractions(1) == []


def test_a_heavy_value_gives_one_bound_and_empty_batches_after_the_last() -> None:
    bounds = bounds_from_quantiles([7, 7, 7, 90, None])
    assert bounds == (7, 90)
    assert batch_range("k", bounds, 0) == KeyRange("k", None, 7, include_nulls=True)
    assert batch_range("k", bounds, 1) == KeyRange("k", 7, 90, include_nulls=False)
    assert batch_range("k", bounds, 2) == KeyRange("k", 90, None, include_nulls=False)
    assert batch_range("k", bounds, 3) == KeyRange("k", 90, 90, include_nulls=False)


@pytest.mark.parametrize("bounds", [(), (5,), (1, 2, 3), (-10, 0, 10, 10_000)])
def test_every_key_and_null_lands_in_exactly_one_batch(bounds: tuple[int, ...]) -> None:
    for key in [None, -11, -10, -1, 0, 1, 2, 3, 4, 5, 9, 10, 11, 10_000, 10**9]:
        assert len(covering(bounds, 6, key)) == 1, (bounds, key)


def test_no_keys_at_all_gives_batch_0_everything() -> None:
    assert batch_range("k", (), 0) == KeyRange("k", None, None, include_nulls=True)
    assert describe_range(batch_range("k", (), 0)) == "every k, and NULL k"
    assert describe_range(batch_range("k", (), 2)).startswith("no keys")


def test_status_text_of_ranges() -> None:
    assert describe_range(KeyRange("id", None, 100, True)) == "id < 100, and NULL id"
    assert describe_range(KeyRange("id", 100, 200, False)) == "100 <= id < 200"
    assert describe_range(KeyRange("id", "x" * 100, None, False)) == f"id >= {'x' * 57}..."


def test_an_unreadable_committed_plan_names_the_object() -> None:
    with pytest.raises(ConfigError, match=r"exports/j/j\.1/_keyranges\.json: not a key-range plan"):
        read_plan_document({"version": 9}, "exports/j/j.1/_keyranges.json")
    assert read_plan_document({"column": "k", "count": 2, "method": "ranges", "bounds": [3]},
                              "x") == KeyPlan("k", 2, "ranges", (3,))
