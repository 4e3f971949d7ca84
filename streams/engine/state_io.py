"""An engine's state as a checkpoint holds it, and the journal of open events.

A mixin of `Engine` (streams/engine/engine.py): these methods read and set its fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streams.contract.codes import CODES_VERSION
from streams.contract.events import EventBatch, decode_lines, empty_batch
from streams.engine.budget import array_bytes, batch_bytes
from streams.features.window import FEATURES

# 2: fusion keeps its cooldowns, detectors key their state by account code.
STATE_FORMAT = 2


class EngineState:
    exchange_state: Any  # streams/engine/exchange.py
    load_exchange_state: Any
    restore_window_events: Any
    awaiting_journal: bool
    journal_floor: float
    cfg: Any
    campaign_exchange: bool
    closed_until: float
    journal_pending: bool
    key_fingerprint: str
    pending: list
    detectors: dict[str, Any]
    _detector_bytes: int  # streams/engine/memory.py
    _seen_state: Any  # streams/engine/dedup.py
    _load_seen: Any

    def take_journal(self) -> tuple[list[bytes], float]:
        """Raw lines of the events buffered since the last call that are not yet scored:
        those of open windows, and of closed ones still held for campaign figures.

        With `state_dict(pending=False)` and `restore_pending`, a checkpoint stores each
        buffered event once instead of every open event at every checkpoint: a live stream
        keeps minutes of events in open windows, and re-encoding them every few seconds
        would cost more than processing them.
        """
        journal, self._journal = self._journal, []
        out: list[bytes] = []
        newest = -np.inf
        floor = self.journal_floor
        for raw, ts in journal:
            # Events of windows scored since are in the state already.
            unscored = ts >= floor
            out += raw[unscored].tolist()
            if unscored.any():
                newest = max(newest, float(ts[unscored].max()))
        return out, newest

    def restore_pending(self, lines: list[bytes]) -> None:
        """Buffers again the open events among `lines` (journals since the checkpoint's
        oldest open event), after `load_state_dict(...)` of a state without them; the
        windows held for campaign figures get their events back from them too."""
        if not lines and not self.awaiting_journal:
            return
        e = self.cfg.engine
        batch, _ = decode_lines(lines, np.inf, e.max_future_s, e.max_line_bytes)
        self.restore_window_events(batch)
        batch = batch.take(np.flatnonzero(batch.ts >= self.closed_until))
        self.pending = [EventBatch.concat([*self.pending, batch])] if len(batch) else self.pending
        self._open_bytes = batch_bytes(self.pending[0]) if self.pending else 0

    def state_dict(self, pending: bool = True) -> dict[str, Any]:
        """`pending=False`: without the events of open windows, nor those of windows held
        for campaign figures; `take_journal` keeps all of them, for `restore_pending`."""
        state = self._state_dict(pending)
        if self.campaign_exchange:  # windows held for campaign figures: exchange.py
            state["exchange"] = self.exchange_state(events=pending)
        return state

    def _state_dict(self, pending: bool) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "features": FEATURES,
            "codes": CODES_VERSION,
            "hash_key": self.key_fingerprint,
            "table": self.table.state_dict(),
            "campaign": self.campaign.state_dict(),
            "detectors": {k: d.state_dict() for k, d in self.detectors.items()},
            "fusion": self.cooldowns.state_dict(),
            "pending": (
                EventBatch.concat(self.pending) if self.pending and pending else empty_batch()
            ),
            "max_ts": self.max_ts,
            "closed_until": self.closed_until,
            **self._seen_state(),
            "windows_closed": self._windows_closed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"checkpoint has state format {state.get('format', 1)}, this build reads "
                f"{STATE_FORMAT}: start from an empty state or replay the history again"
            )
        if tuple(state["features"]) != FEATURES:
            raise ValueError("checkpoint was written with a different feature set")
        if state.get("codes") != CODES_VERSION:
            raise ValueError("checkpoint was written with a different string coding")
        if state.get("hash_key") != self.key_fingerprint:
            raise ValueError(
                f"checkpoint was written under another hash key (fingerprint "
                f"{state.get('hash_key')}, this engine {self.key_fingerprint}): "
                "set engine.hash_key / VIGIL_HASH_KEY to the key it was written with"
            )
        self.table.load_state_dict(state["table"])
        self.campaign.load_state_dict(state["campaign"])
        for k, d in self.detectors.items():
            if k in state["detectors"]:
                d.load_state_dict(state["detectors"][k])
        # The arrays as loaded, not as this engine built them empty: under the campaign
        # exchange nothing counts them again later (streams/engine/exchange.py).
        self._detector_bytes = array_bytes(self.detectors)
        self.cooldowns.load_state_dict(state["fusion"])
        pending = state["pending"]
        self.pending = [pending] if len(pending) else []
        self._open_bytes = batch_bytes(pending) if len(pending) else 0
        if self.journal_pending and len(pending):
            self._journal.append((pending.raw, pending.ts))  # a state that carried them
        self.max_ts = state["max_ts"]
        self.closed_until = state["closed_until"]
        self._load_seen(state)
        self._windows_closed = state["windows_closed"]
        self.load_exchange_state(state)
