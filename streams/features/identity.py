"""Keeping two accounts apart when their codes collide.

Accounts are held by the 64-bit keyed code of their id (streams/contract/codes.py). With a secret
key a collision is a 2^-64 accident that nobody can arrange, but if one happened, two
identities would share one slot: one account's events, history and alerts would be
another's. So every event also carries `account_check`, a second code of its account id
under an independent key, and every slot remembers the check of the id it holds. An event
whose check differs from its slot's is another identity: it is moved to an alternative
code derived from both (the same in every process), which gets its own slot, and the
collision is counted. Collisions on both codes at once would need 128 key-dependent bits
to line up.

An account moved to an alternative code stays there while the first holder is held; if
the first holder is evicted first, the moved account's next window starts afresh under
its own code, and its old slot idles out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np


class AccountTable(Protocol):
    """What keeping identities apart needs of the account table (streams/features/state.py)."""

    index: dict[int, int]
    check: np.ndarray
    collisions: int

    def new_slot(self, account_code: int, account_id: str, check: int) -> int: ...


log = logging.getLogger("vigil.identity")
_M64 = (1 << 64) - 1
# Alternatives tried before giving up; each step is a fresh 64-bit value, so a second
# step is already a coincidence nobody can arrange.
MAX_STEPS = 16


def next_code(code: int, check: int) -> int:
    """The alternative code after `code` for the identity with `check` (odd, never 0)."""
    x = (code ^ (check * 0x9E3779B97F4A7C15)) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return (x ^ (x >> 31)) | 1


def keep_apart(
    table: AccountTable,
    codes: np.ndarray,
    checks: np.ndarray,
    names: Callable[[np.ndarray], list[str]],
    slots: np.ndarray,
) -> np.ndarray:
    """`slots` with every row whose check differs from its slot's moved to its own slot."""
    clash = table.check[slots] != checks
    if not clash.any():
        return slots
    slots = slots.copy()
    rows = np.flatnonzero(clash)
    groups: dict[tuple[int, int], list[int]] = {}
    for r, c, k in zip(rows.tolist(), codes[rows].tolist(), checks[rows].tolist(), strict=True):
        groups.setdefault((c, k), []).append(r)
    for (c, k), rs in groups.items():
        slots[rs] = _slot_apart(table, c, k, lambda rs=rs: names(np.array(rs[:1]))[0])
    return slots


def _slot_apart(table: AccountTable, code: int, check: int, name: Callable[[], str]) -> int:
    alt = code
    for _ in range(MAX_STEPS):
        alt = next_code(alt, check)
        s = table.index.get(alt)
        if s is None:
            s = table.new_slot(alt, name(), check)
            table.collisions += 1
            log.warning("account code collision: an account was moved to its own slot")
            return s
        if int(table.check[s]) == check:
            return s
    raise RuntimeError("account codes collide on every alternative; the check code too")
