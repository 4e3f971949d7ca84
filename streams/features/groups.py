"""Events grouped by account, and distinct (group, code) pairs: the sort every feature shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.features import _pairs


@dataclass
class Groups:
    """Events sorted by account: group g spans order[start[g]:start[g+1]]."""

    order: np.ndarray
    gid: np.ndarray  # group of each sorted event
    start: np.ndarray
    size: np.ndarray
    slots: np.ndarray  # slot of each group

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values[self.order], self.start) if len(self.start) else values[:0]

    def distinct(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (group, present code) pairs, as indices into the sorted events, and
        the count of distinct codes per group."""
        c = codes[self.order]
        first = unique_pairs(self.gid, c)
        first = first[c[first] != 0]
        return first, np.bincount(self.gid[first], minlength=len(self.start))


_MIX = np.uint64(0x9E3779B97F4A7C15)


def pair_key(gid: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """One 64-bit key per (group, code) pair.

    Codes are 64-bit hashes, so mixing the group into them gives a one-dimensional key that
    sorts far faster than a two-column unique; a collision would need a 64-bit coincidence.
    """
    with np.errstate(over="ignore"):
        return codes ^ ((gid.astype(np.uint64) + np.uint64(1)) * _MIX)


def unique_pairs(gid: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Index of the first occurrence of each distinct (group, code) pair."""
    return first_and_counts(pair_key(gid, codes))[0]


def first_and_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What `np.unique(keys, return_index=True, return_counts=True)` gives after the
    unique keys: the index of each distinct key's first occurrence and its count, in the
    order of the sorted keys.

    np.unique sorts every key, stably; the compiled pass (_pairs.c) counts them in a hash
    table and sorts only the distinct ones, 7 to 11 times faster on a closing window's few
    thousand keys, most of them repeats."""
    first, counts, _ = _distinct(keys, False)
    return first, counts


def first_counts_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`first_and_counts`, and the place of each key among the distinct ones: np.unique's
    return_inverse."""
    first, counts, inverse = _distinct(keys, True)
    return first, counts, inverse  # type: ignore[return-value]


def _distinct(keys: np.ndarray, inverse: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if keys.dtype.kind == "i":  # the same order as unsigned keys with the sign bit flipped
        keys = keys.astype(np.int64, copy=False).view(np.uint64) ^ np.uint64(1 << 63)
    keys = np.ascontiguousarray(keys, np.uint64)
    first = np.empty(len(keys), np.int64)
    counts = np.empty(len(keys), np.int64)
    inv = np.empty(len(keys), np.int64) if inverse else None
    m = _pairs.first_and_counts(keys, first, counts, *(() if inv is None else (inv,)))
    first, counts = first[:m].astype(np.intp, copy=False), counts[:m].astype(np.intp, copy=False)
    return first, counts, inv if inv is None else inv.astype(np.intp, copy=False)


def among(codes: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Whether each 64-bit code is among `known`: np.isin, with a hash table (_pairs.c)
    instead of a sort of both."""
    out = np.empty(len(codes), np.bool_)
    _pairs.member(
        np.ascontiguousarray(codes, np.uint64), np.ascontiguousarray(known, np.uint64), out
    )
    return out


def group_by_account(slots: np.ndarray, ts: np.ndarray) -> Groups:
    order = np.lexsort((ts, slots))
    s = slots[order]
    start = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1] if len(s) else np.empty(0, np.int64)
    size = np.diff(np.r_[start, len(s)])
    gid = np.repeat(np.arange(len(start)), size)
    return Groups(order, gid, start, size, s[start] if len(s) else s)
