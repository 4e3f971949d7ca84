"""first_and_counts (compiled, _pairs.c) against np.unique, whose answer it replaces."""

from __future__ import annotations

import os

import numpy as np
import pytest

from streams.features import _pairs
from streams.features.groups import (
    among,
    first_and_counts,
    first_counts_inverse,
    pair_key,
    unique_pairs,
)


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


@pytest.mark.parametrize("n", [1, 640, 5_000, 70_000])
def test_keys_over_the_whole_range_and_negative_ones(n: int) -> None:
    """Spread keys (window pairs: hashes), and the sign bit set, which orders signed keys
    apart from unsigned ones."""
    rng = np.random.default_rng(n)
    pool = rng.integers(0, 2**64, max(n // 4, 1), dtype=np.uint64)
    keys = pool[rng.integers(0, len(pool), n)]
    for k in (keys, keys.view(np.int64), keys.view(np.int64)[::2]):
        first, counts = first_and_counts(k)
        want_first, want_counts = _unique(k)
        assert first.tolist() == want_first.tolist()
        assert counts.tolist() == want_counts.tolist()


def test_keys_crowding_one_bucket_are_sorted_too() -> None:
    """Keys that share their top bits land in one bucket of the compiled sort, which then
    sorts that bucket whole; keys spread over a few buckets, each by insertion."""
    rng = np.random.default_rng(3)
    for top in (0, 2**63):
        keys = np.uint64(top) + rng.integers(0, 5_000, 20_000, dtype=np.uint64)
        assert first_and_counts(keys)[0].tolist() == _unique(keys)[0].tolist()
    keys = (rng.integers(0, 4, 3_000, dtype=np.uint64) << np.uint64(62)) | rng.integers(
        0, 40, 3_000, dtype=np.uint64
    )
    assert first_and_counts(keys)[1].tolist() == _unique(keys)[1].tolist()


def test_seeded_fuzz_of_mixed_key_shapes() -> None:
    """Sizes from none to a few windows' worth, keys mixed from crowded, small and spread
    draws and repeated: every answer as np.unique's (under the sanitizers too, at the
    scale `make sanitize` sets)."""
    rng = np.random.default_rng(11)
    for _ in range(int(200 * float(os.environ.get("VIGIL_FUZZ_SCALE", "1")))):
        n = int(rng.integers(0, 3_000))
        parts = [
            rng.integers(0, 2**64, n, dtype=np.uint64),
            rng.integers(0, 50, n, dtype=np.uint64),
            np.uint64(2**64 - 2**20) + rng.integers(0, 2**20, n, dtype=np.uint64),
        ]
        keys = np.choose(rng.integers(0, 3, n), parts) if n else np.empty(0, np.uint64)
        keys = keys[rng.integers(0, max(n, 1), n)] if rng.random() < 0.5 else keys
        first, counts, inverse = first_counts_inverse(keys)
        _, want_first, want_inverse, want_counts = np.unique(
            keys, return_index=True, return_inverse=True, return_counts=True
        )
        assert first.tolist() == want_first.tolist()
        assert counts.tolist() == want_counts.tolist()
        assert inverse.tolist() == want_inverse.tolist()
        known = keys[rng.integers(0, max(n, 1), int(rng.integers(0, n + 2)))] if n else keys
        probe = np.concatenate([keys, rng.integers(0, 2**64, 50, dtype=np.uint64)])
        assert among(probe, known).tolist() == np.isin(probe, known).tolist()


def test_inverse_and_membership_of_small_cases() -> None:
    keys = np.array([9, 2, 9, 0, 2**64 - 1, 2], np.uint64)
    first, counts, inverse = first_counts_inverse(keys)
    assert keys[first].tolist() == [0, 2, 9, 2**64 - 1]
    assert (first.tolist(), counts.tolist()) == ([3, 1, 0, 4], [1, 2, 2, 1])
    assert inverse.tolist() == [2, 1, 2, 0, 3, 1]
    assert among(keys, np.array([2, 0], np.uint64)).tolist() == [0, 1, 0, 1, 0, 1]
    assert among(keys, np.empty(0, np.uint64)).tolist() == [False] * 6
    assert among(np.empty(0, np.uint64), keys).tolist() == []


def test_buffers_of_the_wrong_size_are_refused() -> None:
    keys = np.arange(10, dtype=np.uint64)
    out = np.empty(10, np.int64)
    with pytest.raises(ValueError, match="room"):
        _pairs.first_and_counts(keys, out[:9], out)
    with pytest.raises(ValueError, match="8 bytes"):
        _pairs.first_and_counts(keys.tobytes()[:-1], out, out.copy())
    with pytest.raises(TypeError):
        _pairs.first_and_counts(keys, bytes(80), out)  # read-only
    with pytest.raises(ValueError, match="room"):
        _pairs.first_and_counts(keys, out, out.copy(), out[:9])
    with pytest.raises(ValueError, match="one byte a key"):
        _pairs.member(keys, keys, bytearray(9))


def test_unique_pairs_keeps_each_pairs_earliest_event() -> None:
    gid = np.array([0, 0, 0, 1, 1, 1, 1])
    codes = np.array([5, 9, 5, 5, 5, 0, 9], dtype=np.uint64)
    first = unique_pairs(gid, codes)
    pairs = sorted((int(gid[i]), int(codes[i]), int(i)) for i in first)
    assert pairs == [(0, 5, 0), (0, 9, 1), (1, 0, 5), (1, 5, 3), (1, 9, 6)]
    assert first.tolist() == np.unique(pair_key(gid, codes), return_index=True)[1].tolist()
