"""Strings crafted to collide under the unkeyed string hash Vigil used before issue 19.

`old_code` is that hash, re-implemented here from its definition. Every step of it can be
inverted, so for any target a 16-character printable string with that code is found by
trying first halves until the second half that the target forces is printable. Tests use
these strings to show that the keyed codes no longer collide where the old ones did.
"""

from __future__ import annotations

import numpy as np

M = (1 << 64) - 1
A, B = 0x4CF5AD432745937F, 0x9FB21C651E98DF25
F1, F2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53
SEED16 = 0x9E3779B97F4A7C15 ^ ((16 * 0x87C37B91114253D5) & M)
# The printable bytes a JSON string carries without escapes.
PRINTABLE = np.array([c for c in range(0x20, 0x7F) if c not in (0x22, 0x5C)], dtype=np.uint8)


def _fmix(h: int) -> int:
    h ^= h >> 33
    h = (h * F1) & M
    h ^= h >> 33
    h = (h * F2) & M
    return h ^ (h >> 33)


def _unfmix(h: int) -> int:
    h ^= h >> 33
    h = (h * pow(F2, -1, 1 << 64)) & M
    h ^= h >> 33
    h = (h * pow(F1, -1, 1 << 64)) & M
    return h ^ (h >> 33)


def old_code(s: bytes) -> int:
    """The pre-issue-19 code of s."""
    if not s:
        return 0
    h = 0x9E3779B97F4A7C15 ^ ((len(s) * 0x87C37B91114253D5) & M)
    i = 0
    while i + 8 <= len(s):
        w = (int.from_bytes(s[i : i + 8], "little") * A) & M
        w ^= w >> 31
        h = ((h ^ w) * B) & M
        h ^= h >> 29
        i += 8
    if i < len(s):
        w = (int.from_bytes(s[i:].ljust(8, b"\0"), "little") * A) & M
        w ^= w >> 31
        h = ((h ^ w) * B) & M
    return _fmix(h) | 1


def _u(x: int) -> np.uint64:
    return np.uint64(x & M)


def _second_halves(first: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For first halves (n x 8 bytes) and pre-mix targets: the second halves the targets
    force, and which of them are printable."""
    ainv, binv = _u(pow(A, -1, 1 << 64)), _u(pow(B, -1, 1 << 64))
    with np.errstate(over="ignore"):
        w = first.view("<u8").ravel() * _u(A)
        w ^= w >> np.uint64(31)
        h1 = (_u(SEED16) ^ w) * _u(B)
        h1 ^= h1 >> np.uint64(29)
        y = targets ^ (targets >> np.uint64(29)) ^ (targets >> np.uint64(58))
        w2 = (y * binv) ^ h1
        z = w2 ^ (w2 >> np.uint64(31)) ^ (w2 >> np.uint64(62))
        second = (z * ainv).view(np.uint8).reshape(-1, 8)
    return second, np.isin(second, PRINTABLE).all(axis=1)


def _unfmix_np(c: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = c ^ (c >> np.uint64(33))
        h = h * _u(pow(F2, -1, 1 << 64))
        h ^= h >> np.uint64(33)
        h = h * _u(pow(F1, -1, 1 << 64))
        return h ^ (h >> np.uint64(33))


def craft(code: int, rng: np.random.Generator, tries: int = 200_000) -> bytes:
    """A 16-byte printable string whose old code is `code` (odd)."""
    target = _u(_unfmix(code))
    while True:
        first = rng.choice(PRINTABLE, size=(tries, 8))
        second, ok = _second_halves(first, np.full(tries, target))
        if ok.any():
            j = int(np.flatnonzero(ok)[0])
            return first[j].tobytes() + second[j].tobytes()


def craft_clustered(n: int, rng: np.random.Generator, top: int = 0x5A5A) -> list[bytes]:
    """n distinct printable strings whose old codes all start their probe in the same slot
    of _seen.c's tables (a code's first slot is the top bits of code * 0x9E3779B97F4A7C15)."""
    cinv = _u(pow(0x9E3779B97F4A7C15, -1, 1 << 64))
    out: set[bytes] = set()
    while len(out) < n:
        lows = rng.integers(0, 1 << 40, size=500_000, dtype=np.uint64)
        with np.errstate(over="ignore"):
            codes = ((_u(top) << np.uint64(48)) | (lows << np.uint64(1)) | np.uint64(1)) * cinv
        first = rng.choice(PRINTABLE, size=(len(codes), 8))
        second, ok = _second_halves(first, _unfmix_np(codes))
        for j in np.flatnonzero(ok).tolist():
            out.add(first[j].tobytes() + second[j].tobytes())
    return sorted(out)[:n]
