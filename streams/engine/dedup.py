"""Event-id deduplication over two generations, and the journal of ids for checkpoints.

A mixin of `Engine` (streams/engine/engine.py): these methods read and set its fields.

Every id is remembered for at least one horizon: ids go into the current generation, and
the previous one is dropped when the current one ends. On a dense stream the ids are most
of an engine's state (about 2.7 of 3.3 MB per partition on the benchmark's 4 h corpus) and
random, so they do not compress. A runner that checkpoints incrementally (the Kafka
worker, `journal_pending`) therefore stores each id once: `take_seen` hands over the ids
added since the last call, tagged by generation, and the state leaves them out. Every
`WHOLE_EVERY` calls in one generation it hands over that generation whole instead, so that
a checkpoint holds a bounded number of segments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streams.contract.events import EventBatch
from streams.contract.seen import IdSet, add_new
from streams.engine.budget import idset_bytes_after

# Segments of one generation before the next take writes it whole.
WHOLE_EVERY = 32

# (generation, ids, whole): `whole` replaces every earlier segment of that generation.
SeenSegment = tuple[int, np.ndarray, bool]


class Dedup:
    budget: Any
    cfg: Any
    metrics: Any
    max_ts: float
    journal_pending: bool

    def _init_dedup(self) -> None:
        self._seen_ids = (IdSet(), IdSet())  # event id codes: this generation, the last
        self._seen_gen_end = -np.inf
        self._seen_gen = 0  # generations turned over so far; names the current one
        self._seen_new: list[tuple[int, np.ndarray]] = []  # since the last take_seen
        self._seen_segments = 0  # segments of the current generation handed over
        self.dedup_turned_early = 0  # dedup generations turned over before their horizon

    def _turn_seen(self) -> None:
        self._seen_ids = (IdSet(), self._seen_ids[0])
        self._seen_gen += 1
        self._seen_segments = 0

    def _dedup(self, batch: EventBatch) -> EventBatch:
        # Past their share of the byte budget, the generations turn over before the ids
        # are added (counted): the oldest ids are then remembered for less than a horizon.
        for _ in range(2):
            cur, prev = self._seen_ids
            after = idset_bytes_after(cur, len(batch)) + prev.table.nbytes
            if not self.budget.dedup_over(after) or self._seen_gen_end == -np.inf:
                break
            self._turn_seen()
            self._seen_gen_end = self.max_ts + self.cfg.engine.dedup_horizon_s
            self.dedup_turned_early += 1
            self.metrics.budget_dedup_turned.inc()
        cur, prev = self._seen_ids
        ids = batch.event_id
        keep = add_new(cur, prev, ids)
        dups = len(batch) - int(np.count_nonzero(keep))
        if self.journal_pending:
            self._seen_new.append((self._seen_gen, ids[keep] if dups else ids))
        if dups:
            self.metrics.events_duplicate.inc(dups)
            batch = batch.take(np.flatnonzero(keep))
        # Two generations of ids: every id is remembered for at least one horizon.
        if self.max_ts > self._seen_gen_end:
            if self._seen_gen_end > -np.inf:
                self._turn_seen()
            self._seen_gen_end = self.max_ts + self.cfg.engine.dedup_horizon_s
        return batch

    @property
    def seen_from(self) -> int:
        """The oldest generation still remembered: segments of older ones can go."""
        return self._seen_gen - 1

    def take_seen(self) -> list[SeenSegment]:
        """The ids added since the last call, one segment per generation still remembered,
        or the current generation whole every WHOLE_EVERY segments of it."""
        new, self._seen_new = self._seen_new, []
        out: list[SeenSegment] = []
        for gen in (self._seen_gen - 1, self._seen_gen):
            parts = [ids for g, ids in new if g == gen]
            if gen == self._seen_gen and self._seen_segments >= WHOLE_EVERY:
                out.append((gen, self._seen_ids[0].ids(), True))
                self._seen_segments = 1
            elif parts:
                out.append((gen, np.concatenate(parts), False))
                self._seen_segments += gen == self._seen_gen
        return out

    def _seen_state(self) -> dict[str, Any]:
        """The state's part: without the ids when they are journaled (take_seen)."""
        if self.journal_pending:
            empty = np.empty(0, np.uint64)
            ids: tuple = (empty, empty)
        else:
            ids = tuple(s.ids() for s in self._seen_ids)
        return {"seen_ids": ids, "seen_gen_end": self._seen_gen_end, "seen_gen": self._seen_gen}

    def _load_seen(self, state: dict[str, Any]) -> None:
        cur, prev = state["seen_ids"]
        self._seen_ids = (IdSet(cur), IdSet(prev))
        self._seen_gen_end = state["seen_gen_end"]
        self._seen_gen = state.get("seen_gen", 0)
        self._seen_segments = 0
        self._seen_new = []
        if self.journal_pending:
            # A state that carried its ids (written by replay, or before ids were
            # journaled): the next checkpoint writes them, the state no longer will.
            gens = ((self._seen_gen - 1, prev), (self._seen_gen, cur))
            self._seen_new = [(g, ids) for g, ids in gens if len(ids)]

    def restore_seen(self, segments: list[tuple[int, np.ndarray]]) -> None:
        """After `load_state_dict`: the journaled ids of the generations still remembered."""
        for gen, ids in segments:
            if gen == self._seen_gen:
                add_new(self._seen_ids[0], self._seen_ids[1], ids)
                self._seen_segments += 1
            elif gen == self._seen_gen - 1:
                add_new(self._seen_ids[1], self._seen_ids[0], ids)
