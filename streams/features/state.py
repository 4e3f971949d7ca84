"""Per-account state as a struct of numpy arrays indexed by slot.

Memory per slot is fixed (662 bytes of arrays): small rings of recently seen IPs, /24
blocks, countries and user agents, an hour-of-day activity profile, and a few scalars; each
held account adds its id string and its index entries (streams/engine/budget.py counts them all).
Idle accounts are evicted after a TTL, the table never holds more than `max_accounts`, and
it never grows past `max_capacity` slots unless one window alone needs more.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from streams.features.groups import first_counts_inverse
from streams.features.identity import keep_apart

RINGS = {"ip": 32, "subnet": 16, "country": 8, "ua": 8, "model": 4}
_SCALARS = {
    "last_seen": np.float64,
    "first_seen": np.float64,
    "created": np.float64,
    "windows": np.int32,
    "plan": np.int8,
    "check": np.uint64,  # the account_check code of the id held (streams/features/identity.py)
    # Long-horizon history (streams/features/history.py): decayed sums and when they were last updated.
    "day_tokens": np.float64,
    "novelty": np.float64,
    "flag_hits": np.float64,  # decayed moderation-flagged or filtered requests, and all
    "flag_reqs": np.float64,
    "history_t": np.float64,
    "newc_code": np.uint64,  # the latest country new to an established account
    "newc_first": np.float64,
    "newc_windows": np.int32,  # windows since, with it beside an established country
    "newc_events": np.float64,  # decayed requests from it, and from anywhere
    "all_events": np.float64,
}


class AccountTable:
    def __init__(self, capacity: int = 1024) -> None:
        self.index: dict[int, int] = {}  # account code -> slot
        self.ids: list[str | None] = []  # account id of each slot
        self.codes: list[int] = []  # account code of each slot
        self.free: list[int] = []
        self.collisions = 0  # identities moved apart (streams/features/identity.py)
        self.capacity = 0
        self.max_capacity = 0  # 0: no limit; set by the engine from its byte budget
        self.id_bytes = 0  # bytes of the held accounts' id strings
        self.arrays: dict[str, np.ndarray] = {}
        self._grow(capacity)

    def _alloc(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        old = self.arrays.get(name)
        fill = np.nan if np.dtype(dtype).kind == "f" else 0
        new = np.full(shape, fill, dtype=dtype)
        if old is not None:
            new[: old.shape[0]] = old
        self.arrays[name] = new

    def _grow(self, capacity: int) -> None:
        for name, dtype in _SCALARS.items():
            self._alloc(name, (capacity,), dtype)
        for ring, k in RINGS.items():
            self._alloc(f"{ring}_ring", (capacity, k), np.uint64)
            self._alloc(f"{ring}_ptr", (capacity,), np.int32)
        self._alloc("hours", (capacity, 24), np.float32)
        self.ids.extend([None] * (capacity - self.capacity))
        self.codes.extend([0] * (capacity - self.capacity))
        self.free.extend(range(capacity - 1, self.capacity - 1, -1))
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self.index)

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    def codes_of(self, slots: np.ndarray) -> np.ndarray:
        return np.array([self.codes[s] for s in slots.tolist()], dtype=np.uint64)

    def slots_for(
        self,
        codes: np.ndarray,
        names: Callable[[np.ndarray], list[str]],
        checks: np.ndarray | None = None,
    ) -> np.ndarray:
        """Slots for these account codes, allocating slots for accounts not yet held.

        `names(rows)` gives the account ids of some rows; it is called only for new accounts.
        With `checks` (the account_check codes), rows of another identity than their code's
        slot holds get slots of their own (streams/features/identity.py).
        """
        first, _, inv = first_counts_inverse(codes)
        uniq = codes[first]
        get = self.index.get
        slots = [get(c, -1) for c in uniq.tolist()]
        if -1 in slots:
            new = [j for j, s in enumerate(slots) if s == -1]
            for j, name in zip(new, names(first[new]), strict=True):
                slots[j] = self._new_slot(int(uniq[j]), name)
            if checks is not None:
                self.check[[slots[j] for j in new]] = checks[first[new]]
        out = np.array(slots, dtype=np.int64)[inv]
        if checks is None:
            return out
        return keep_apart(self, codes, checks, names, out)

    def new_slot(self, account_code: int, account_id: str, check: int) -> int:
        s = self._new_slot(account_code, account_id)
        self.check[s] = check
        return s

    def _new_slot(self, account_code: int, account_id: str) -> int:
        if not self.free:
            grow = self.capacity * 2
            if self.capacity < self.max_capacity < grow:
                grow = self.max_capacity
            self._grow(grow)
        s = self.free.pop()
        self.index[account_code] = s
        self.ids[s] = account_id
        self.id_bytes += sys.getsizeof(account_id)
        self.codes[s] = account_code
        for name, dtype in _SCALARS.items():
            self.arrays[name][s] = np.nan if np.dtype(dtype).kind == "f" else 0
        for ring in RINGS:
            self.arrays[f"{ring}_ring"][s] = 0
            self.arrays[f"{ring}_ptr"][s] = 0
        self.arrays["hours"][s] = 0
        return s

    def evict(self, now: float, ttl: float, max_accounts: int) -> np.ndarray:
        """Free the slots of accounts idle longer than ttl, or the stalest past max_accounts;
        returns the evicted accounts' codes, for the stages that keep state of their own."""
        held = np.fromiter(self.index.values(), dtype=np.int64, count=len(self.index))
        if len(held) == 0:
            return np.empty(0, dtype=np.uint64)
        last = self.last_seen[held]
        stale = held[last < now - ttl]
        if len(held) - len(stale) > max_accounts:
            alive = held[last >= now - ttl]
            order = np.argsort(self.last_seen[alive])
            stale = np.concatenate([stale, alive[order[: len(alive) - max_accounts]]])
        codes = self.codes_of(stale)
        self.release(stale)
        return codes

    def release(self, slots: np.ndarray) -> None:
        """Forget the accounts in these slots; their slots are reused by new accounts."""
        for s in slots.tolist():
            del self.index[self.codes[s]]
            self.id_bytes -= sys.getsizeof(self.ids[s])
            self.ids[s] = None
            self.free.append(s)

    def ring_members(self, ring: str, slots: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Whether each code is already in its account's ring."""
        return (self.arrays[f"{ring}_ring"][slots] == codes[:, None]).any(axis=1)

    def ring_add(self, ring: str, slots: np.ndarray, codes: np.ndarray) -> None:
        """Append codes to their accounts' rings, oldest entries overwritten first."""
        if len(slots) == 0:
            return
        k = RINGS[ring]
        order = np.argsort(slots, kind="stable")
        s, c = slots[order], codes[order]
        start = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
        rank = np.arange(len(s)) - np.repeat(start, np.diff(np.r_[start, len(s)]))
        ptr = self.arrays[f"{ring}_ptr"]
        pos = (ptr[s] + rank) % k
        self.arrays[f"{ring}_ring"][s, pos] = c
        counts = np.diff(np.r_[start, len(s)])
        ptr[s[start]] = (ptr[s[start]] + counts) % k

    def state_dict(self) -> dict[str, Any]:
        ids = {s: self.ids[s] for s in self.index.values()}
        return {
            "index": dict(self.index),
            "ids": ids,
            "capacity": self.capacity,
            "arrays": self.arrays,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        limit = self.max_capacity
        self.__init__(state["capacity"])
        self.max_capacity = limit
        self.arrays = {k: v.copy() for k, v in state["arrays"].items()}
        self.index = dict(state["index"])
        for c, s in self.index.items():
            self.ids[s] = state["ids"][s]
            self.codes[s] = c
            self.id_bytes += sys.getsizeof(self.ids[s])
        used = set(self.index.values())
        self.free = [s for s in range(self.capacity - 1, -1, -1) if s not in used]
