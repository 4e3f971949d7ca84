"""The engine's memory: accounts evicted by idleness or the byte budget, the detectors'
per-account arrays grown in step with the account table, and open windows closed early
when their events pass the budget's share (streams/engine/budget.py says what counts)."""

from __future__ import annotations

from typing import Any

import numpy as np

from streams.contract.events import EventBatch
from streams.engine.budget import Usage, array_bytes, campaign_members, measure, slots_to_evict
from streams.engine.build import Output


class EngineMemory:
    """Mixed into Engine, which provides the fields and `_close_until`."""

    cfg: Any
    metrics: Any
    table: Any
    detectors: dict[str, Any]
    cooldowns: Any
    campaign: Any
    budget: Any
    pending: list[EventBatch]
    campaign_exchange: bool
    windows_forced: int
    budget_evicted: int
    _open_bytes: int
    _detector_bytes: int
    _reserved: int
    _seen_ids: Any
    _campaign_members: int
    _forget_later: list[np.ndarray]

    def _bound_open_windows(self) -> Output:
        """Close the oldest open windows early while their events pass the budget's share.

        Events that arrive for them later are dead-lettered as `too_late`: counted, never
        held without bound."""
        out = Output()
        w = self.cfg.engine.window_s
        while self.pending and self.budget.open_windows_over(self._open_bytes):
            oldest = min(float(b.ts.min()) for b in self.pending)
            self.windows_forced += 1
            self.metrics.budget_windows_forced.inc()
            out.extend(self._close_until(np.floor(oldest / w) * w + w))  # type: ignore[attr-defined]
        return out

    def _hourly_upkeep(self, now: float) -> None:
        """After every 12th window is scored: idle accounts evicted, and the campaign
        indexes' members and the detectors' arrays counted again (walks over every
        account, key and detector, so hourly)."""
        self._forget(self._upkeep_at_begin(now))
        self._detector_bytes = array_bytes(self.detectors)

    def _upkeep_at_begin(self, now: float) -> np.ndarray:
        """The hourly upkeep under the campaign exchange, at the begin of every 12th
        window (streams/engine/exchange.py says why it evicts the same accounts): returns
        them, for the detectors and fusion to forget once that window is scored. The
        detectors' arrays are not counted again."""
        self._campaign_members = campaign_members(self.campaign)
        return self._evict(now)

    def _evict(self, now: float) -> np.ndarray:
        e = self.cfg.engine
        gone = self.table.evict(now, e.account_ttl_s, e.max_accounts)
        self.metrics.accounts_evicted.inc(len(gone))
        return gone

    def _reserve_slots(self) -> None:
        """Per-account arrays of the detectors grow in step with the table, never ahead of
        it, so that the budget's account limit holds for them too (and the cost of an
        account is known from the first window on)."""
        if self._reserved < self.table.capacity:
            before = array_bytes(self.detectors) if self.campaign_exchange else 0
            for det in self.detectors.values():
                det.reserve(self.table.capacity)
            self._reserved = self.table.capacity
            if self.campaign_exchange:
                # Only what the reservation added: with windows held, whether they are
                # scored yet must not change what later windows read.
                self._detector_bytes += array_bytes(self.detectors) - before
            else:
                self._detector_bytes = array_bytes(self.detectors)

    def _forget(self, accounts: np.ndarray) -> None:
        """Every stage with state of its own drops the accounts the table let go."""
        if not len(accounts):
            return
        for det in self.detectors.values():
            det.forget(accounts)
        self.cooldowns.forget(accounts)

    def usage(self) -> Usage:
        """Bytes of each part of the state now (streams/engine/budget.py says what counts)."""
        return measure(
            self.table,
            self._detector_bytes,
            self._open_bytes,
            self._seen_ids,
            self.campaign,
            self._campaign_members,
        )

    def _make_room(self, ev: EventBatch) -> None:
        """Evict the idlest accounts not in this window until its new accounts fit the
        budget; caps the table's growth at what the budget allows."""
        freed = slots_to_evict(self.budget, self.table, ev.account_id, self.usage())
        if len(freed):
            gone = self.table.codes_of(freed)
            self.table.release(freed)
            if self.campaign_exchange:  # after the windows held before this one are scored
                self._forget_later.append(gone)
            else:
                self._forget(gone)
            self.budget_evicted += len(freed)
            self.metrics.budget_evicted.inc(len(freed))
