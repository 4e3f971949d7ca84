"""Rows of a stage's own per-account arrays, keyed by account code.

A detector or fusion keeps per-account state in numpy arrays; this maps the 64-bit
account codes of a batch to rows of those arrays, reuses the rows of forgotten accounts,
and says when the arrays must grow. No stage indexes another stage's rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class AccountRows:
    def __init__(self) -> None:
        self.index: dict[int, int] = {}  # account code -> row
        self.free: list[int] = []
        self.size = 0  # rows handed out so far: arrays need at least this many

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, accounts: np.ndarray) -> np.ndarray:
        """The row of each account code, new accounts getting a free or a fresh row."""
        get = self.index.get
        out = [get(c, -1) for c in accounts.tolist()]
        if -1 in out:
            for j, c in enumerate(accounts.tolist()):
                if out[j] == -1:
                    r = get(c, -1)  # the same new account twice in one call
                    if r == -1:
                        r = self.free.pop() if self.free else self._fresh()
                        self.index[c] = r
                    out[j] = r
        return np.array(out, dtype=np.int64)

    def _fresh(self) -> int:
        self.size += 1
        return self.size - 1

    def forget(self, accounts: np.ndarray) -> np.ndarray:
        """Drop these accounts; returns the rows freed (to reset before reuse)."""
        freed = [self.index.pop(c) for c in accounts.tolist() if c in self.index]
        self.free.extend(freed)
        return np.array(freed, dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {"index": dict(self.index), "free": list(self.free), "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = dict(state["index"])
        self.free = list(state["free"])
        self.size = int(state["size"])
