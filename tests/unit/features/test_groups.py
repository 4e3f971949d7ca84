"""first_and_counts against np.unique, whose answer it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from streams.features.groups import first_and_counts, pair_key, unique_pairs


def _unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    return first, counts


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1_000, 50_000])
@pytest.mark.parametrize("distinct", [1, 3, 5_000, 2**62])
def test_first_occurrences_and_counts_match_np_unique(n: int, distinct: int) -> None:
    rng = np.random.default_rng(n + distinct % 1_000)
    for dtype in (np.uint64, np.int64):
        keys = rng.integers(0, distinct, n, dtype=dtype)
        first, counts = first_and_counts(keys)
        want_first, want_counts = _unique(keys)
        assert first.tolist() == want_first.tolist()
        assert counts.tolist() == want_counts.tolist()


def test_unique_pairs_keeps_each_pairs_earliest_event() -> None:
    gid = np.array([0, 0, 0, 1, 1, 1, 1])
    codes = np.array([5, 9, 5, 5, 5, 0, 9], dtype=np.uint64)
    first = unique_pairs(gid, codes)
    pairs = sorted((int(gid[i]), int(codes[i]), int(i)) for i in first)
    assert pairs == [(0, 5, 0), (0, 9, 1), (1, 0, 5), (1, 5, 3), (1, 9, 6)]
    assert first.tolist() == np.unique(pair_key(gid, codes), return_index=True)[1].tolist()
