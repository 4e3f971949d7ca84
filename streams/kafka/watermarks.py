"""Event time per source partition, carried across the repartition topic.

An engine gets events from every input partition: its own partition's directly, the others'
forwarded through the repartition topic (routing.py). Each input partition (a *source*) is
read in order, but the sources are read at different speeds (a catch-up, a slow fetch, a
producer that spreads an account over partitions), so the newest event an engine has seen
says nothing about what the slower sources still hold. Closing windows on it sent most of a
catch-up's events to the dead letters as `too_late`.

Here each engine closes windows on the event time that every source has passed: the minimum
over sources of the newest event time each has read (its *mark*). A source's owner sends its
mark to every other partition of the repartition topic after the records it forwarded from
the same batches, so a destination that has a mark has every record it covers as well. A
source that sends nothing for `source_idle_s` (wall clock: an empty or drained partition)
stops holding the others back; its mark counts again with its next record. Silence counts
only while the engine has read its repartition partition through (SourceClocks), and, where
the worker reads the input partitions' offsets (drained.py), only once the consumer group
has committed every record the source held: a silent source with records still to read (a
worker that is gone, one slow to start after a rebalance) is late, not idle, and holds the
others until its next owner sends them on. With every source idle, the newest mark counts.

Marks are records with an empty value and one header, `vigil-watermark: <source> <time>`
(bundles.py, where the consumer thread takes them out of the rows as it unpacks a fetch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from streams.contract import _decode
from streams.contract.events import FLOAT_COLUMNS, column_arrays
from streams.kafka.block import Block
from streams.kafka.bundles import encode_mark

_TS = FLOAT_COLUMNS.index("ts")
_OK = 0  # the compiled decoder's status of a line it read in full


def split_marks(block: Block) -> tuple[Block, list[tuple[int, float]]]:
    """The events of a repartition block, and the (source, time) marks among them, which
    unpacking it left out (bundles.unpack_rows)."""
    block = block.unbundled()
    return block, [(source, ts) for _, source, ts in block.marks]


def newest_event_time(
    values: list[bytes | None], max_line_bytes: int, max_future_s: float, now: float
) -> float:
    """The newest event time among raw events the engine would accept (-inf: none).

    Lines the compiled decoder passes to the reference decoder are left out: at worst the
    mark moves a little later, never past an event still to be read.
    """
    lines = [v for v in values if v]
    if not lines:
        return -math.inf
    return newest_decoded(_decode.decode(lines, max_line_bytes), max_future_s, now)


def newest_decoded(columns: tuple, max_future_s: float, now: float) -> float:
    """`newest_event_time` of lines `_decode.decode` gave these columns for."""
    status, _, floats, _, _ = column_arrays(columns)
    ts = floats[_TS]
    ok = (status == _OK) & (ts <= now + max_future_s)
    return float(ts[ok].max()) if ok.any() else -math.inf


# Highwater readings kept while the engine has not read up to them; a stall longer than
# this many readings (one a second) keeps every other one, which only delays idleness.
MAX_READINGS = 512
# A source heard again after this long is the stream coming back (a burst after a quiet
# spell): what was known of the other sources' offsets before it no longer says that they
# have nothing new. Longer than a flowing source's gaps (fetch waits of 0.5 s, marks every
# 0.25 s, the timer's 1 s), so steady traffic never counts as coming back.
RESUMED_AFTER_S = 2.0


@dataclass
class SourceClocks:
    """One engine's view of every source's mark, and when each was last heard of.

    Silence counts only up to the time whose repartition records the engine has all read
    (`read_through`): marks still waiting in that partition, in a backlog or behind a
    transaction not yet committed, are not silence. Under exactly_once a destination reads
    a source's marks only once the transaction that wrote them commits, and an open
    transaction of any worker holds back every record after it in the partition, so commits
    further apart than `idle_after_s` (a stalled commit) made every forwarding source idle
    while its marks were on their way; the engine then closed windows on its own partition's
    time and the forwards went to `too_late` once they came."""

    sources: int
    idle_after_s: float
    opened: float = field(default_factory=time.monotonic)
    marks: dict[int, float] = field(default_factory=dict)
    heard: dict[int, float] = field(default_factory=dict)
    # None: no readings of the repartition partition are taken, and idleness runs on the
    # caller's clock (EventTime.clocks starts it at the opening).
    read_through: float | None = None
    # None: nothing is known of the sources' offsets, and silence alone makes a source idle.
    # Otherwise source -> (end offset, first and last reading that found the group had
    # committed every record up to it: `confirm_drained`); only such a silent source may
    # stop holding the others.
    drained_at: dict[int, tuple[int, float, float]] | None = None
    resumed: float = -math.inf  # the last time a source was heard after RESUMED_AFTER_S
    _readings: list[tuple[float, int]] = field(default_factory=list)  # (when, highwater)

    def advance(self, source: int, ts: float, now: float) -> None:
        if not 0 <= source < self.sources:
            return  # a mark from another partition count: not a source of this group
        idle = self.idle(now)
        if source in idle:
            # A source back from silence (or heard for the first time after its timeout)
            # re-arms every other silent one: after a quiet spell the sources come back at
            # different times (under exactly_once one worker's at each of its commits),
            # and the first back must not close windows the others still have events for.
            # Costs latency, one timeout, each time a silent source comes back.
            for other in idle:
                self.heard[other] = now
        if now - self.heard.get(source, self.opened) >= RESUMED_AFTER_S:
            self.resumed = now
        self.marks[source] = max(self.marks.get(source, -math.inf), ts)
        self.heard[source] = now

    def confirm_drained(self, asked_at: float, drained: dict[int, int] | None) -> None:
        """The input offsets read from `asked_at` on: the consumer group had committed every
        record of the `drained` sources (source -> end offset), so their forwards were all
        written by then; by the first reading that found the same end, if the one before
        did. None: the offsets could not be read, and silence alone decides again."""
        if drained is None:
            self.drained_at = None
            return
        before = self.drained_at or {}
        found: dict[int, tuple[int, float, float]] = {}
        for s, end in drained.items():
            was = before.get(s)
            first = was[1] if was is not None and was[0] == end else asked_at
            found[s] = (end, first, asked_at)
        self.drained_at = found

    def exchange_read(self, now: float, position: int, highwater: int) -> None:
        """The engine's repartition partition holds `highwater` records at `now`, and the
        engine has applied those below `position`. Every record written by the time of a
        reading is read once `position` reaches that reading's highwater."""
        if self.read_through is None:
            self.read_through = self.opened
        if self._readings and self._readings[-1][1] == highwater:
            self._readings[-1] = (now, highwater)
        else:
            self._readings.append((now, highwater))
        caught = [t for t, high in self._readings if high <= position]
        if caught:
            self.read_through = max(self.read_through, caught[-1])
            self._readings = [r for r in self._readings if r[1] > position]
        if len(self._readings) > MAX_READINGS:
            self._readings = self._readings[1::2]

    def silent(self, now: float) -> list[int]:
        """Sources not heard of for `idle_after_s` of what the engine has read."""
        # A source never heard of counts from the engine's opening: after a restart every
        # source gets `idle_after_s` to send its first mark.
        limit = self.idle_after_s
        clock = now if self.read_through is None else min(now, self.read_through)
        return [s for s in range(self.sources) if clock - self.heard.get(s, self.opened) >= limit]

    def idle(self, now: float) -> list[int]:
        """Silent sources that hold nothing back: with offsets known, only those the group
        had read to their end after the source was last heard and after the stream last
        came back, with the engine's repartition partition read through that time.

        Silence alone let an engine that had not heard a source since it opened (a
        rebalance after that source's last records) close windows on its own partition's
        burst, and the other source's share of the burst, forwarded a commit later, went
        to too_late (618 events in one fault soak's 10x burst, exactly_once)."""
        silent = self.silent(now)
        if self.drained_at is None or not silent:
            return silent
        # Read through the *first* reading that found the same end: its forwards are all
        # read then, and a partition that stays drained (an empty one) stays idle while the
        # engine works off a backlog of the others' forwards.
        read = now if self.read_through is None else self.read_through
        out = []
        for s in silent:
            _, first, last = self.drained_at.get(s, (0, math.inf, -math.inf))
            if last >= max(self.heard.get(s, self.opened), self.resumed) and read >= first:
                out.append(s)
        return out

    def watermark(self, now: float) -> float:
        idle = set(self.idle(now))
        active = [self.marks.get(s, -math.inf) for s in range(self.sources) if s not in idle]
        if active:
            return min(active)
        return max(self.marks.values(), default=-math.inf)


def read_exchange(
    consumer: Any, tp: Any, applied: int | None, clocks: SourceClocks, now: float
) -> None:
    """A reading of how far an engine has read its repartition partition `tp`: `applied`
    is the next offset it would apply, None if it has applied none since it opened (the
    client's fetch position would run ahead of records fetched and not yet applied)."""
    # The log's end, records of open transactions included: Faust's `highwater` is the
    # last stable offset under exactly_once, so a source whose marks waited behind an
    # open transaction counted as silent, and commits further apart than `source_idle_s`
    # closed windows early (9,573 of 111,056 events too late in one CI run).
    high = consumer.log_end(tp)
    if high is not None:  # None: not fetched yet, nothing known of what waits there
        clocks.exchange_read(now, applied or 0, high)


@dataclass
class EventTime:
    """The worker's side of it: each owned engine's clocks, the marks this worker's input
    partitions have to send, and how often they are sent."""

    partitions: int
    idle_after_s: float
    max_line_bytes: int
    max_future_s: float
    send_every_s: float = 0.25
    _sent: dict[int, float] = field(default_factory=dict)  # source -> when last sent
    _unsent: set[int] = field(default_factory=set)  # sources read since their last mark

    def clocks(self) -> SourceClocks:
        # Silence counts only through readings of the repartition partition, the first of
        # them included: until then nothing is known of what waits there.
        clocks = SourceClocks(self.partitions, self.idle_after_s)
        clocks.read_through = clocks.opened
        # The same for the input offsets: no source is known drained until the worker's
        # first reading answers (drained.py). Left at None, silence alone would decide for
        # the second or two that takes, which is when an engine opened after a rebalance
        # meets a burst.
        clocks.drained_at = {}
        return clocks

    def read_source(
        self,
        clocks: SourceClocks,
        source: int,
        now: float,
        newest: float = -math.inf,
        undecoded: list[bytes | None] | None = None,
        block: Block | None = None,
    ) -> None:
        """A block of the input partition `source`, this engine's own, has been handled:
        `newest` is the newest event time the engine decoded from it (`Engine.newest_read`),
        `undecoded` the block's records it did not decode (those forwarded elsewhere). Each
        record is decoded once: a second decode of every block cost an eighth of the
        worker's main thread. When the consumer thread decoded `block`, the forwarded
        records' time is read from what it decoded: the rows that stayed count in `newest`
        already, and a second decode of those forwarded cost 7% of the main thread when
        most were. It decodes a Block's last rows, not every forwarded one (fetch.py,
        `decode_here`): the mark may then stay a little behind the newest time read, which
        holds windows open a little longer, and never moves past it."""
        if undecoded:
            now_ts = time.time()
            columns = block.decoded_for(self.max_line_bytes) if block is not None else None
            if columns is not None:
                read = newest_decoded(columns, self.max_future_s, now_ts)
            else:
                read = newest_event_time(undecoded, self.max_line_bytes, self.max_future_s, now_ts)
            newest = max(newest, read)
        clocks.advance(source, newest, now)
        self._unsent.add(source)

    def held_back(self, clocks: SourceClocks, source: int, now: float) -> None:
        """`source` is paused with records left (backpressure.py): not silent. Its own
        engine hears it again, and its last mark goes to the others with the timer."""
        mark = clocks.marks.get(source, -math.inf)
        if mark > -math.inf:
            clocks.advance(source, mark, now)
            self._unsent.add(source)

    def marks_due(
        self, source: int, mark: float, now: float, force: bool = False
    ) -> list[tuple[int, list[tuple[str, bytes]]]]:
        """(partition, headers) of the marks to send now for `source`: after the records
        it forwarded, to every other partition of the repartition topic. Sent at most every
        `send_every_s`, and by the worker's timer for what is left (`force`)."""
        if source not in self._unsent or mark == -math.inf:
            return []
        if not force and now - self._sent.get(source, -math.inf) < self.send_every_s:
            return []
        self._unsent.discard(source)
        self._sent[source] = now
        headers = encode_mark(source, mark)
        return [(p, headers) for p in range(self.partitions) if p != source]

    def report(self, metrics: Any, engines: list[tuple[SourceClocks, Any]], now: float) -> None:
        """The worker's gauges: idle sources, silent ones with records left, and how far
        closing trails the newest event (the most over this worker's engines)."""
        idle, late, held = 0, 0, 0.0
        for clocks, engine in engines:
            n = len(clocks.idle(now))
            idle = max(idle, n)
            late = max(late, len(clocks.silent(now)) - n)
            # With a source never heard (a late one) nothing can close: the trail is then
            # from where the engine last closed, not zero.
            mark = clocks.watermark(now)
            if mark == -math.inf:
                mark = engine.closed_until
            if mark > -math.inf and engine.max_ts > -math.inf:
                held = max(held, engine.max_ts - mark)
        metrics.idle_sources.set(idle)
        metrics.late_sources.set(late)
        metrics.event_time_held.set(held)
