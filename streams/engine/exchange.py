"""Closing a window in two phases, so that engines on partitions can share campaign figures.

A mixin of `Engine` (streams/engine/engine.py), active under `campaign_exchange=True`.
On partitions no engine sees a campaign whole, so a window is closed in two phases with
the key owners of streams/features/campaign_split.py in between:

1. begin: every feature but the campaign signals, and the window's memberships, which
   come out in `Output.campaign_requests` as (window end, memberships); the window is held;
2. `complete_window(window_end, figures)`, once the owners have every source's
   memberships of that window: `fill`, detectors, fusion, alerts, as one engine does.

Later windows may begin while earlier ones are held: a runner catching up cannot wait
for a round trip per window. Beginning window w+1 must then read nothing that finishing
window w writes. What it reads, and why finishing order does not change it:
- the account table, the dedup ids, the open events: begin alone writes them;
- detector state: begin reads none of it. Accounts that `_make_room` evicts at a begin
  leave the table at once but the detectors and fusion only once the windows held before
  are scored (`Held.forget`), where one engine closing windows one by one forgets them;
- the byte count of the detectors' arrays (read by `_make_room` through `usage()`): a
  begin adds only what its own reservation grew, and a restore counts what it loaded.
  Learning alone grows no per-account array (the population detector's trees add about
  40 KB once); an hourly recount would depend on how many windows were scored by then;
- the hourly upkeep runs at the begin of every 12th window, right after its features:
  the table's eviction reads only what begins wrote, so it lets go of the accounts the
  engine without the exchange evicts after scoring that window, and the detectors and
  fusion forget them once that window is scored, as there (`Held.evicted`). Until
  2026-12-04 it ran at that window's finish and later windows waited for it, one round
  trip an hour of event time: under exactly_once, where each step of the exchange waits
  for a commit, that emptied the pipeline every hour.

Under the option a window is never scored in account chunks (`_account_chunks`): owners
expect one request per window and source, so the budget's chunk limit is not applied.
Held windows, the windows waiting to begin and the evictions not yet passed on are part
of `state_dict`; a restored engine re-emits the requests of its held windows with its next
output (owners dedupe by window and source), and `held_requests` gives them any time.
A worker's checkpoint (`state_dict(pending=False)`) leaves out their events, which are most
of their bytes: the journal keeps every event not yet scored (`journal_floor`), and
`restore_pending` hands the held and waiting windows theirs back, by event time.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.contract.events import DeadLetter, EventBatch
from streams.core.alerts import rfc3339
from streams.core.batch import FeatureBatch
from streams.engine.build import Output
from streams.features.campaign import misbehaving
from streams.features.campaign_split import Contributed, KeyFigures, KeyRef, contributions, fill
from streams.features.groups import Groups
from streams.features.window import COL, features_without_campaign

log = logging.getLogger("vigil.engine")
HOURLY = 12  # windows between two runs of the hourly upkeep (Engine._score_window)


@dataclass
class Held:
    """A begun window waiting for its campaign figures."""

    ev: EventBatch  # None in a checkpoint without events, until restore_window_events
    start: float
    end: float
    batch: FeatureBatch  # campaign columns 0 until completed
    groups: Groups
    mine: Contributed
    forget: np.ndarray  # accounts evicted at its begin: forgotten before it is scored
    # Its completion runs the hourly upkeep: only in a state written before the upkeep
    # moved to the begin (held windows of an older checkpoint).
    hourly: bool = False
    evicted: np.ndarray | None = None  # by the hourly upkeep: forgotten once it is scored


class TwoPhase:
    """The two-phase close; Engine provides the fields and the scoring."""

    campaign_exchange: bool
    held: list[Held]
    _ready: list[tuple[EventBatch, float, float]]
    _forget_later: list[np.ndarray]
    _windows_begun: int
    _reemit: bool
    closed_until: float
    table: Any
    campaign: Any
    _open_bytes: int
    _events_in: int
    _bytes_in: int

    def _init_exchange(self) -> None:
        self.held = []
        self._ready = []  # closed windows waiting to begin, oldest first
        self._forget_later = []  # evicted accounts not yet passed to the detectors
        self._windows_begun = 0
        self._reemit = False
        # Events per held, then per waiting, window of a state loaded without them.
        self._journal_counts: list[int] | None = None

    @property
    def journal_floor(self) -> float:
        """Start of the oldest window not yet scored: the journal keeps events from here."""
        if self.held:
            return self.held[0].start
        return self._ready[0][1] if self._ready else self.closed_until

    @property
    def awaiting_figures(self) -> bool:
        """Windows are held for campaign figures: nothing after them is scored until the
        owners answer."""
        return bool(self.held)

    @property
    def unscored_windows(self) -> int:
        """Windows closed on event time and not yet scored: held for their figures, or
        waiting to begin behind them. Their events stay in memory until scored."""
        return len(self.held) + len(self._ready)

    @property
    def unscored_bytes(self) -> int:
        """About the bytes the events not yet scored hold: the open windows' as counted when
        they were buffered, and the closed windows' waiting for figures or to begin at the
        mean size of the events buffered so far (none are walked). A worker bounds it
        (streams/kafka/backpressure.py)."""
        closed = sum(len(h.ev) for h in self.held if h.ev is not None)
        closed += sum(len(ev) for ev, _, _ in self._ready if ev is not None)
        mean = self._bytes_in / self._events_in if self._events_in else 0.0
        return self._open_bytes + int(closed * mean)

    @property
    def awaiting_journal(self) -> bool:
        return self._journal_counts is not None

    @property
    def campaign_passed(self) -> float:
        """Event time up to which every window with events has had its request emitted: a
        source that sent none for a window ending at or before it had no events there."""
        return self._ready[0][1] if self._ready else self.closed_until

    def held_requests(self) -> list[tuple[float, Any]]:
        return [(h.end, h.mine.sent) for h in self.held]

    def _reemitted(self) -> Output:
        out = Output()
        if self._reemit:
            self._reemit = False
            out.campaign_requests = self.held_requests()
        return out

    def _begin_ready(self) -> Output:
        out = Output()
        while self._ready and not any(h.hourly for h in self.held):  # see Held.hourly
            ev, start, end = self._ready.pop(0)
            try:
                out.extend(self._begin_window(ev, start, end))
            except Exception as exc:  # as _close_until: lose no event, stop nothing
                log.exception("window %s failed", rfc3339(start))
                detail = f"{type(exc).__name__}: {exc}"
                out.dead_letters += [DeadLetter(r, "processing_error", detail) for r in ev.raw]
        return out

    def _begin_window(self, ev: EventBatch, start: float, end: float) -> Output:
        moved = self.table.collisions
        self._make_room(ev)  # type: ignore[attr-defined]
        batch, groups, sources = features_without_campaign(ev, start, end, self.table)
        self._count_collisions(moved)  # type: ignore[attr-defined]
        self._reserve_slots()  # type: ignore[attr-defined]
        bad = misbehaving(batch.X, COL, self.campaign.free_daily_tokens)
        ids = list(batch.account_ids)
        mine = contributions(end, groups.gid, groups.order, ids, sources, bad)
        self._windows_begun += 1
        forget = self._take_forget_later()
        h = Held(ev, start, end, batch, groups, mine, forget)
        if self._windows_begun % HOURLY == 0:
            h.evicted = self._upkeep_at_begin(end)  # type: ignore[attr-defined]
        self.held.append(h)
        return Output(campaign_requests=[(end, mine.sent)])

    def _take_forget_later(self) -> np.ndarray:
        later, self._forget_later = self._forget_later, []
        return np.concatenate(later) if later else np.empty(0, np.uint64)

    def complete_window(self, window_end: float, figures: dict[KeyRef, KeyFigures]) -> Output:
        """Finish the oldest held window with its keys' figures (at least those of the keys
        in its request; others are ignored): detectors, fusion, alerts; then begin the
        windows that waited for it. Raises ValueError for any other window."""
        if not self.held or self.held[0].end != window_end:
            oldest = rfc3339(self.held[0].end) if self.held else "none"
            raise ValueError(
                f"window ending {rfc3339(window_end)} is not the oldest held (oldest: {oldest})"
            )
        h = self.held.pop(0)
        out = Output()
        try:
            if len(h.forget):
                self._forget(h.forget)  # type: ignore[attr-defined]
            if self.before_window is not None:  # type: ignore[attr-defined]
                self.before_window(self, h.start)  # type: ignore[attr-defined]
            h.batch.context = {"campaign": fill(h.batch.X, COL, h.mine, figures, h.ev.texts)}
            out.extend(self._score_window(h.ev, h.batch, h.groups, h.end, h.hourly))  # type: ignore[attr-defined]
            if h.evicted is not None:
                self._forget(h.evicted)  # type: ignore[attr-defined]
        except Exception as exc:
            log.exception("window %s failed", rfc3339(h.start))
            detail = f"{type(exc).__name__}: {exc}"
            out.dead_letters += [DeadLetter(r, "processing_error", detail) for r in h.ev.raw]
        out.extend(self._begin_ready())
        return self._counted(out)  # type: ignore[attr-defined]

    def exchange_state(self, events: bool = True) -> dict[str, Any]:
        """`events=False`: the held and waiting windows without their events, which the
        journal keeps; their counts check what `restore_window_events` finds there."""
        state: dict[str, Any] = {
            "held": self.held,
            "ready": self._ready,
            "forget_later": self._take_forget_later_copy(),
            "windows_begun": self._windows_begun,
        }
        if not events:
            state["held"] = [dataclasses.replace(h, ev=None) for h in self.held]
            state["ready"] = [(None, start, end) for _, start, end in self._ready]
            state["journal_counts"] = [len(h.ev) for h in self.held] + [
                len(ev) for ev, _, _ in self._ready
            ]
        return state

    def restore_window_events(self, journal: EventBatch) -> None:
        """The events of the held and waiting windows of a state loaded without them, taken
        by event time from the journal's events (in the order they arrived, as they were
        first taken). Raises ValueError when the journal does not hold exactly as many."""
        if self._journal_counts is None:
            return
        counts, self._journal_counts = self._journal_counts, None
        windows = [(h.start, h.end) for h in self.held] + [(s, e) for _, s, e in self._ready]
        evs = []
        for (start, end), n in zip(windows, counts, strict=True):
            rows = np.flatnonzero((journal.ts >= start) & (journal.ts < end))
            if len(rows) != n:
                raise ValueError(
                    f"the journal holds {len(rows)} events of the window {rfc3339(start)} "
                    f"held for campaign figures, its checkpoint {n}: the changelog is incomplete"
                )
            evs.append(journal.take(rows))
        for h, ev in zip(self.held, evs, strict=False):
            h.ev = ev
        waiting = evs[len(self.held) :]
        self._ready = [(ev, s, e) for ev, (_, s, e) in zip(waiting, self._ready, strict=True)]

    def _take_forget_later_copy(self) -> np.ndarray:
        return np.concatenate(self._forget_later) if self._forget_later else np.empty(0, np.uint64)

    def load_exchange_state(self, state: dict[str, Any]) -> None:
        ex = state.get("exchange")
        if ex is None:  # written without the option: the hourly phase goes on from it
            self._init_exchange()
            self._windows_begun = state["windows_closed"]
            return
        if not self.campaign_exchange and (ex["held"] or ex["ready"]):
            raise ValueError(
                "checkpoint holds windows waiting for campaign figures: load it into an "
                "engine with campaign_exchange"
            )
        self.held = list(ex["held"])
        self._ready = list(ex["ready"])
        later = ex["forget_later"]
        self._forget_later = [later] if len(later) else []
        self._windows_begun = ex["windows_begun"]
        self._reemit = bool(self.held)
        self._journal_counts = ex.get("journal_counts")
