"""Pausing the input while engines hold more closed windows than they may.

A window closed on event time is scored only once the campaign owners answer with its
figures (streams/engine/exchange.py), and after each hour of event time the later windows
wait for the hourly upkeep's. Working off a backlog, a worker took records in several times
faster than it scored them: a 1 h backlog had 900,000 events in and 470,000 scored, and the
events of every window waiting held memory, 1 GiB at the peak for a 1 h backlog and 2 GiB
for 4 h. So while any owned engine holds more than `[worker] max_unscored_windows` such
windows, the worker's input partitions are paused (Faust's public pause_partitions), and
resumed once every engine is back at or under it. Memory then follows that many windows of
traffic, not the length of the backlog.

Only input partitions are paused: the repartition topic carries the event-time marks and
the campaign topic the figures that let the held windows finish. It cannot deadlock: an
engine holds a closed window only after every source's mark has passed it, and those marks
have already gone to the other engines, so every engine can close and request that window
while the input is paused, and its figures come. A paused source has records left, so it
must not count as silent downstream (watermarks.py): while paused, its last mark is sent
again with the worker's timer (`EventTime.held_back`).

Faust pauses every partition itself while it rebalances and recovers tables, and resumes
them after. This module resumes only partitions it paused since the last assignment, and
never during a rebalance or a recovery, so that it cannot hand records to an engine whose
state is still being restored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

log = logging.getLogger(__name__)


@dataclass
class Backpressure:
    limit: int  # closed windows not yet scored that an engine may hold
    paused_gauge: Any  # Gauge: input partitions paused now
    pauses: Any  # Counter: times the input was paused
    paused: set[TP] = field(default_factory=set)

    def update(self, app: Any, unscored: list[int], inputs: set[TP]) -> None:
        """`unscored`: each owned engine's closed windows not yet scored; `inputs`: the
        owned input partitions. Called between fetches, never while a fetch's records are
        being handed over (the drain loop reads the live set of active partitions)."""
        consumer = app.consumer
        if any(n > self.limit for n in unscored):
            new = inputs - self.paused
            if new:
                if not self.paused:
                    self.pauses.inc()
                    log.info(
                        "pausing the input: an engine holds %d windows not yet scored "
                        "(max_unscored_windows %d)",
                        max(unscored),
                        self.limit,
                    )
                consumer.pause_partitions(new)
                self.paused |= new
        elif self.paused and not (app.rebalancing or app.in_recovery):
            consumer.resume_partitions(self.paused & set(consumer.assignment()))
            self.paused.clear()
        self.paused_gauge.set(len(self.paused))

    def forget(self) -> None:
        """At a new assignment: Faust has paused and will resume every partition itself."""
        self.paused.clear()
        self.paused_gauge.set(0)
