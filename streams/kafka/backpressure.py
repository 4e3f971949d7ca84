"""Pausing input partitions so that what a worker holds does not grow with its backlog.

Working off a backlog, a worker took records in far faster than it scored them, and every
event not yet scored stays in memory with its raw line. On the benchmark's 4 h corpus the
peak grew to about 2 GiB, against 1 GiB for 1 h. Two things let the unscored events pile up:
- The sources are read at different speeds: some input partitions ran hours of event time
  ahead of the slowest (`vigil_event_time_held_seconds` reached 8,000 s), and an engine
  keeps every event past the event time it closes on, the slowest source's.
- A closed window is scored only once the campaign owners send its figures
  (streams/engine/exchange.py).

So, between fetches, the worker pauses (Faust's public pause_partitions):
- every input partition it owns while any engine holds more than
  `[worker] max_unscored_windows` closed windows not yet scored;
- otherwise each input partition whose event time leads the event time its engine closes
  on (the slowest source's) by more than `[worker] max_source_lead_s`, like a stream
  processor's watermark alignment. A source's event time here is the median of the last
  block read from it (`source_lead`), so that one event from a fast clock does not pause
  its partition.
Both bounds are in event time, so what they let the engines hold grows with the event
rate. A third, off unless set, is in bytes: while the events the engines hold unscored
(open windows, and closed ones waiting for figures, `Engine.unscored_bytes`) pass
`[worker] max_unscored_bytes`, every input partition but the slowest is paused. Without it a fast
stream's backlog would fill the engines' open-window budget, which closes windows early and
sends their late events to dead letters (streams/engine/budget.py); pausing loses nothing.
It resumes them as soon as that no longer holds.

Only input partitions are paused: the repartition topic carries the event-time marks and
the campaign topic the figures that let the held windows finish. Neither pause waits on
itself. An engine holds a closed window only after every source's mark has passed it, and
those marks have already gone to the other engines, so the window's figures come while the
input is paused. The slowest source is never paused for its lead. A paused source has
records left, so it must not count as silent downstream (watermarks.py): while it is
paused, its last mark is sent again with the worker's timer (`EventTime.held_back`).

Faust pauses every partition itself while it rebalances and recovers tables, and resumes
them after. This module resumes only partitions it paused since the last assignment, and
never during a rebalance or a recovery, so that it cannot hand records to an engine whose
state is still being restored.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

log = logging.getLogger(__name__)


def to_pause(
    owned: list[tuple[int, int, float]],
    assigned: set[int],
    limit: int,
    max_lead_s: float,
    over_bytes: bool = False,
) -> set[int]:
    """The input partitions to pause, from each open engine's (partition, closed windows
    not yet scored, how far its own source leads the event time it closes on, source_lead):
    every assigned one while an engine holds more than `limit` windows, else the sources
    leading by more than `max_lead_s`, or by anything at all while the engines hold more
    bytes unscored than allowed (`over_bytes`). The slowest source leads by nothing, so it
    keeps the event time moving and the open windows closing."""
    if any(unscored > limit for _, unscored, _ in owned):
        return set(assigned)
    bound = 0.0 if over_bytes else max_lead_s
    return {p for p, _, lead in owned if lead > bound}


def source_lead(read_time: float, watermark: float) -> float:
    """Event-time seconds by which a source leads the event time its engine closes on.
    `read_time` is the median event time of the last block read from it: a mark is the
    newest event read, and one event from a clock a day fast (within max_future_s) would
    have paused its partition for a day. 0 while either is unknown."""
    if read_time == -math.inf or watermark == -math.inf:
        return 0.0
    return read_time - watermark


@dataclass
class Backpressure:
    paused_gauge: Any  # Gauge: input partitions paused now
    pauses: Any  # Counter: times the input went from none paused to some
    paused: set[TP] = field(default_factory=set)

    def update(self, app: Any, want: set[TP]) -> None:
        """Pauses the partitions in `want`, resumes the others this paused. Called between
        fetches, never while a fetch's records are handed over (the drain loop reads the
        live set of active partitions)."""
        consumer = app.consumer
        new = want - self.paused
        if new:
            if not self.paused:
                self.pauses.inc()
            log.debug("pausing %s", sorted(tp.partition for tp in new))
            consumer.pause_partitions(new)
            self.paused |= new
        done = self.paused - want
        if done and not (app.rebalancing or app.in_recovery):
            consumer.resume_partitions(done & set(consumer.assignment()))
            self.paused -= done
        self.paused_gauge.set(len(self.paused))

    def forget(self) -> None:
        """At a new assignment: Faust has paused and will resume every partition itself."""
        self.paused.clear()
        self.paused_gauge.set(0)
