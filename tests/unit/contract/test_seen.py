"""The event-id set behind deduplication, against Python's own set."""

from __future__ import annotations

import numpy as np
import pytest

from streams.contract import _seen
from streams.contract.seen import EMPTY, IdSet, add_new
from tests.gil_util import assert_lets_threads_run


def reference(batches: list[np.ndarray], prev: set[int]) -> tuple[list[list[bool]], set[int]]:
    cur: set[int] = set()
    keeps = []
    for ids in batches:
        keep = []
        for i in ids.tolist():
            new = i not in cur and i not in prev
            keep.append(new)
            if new:  # an id of the last generation stays there
                cur.add(i)
        keeps.append(keep)
    return keeps, cur


def test_matches_a_python_set_through_growth() -> None:
    rng = np.random.default_rng(3)
    pool = rng.integers(1, 2**64 - 1, size=30_000, dtype=np.uint64) | np.uint64(1)
    prev_ids = pool[:5_000]
    batches = [rng.choice(pool, size=int(rng.integers(0, 4_000))) for _ in range(40)]
    prev, cur = IdSet(prev_ids), IdSet()
    want_keeps, want_cur = reference(batches, set(prev_ids.tolist()))
    for ids, want in zip(batches, want_keeps, strict=True):
        assert add_new(cur, prev, ids).tolist() == want
    assert len(cur.table) > 1024, "the table should have grown"
    assert set(cur.ids().tolist()) == want_cur and len(cur) == len(want_cur)
    assert 2 * len(cur) <= len(cur.table)


def test_round_trips_through_its_ids() -> None:
    ids = np.arange(1, 20_001, 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    s = IdSet(np.concatenate([ids, ids[:100]]))  # repeats are held once
    again = IdSet(s.ids())
    assert len(again) == len(s) == len(ids)
    assert not add_new(again, EMPTY, ids).any()


def test_keeps_what_is_not_an_id_code() -> None:
    # Codes are never 0; a 0 is kept rather than dropped as a duplicate of nothing.
    assert add_new(IdSet(), EMPTY, np.array([0, 0, 5, 5], dtype=np.uint64)).tolist() == [
        True,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("table", "count", "prev", "ids", "keep", "message"),
    [
        (np.zeros(12, np.uint64), 0, np.zeros(8, np.uint64), np.ones(1, np.uint64),
         np.zeros(1, np.uint8), "power-of-two"),
        (np.zeros(8, np.uint64), 0, np.zeros(1, np.uint64), np.ones(1, np.uint64),
         np.zeros(1, np.uint8), "power-of-two"),
        (np.zeros(8, np.uint64), 0, np.zeros(8, np.uint64), np.ones(2, np.uint64),
         np.zeros(1, np.uint8), "one byte per id"),
        (np.zeros(8, np.uint64), 6, np.zeros(8, np.uint64), np.ones(2, np.uint64),
         np.zeros(2, np.uint8), "too small"),
    ],
)  # fmt: skip
def test_rejects_bad_tables(table, count, prev, ids, keep, message) -> None:
    with pytest.raises(ValueError, match=message):
        _seen.add_new(table, count, prev, ids, keep)


def test_lets_other_threads_run() -> None:
    """A batch is checked without the GIL; a counting thread advances meanwhile."""
    ids = np.random.default_rng(1).integers(1, 2**63, size=1_500_000, dtype=np.uint64)
    s = IdSet()
    s.reserve(len(ids))
    assert_lets_threads_run(lambda: add_new(s, EMPTY, ids))
