"""Event ids an engine has already seen, for deduplication within a horizon.

A set of 64-bit id codes in a numpy array, checked and filled a batch at a time by
`streams.contract._seen` without the GIL. Tables stay at most half full, so a probe ends quickly;
they grow to four times what they hold when a batch would pass that.
"""

from __future__ import annotations

import numpy as np

from streams.contract import _seen

_MIN_SLOTS = 1024


class IdSet:
    __slots__ = ("count", "table")

    def __init__(self, ids: np.ndarray | None = None) -> None:
        self.table = np.zeros(_MIN_SLOTS, dtype=np.uint64)
        self.count = 0
        if ids is not None and len(ids):
            add_new(self, EMPTY, ids)

    def __len__(self) -> int:
        return self.count

    def ids(self) -> np.ndarray:
        """The ids held, in no particular order."""
        return self.table[self.table != 0]

    def reserve(self, extra: int) -> None:
        need = self.count + extra
        if 2 * need <= len(self.table):
            return
        slots = max(_MIN_SLOTS, 1 << (4 * need - 1).bit_length())
        old = self.ids()
        self.table = np.zeros(slots, dtype=np.uint64)
        self.count = 0
        if len(old):
            add_new(self, EMPTY, old)


EMPTY = IdSet()


def add_new(into: IdSet, prev: IdSet, ids: np.ndarray) -> np.ndarray:
    """Which of `ids` are new (in neither set, nor earlier in `ids`); those go `into`."""
    ids = np.ascontiguousarray(ids, dtype=np.uint64)
    into.reserve(len(ids))
    keep = np.empty(len(ids), dtype=bool)
    into.count += _seen.add_new(into.table, into.count, prev.table, ids, keep.view(np.uint8))
    return keep
