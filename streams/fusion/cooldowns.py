"""Fusion's own state: when each account last alerted, and how severely.

An ongoing incident re-scores every window; it alerts again within the cooldown only if
its severity rises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streams.core.rows import AccountRows


class Cooldowns:
    def __init__(self) -> None:
        self.rows = AccountRows()
        self.last_alert = np.full(0, np.nan)  # epoch seconds, per row
        self.last_severity = np.zeros(0, dtype=np.int8)  # rank in SEVERITIES

    def _ensure(self) -> None:
        have = len(self.last_alert)
        if self.rows.size > have:
            grow = max(self.rows.size, 2 * have, 64) - have
            self.last_alert = np.r_[self.last_alert, np.full(grow, np.nan)]
            self.last_severity = np.r_[self.last_severity, np.zeros(grow, dtype=np.int8)]

    def suppresses(self, account: int, ts: float, rank: int, cooldown_s: float) -> bool:
        """Whether an alert of this severity rank at `ts` repeats one still cooling down."""
        r = self.rows.index.get(account)
        if r is None:
            return False
        last = self.last_alert[r]
        return bool(not np.isnan(last) and ts - last < cooldown_s and rank <= self.last_severity[r])

    def record(self, account: int, ts: float, rank: int) -> None:
        r = int(self.rows.rows(np.array([account], dtype=np.uint64))[0])
        self._ensure()
        self.last_alert[r], self.last_severity[r] = ts, rank

    def forget(self, accounts: np.ndarray) -> None:
        freed = self.rows.forget(accounts)
        self.last_alert[freed] = np.nan
        self.last_severity[freed] = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows.state_dict(),
            "last_alert": self.last_alert.copy(),
            "last_severity": self.last_severity.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows.load_state_dict(state["rows"])
        self.last_alert = state["last_alert"].copy()
        self.last_severity = state["last_severity"].copy()
