"""Runs fetched batches through one Engine per owned input partition.

Each input partition p owns the accounts that hash to p, so it gets its own Engine, and the
engine's whole state is checkpointed to a plain table entry for p whose changelog lives in
partition p as well. On a rebalance Faust moves the changelog partition with the input
partition, and the new owner rebuilds the Engine from it before that partition's first
batch. Faust's windowed tables are not used: their windows are lost or wrong after a
rebalance or restart.

Ownership is the assignment, not the set of engines: a partition assigned to this worker
but with nothing new to read has no engine yet and is still owned (`assigned`).

Opening engines from checkpoints and the checkpoint order are in persistence.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from faust.types import TP

from streams.core.config import AT_LEAST_ONCE_FLOW
from streams.engine.snapshots import LatestSnapshots
from streams.kafka.backpressure import Backpressure, source_lead, to_pause
from streams.kafka.block import Block
from streams.kafka.drained import Drained, DrainedReader
from streams.kafka.exchange_commits import EXCHANGE_COMMIT_S
from streams.kafka.forwards import fresh
from streams.kafka.persistence import PartitionState, Persistence
from streams.kafka.positions import Refetch
from streams.kafka.routing import Router
from streams.kafka.transactions import Transactions
from streams.kafka.watermarks import EventTime, read_exchange, split_marks

log = logging.getLogger(__name__)

PROCESSING_ERROR = "processing_error"
EMPTY_REASON = "malformed_json"
EMPTY_DETAIL = "record with no value (a tombstone)"


@dataclass
class Topics:
    input: str
    repartition: str
    alerts: str
    dead_letters: str
    snapshots: str
    audit: str = ""
    shadow_alerts: str = ""
    campaign: str = ""  # the campaign exchange's topic; empty: none


class Processor(Persistence):
    def __init__(
        self,
        app: Any,
        table: Any,
        topics: Topics,
        partitions: int,
        make_engine: Callable[[], Any],
        metrics: Any,
        worker_metrics: Any,
        checkpoint_interval_s: float,
        dead_letter_max_bytes: int,
        repartition: bool,
        snapshot_interval_s: float = 0.0,
        event_time: EventTime | None = None,
        sinks: list | None = None,
        transactions: Transactions | None = None,
        exchange_record_bytes: int = 512 * 1024,
        discard_unreadable: bool = False,
        max_unscored_windows: int = AT_LEAST_ONCE_FLOW[0],
        max_source_lead_s: float = AT_LEAST_ONCE_FLOW[1],
        max_unscored_bytes: int | None = None,
        exchange_commit_s: float = EXCHANGE_COMMIT_S,
        partitioner: str = "murmur2",  # [kafka] input_partitioner
    ) -> None:
        self.app = app
        self.sinks = sinks or []  # further alert sinks (a webhook), beside the topics
        self.table = table
        self.topics = topics
        self.make_engine = make_engine
        self.metrics = metrics
        self.wm = worker_metrics
        self.interval = checkpoint_interval_s
        self.snapshot_interval = snapshot_interval_s
        self.last_snapshots = time.monotonic()
        self.dl_max = dead_letter_max_bytes
        self.owners = partitions  # campaign owners: one per campaign topic partition
        self.record_bytes = exchange_record_bytes
        self.discard_unreadable = discard_unreadable  # a checkpoint that cannot be used
        limit = event_time.max_line_bytes if event_time is not None else None
        self.router = Router(partitions, limit, partitioner=partitioner) if repartition else None
        # Per-source event time (watermarks.py), with or without forwarding: an engine
        # whose partition has no events closes windows on the others' marks, so that it
        # passes them in the campaign exchange too.
        self.event_time = event_time
        self.drained: DrainedReader | None = None  # opened by the first tick
        self.parts: dict[int, PartitionState] = {}
        # Input partitions of the current assignment: set when partitions are assigned,
        # shrunk when they are revoked. Engines open lazily, on a partition's first batch.
        self.assigned: set[int] = set()
        self.lock = asyncio.Lock()
        self.last_checkpoint = time.monotonic()
        self.pause = checkpoint_interval_s  # from the end of one checkpoint to the next
        self.settled = False  # a checkpoint finished since the last assignment
        self.last_progress = time.monotonic()
        self.last_input = time.monotonic()
        self.positions: dict[TP, int] = {}
        self.consumed = 0  # for /health, which is cheaper to poll than /metrics
        self.pending: list[Any] = []  # delivery futures since the last checkpoint
        # Latest snapshot per account since snapshots were last sent; sent at the first
        # checkpoint after `snapshot_interval`.
        self.snapshots = LatestSnapshots()
        self.encoder = ThreadPoolExecutor(2, thread_name_prefix="vigil-checkpoint")
        # exactly_once: the transactions outputs join, and the partitions whose open
        # transaction holds outputs since the last checkpoint.
        self.txn = transactions
        self.touched: set[int] = set()
        self.held: list = []  # exactly_once: outputs waiting for the checkpoint (outputs.py)
        self.exchanged: set[int] = set()
        self.last_commit = time.monotonic()
        self.commit_lock = asyncio.Lock()
        self.in_checkpoint: set[int] = set()  # taken by the checkpoint being written
        worker_metrics.uncheckpointed.set_function(self.uncheckpointed)
        self.committing: asyncio.Future | None = None
        self.finishing: asyncio.Future | None = None
        self.exchange_commit_s = exchange_commit_s  # 0: no exchange commits
        # The consumer's group lease (internals.GroupLease), set by app.py: checkpoints
        # are written only while it holds.
        self.group_lease: Callable[[], Any] = lambda: None
        self.withholding = False  # since the last checkpoint, one was withheld
        self.changelog_behind = False  # table writes the changelog may not hold
        self.closed = False  # the final checkpoint is done: nothing more is written
        self.refetch = Refetch(worker_metrics.batches_refetched)  # Blocks that skip offsets
        self.backpressure = Backpressure(worker_metrics.input_paused, worker_metrics.input_pauses)
        self.max_unscored = max_unscored_windows
        self.max_lead = max_source_lead_s
        self.max_bytes: float = math.inf if max_unscored_bytes is None else max_unscored_bytes

    def flow_control(self) -> None:
        """Between fetches: input partitions paused or resumed on the windows and bytes the
        owned engines hold unscored and on how far each source leads (backpressure.py)."""
        now = time.monotonic()
        parts = [(p, part) for p, part in self.parts.items() if p in self.assigned]
        owned = [(p, part.engine.unscored_windows, _lead(part, now)) for p, part in parts]
        held = sum(part.engine.unscored_bytes for _, part in parts)
        self.wm.unscored_bytes.set(held)
        self.wm.unscored_windows.set(sum(windows for _, windows, _ in owned))
        pause = to_pause(
            owned, self.assigned, self.max_unscored, self.max_lead, held > self.max_bytes
        )
        self.backpressure.update(self.app, {TP(self.topics.input, p) for p in pause})

    # -- batches ---------------------------------------------------------------------
    async def on_batch(self, tp: TP, records: Block) -> None:
        # The group generation the records were fetched in (the fetch loop hands over only
        # records of the current one). A rebalance while this batch waits for the lock
        # ends with a seek to the committed offsets, and the partition may come back to
        # this worker with its engine restored from an older checkpoint: applying the
        # stale batch then moved the engine past records the seek was about to fetch
        # again, and those were skipped as already applied (events lost under
        # exactly_once, docs/kafka.md). So a batch of an older generation is dropped.
        generation = self.app.consumer_generation_id
        async with self.lock:
            self.raise_failed_commit()
            if generation != self.app.consumer_generation_id:
                return
            if tp.partition not in self.assigned or tp not in self.app.consumer.assignment():
                # Revoked while this batch waited for the lock. The client's assignment
                # still lists the partition until the group's next assignment, so only
                # `assigned` tells that its engine was already checkpointed and dropped:
                # reopening it here would leave a stale engine behind. The records are
                # fetched again once the partition is positioned after the rebalance.
                return
            part = self.parts.get(tp.partition) or self._open(tp.partition)
            first = part.next_offsets.get(tp.topic, 0)
            known = tp.topic in part.next_offsets
            if not known and records.offsets:  # where a restart would resume
                start = records.fetched_from if records.fetched_from >= 0 else records.offsets[0]
                part.committed.setdefault(tp.topic, start)
            if known and await self.refetch.drop(
                self.app.consumer, tp, first, records.fetched_from
            ):
                return
            self.refetch.applied(tp, first)
            # Below next_offsets: already in this engine's state, either from the restored
            # checkpoint or applied before a rebalance seeked back to the committed offset.
            kept = records.since(first)
            if len(kept) < len(records):
                self.wm.events_skipped.inc(len(records) - len(kept))
                log.info("partition %d: %s below %d already applied", tp.partition, tp, first)
            for bad in kept.corrupt:
                await self._corrupt(bad, tp)
            if tp.topic == self.topics.campaign:  # not events: no decoding, time or audit
                await self._on_campaign(part, tp, kept)
            elif kept or kept.marks:  # a repartition Block may hold nothing but marks
                local, marks, undecoded = kept, [], []
                if self.router is not None and tp.topic == self.topics.input:
                    local, foreign = self.router.split(kept, tp.partition)
                    await self._forward(foreign, tp.partition)
                    undecoded = foreign.values
                elif tp.topic == self.topics.repartition:
                    local = kept.unbundled()  # done in the consumer thread when it could be
                    if self.event_time is not None:
                        local, marks = split_marks(local)
                    # Forwarded again by a restored source.
                    local, again = fresh(local, part.forwards)
                    self.wm.events_skipped.inc(again)
                newest = -math.inf
                if local:
                    newest = await self._apply(part, tp, local)
                    if tp.topic == self.topics.input:  # how far this source is read
                        part.read_time = part.engine.median_read
                    await self._audit(tp, local)
                if self.event_time is not None:
                    await self._advance_time(part, tp, newest, undecoded, marks, kept)
            if part.desk is not None and tp.topic != self.topics.campaign:
                await self._complete_held(part)
            end = records.end_offset()
            part.next_offsets[tp.topic] = end
            part.dirty = True
            self.positions[tp] = end
            self.last_progress = time.monotonic()
            if tp.topic == self.topics.input:
                self.last_input = self.last_progress
            self._update_lag(tp, end)
            now = time.monotonic()
            if self.checkpoint_due(now):
                await self._checkpoint_locked()
            elif self.exchange_commit_due(now):
                self.start_exchange_commit()

    async def _apply(self, part: PartitionState, tp: TP, records: Block) -> float:
        """The records into the engine; returns the newest event time it decoded."""
        self.wm.events_consumed.inc(len(records))
        self.consumed += len(records)
        lines = records.values
        if None in lines:
            # Tombstones carry no bytes for the decoder to judge (blank values it rejects
            # itself), but they are records and must be accounted for.
            for _ in range(lines.count(None)):
                self.metrics.events_rejected.labels(EMPTY_REASON).inc()
                await self._dead_letter(b"", EMPTY_REASON, EMPTY_DETAIL, tp)
            lines = [v for v in lines if v is not None]
            if not lines:
                return -math.inf
        columns = None
        if records.columns is not None and lines is records.values:
            # Decoded in the consumer thread (fetch.py), and still whole.
            columns = records.columns_for(part.engine.cfg.engine.max_line_bytes)
        try:
            out = part.engine.process_lines(lines, columns)
        except Exception:
            # An exception must never ack a batch silently: isolate the bad events.
            log.exception("batch of %d from %s failed; retrying one by one", len(lines), tp)
            self.wm.batch_failures.inc()
            return await self._one_by_one(part, tp, lines)
        await self._emit(out, tp)
        return part.engine.newest_read

    async def _one_by_one(self, part: PartitionState, tp: TP, lines: list[bytes]) -> float:
        newest = -math.inf
        for line in lines:
            try:
                out = part.engine.process_lines([line])
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
                self.metrics.events_rejected.labels(PROCESSING_ERROR).inc()
                await self._dead_letter(line, PROCESSING_ERROR, detail, tp)
                continue
            newest = max(newest, part.engine.newest_read)
            await self._emit(out, tp)
        return newest

    async def _advance_time(
        self,
        part: PartitionState,
        tp: TP,
        newest: float,
        undecoded: list,
        marks: list,
        block: Block | None = None,
    ) -> None:
        """After a block's events are in the engine: the sources' new marks, this source's
        mark sent on, and the windows every source has passed closed."""
        now = time.monotonic()
        if tp.topic == self.topics.input:
            clocks, source = part.clocks, tp.partition
            self.event_time.read_source(clocks, source, now, newest, undecoded, block)  # type: ignore[union-attr]
            await self._send_marks(part, now, force=False)
        for source, ts in marks:
            part.clocks.advance(source, ts, now)
        await self._emit(part.engine.set_source_watermark(part.clocks.watermark(now)), tp)

    async def _send_marks(self, part: PartitionState, now: float, force: bool) -> None:
        mark = part.clocks.marks.get(part.partition, float("-inf"))
        for dest, headers in self.event_time.marks_due(part.partition, mark, now, force):  # type: ignore[union-attr]
            await self._send(self.topics.repartition, None, b"", headers, dest, part.partition)

    async def tick(self) -> None:
        """The worker's timer: marks left unsent, and windows that idle sources held open."""
        if self.event_time is None:
            return
        async with self.lock:
            now = time.monotonic()
            owned = [part for p, part in list(self.parts.items()) if p in self.assigned]
            paused = {tp.partition for tp in self.backpressure.paused}
            # The input offsets, read while a source is silent somewhere: only a drained one
            # may stop holding the others back (drained.py).
            if self.drained is None:
                self.drained = DrainedReader(
                    self.app.consumer,
                    self.topics.input,
                    self.event_time.partitions,
                    self._drained,
                    self.wm.offset_readings,
                )
            self.drained.poll(any(part.clocks.silent(now) for part in owned))
            for part in owned:
                if part.partition in paused:  # records left: not silent downstream
                    self.event_time.held_back(part.clocks, part.partition, now)
                await self._send_marks(part, now, force=True)
                tp = TP(self.topics.repartition, part.partition)
                applied = part.next_offsets.get(tp.topic)
                read_exchange(self.app.consumer, tp, applied, part.clocks, now)
                closed = part.engine.closed_until
                out = part.engine.set_source_watermark(part.clocks.watermark(now))
                part.dirty |= part.engine.closed_until != closed
                await self._emit(out, TP(self.topics.input, part.partition))
                await self._complete_held(part)
            self.event_time.report(self.wm, [(p.clocks, p.engine) for p in owned], now)

    def _drained(self, answer: Drained) -> None:
        """A reading of the input offsets, to every engine's clocks as it arrives."""
        for part in self.parts.values():
            part.clocks.confirm_drained(answer.asked_at, answer.sources)

    def _update_lag(self, tp: TP, position: int) -> None:
        high = self.app.consumer.highwater(tp)
        if high is not None:
            self.wm.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - position))

    # -- assignment ----------------------------------------------------------------
    def on_assigned(self, assigned: set[TP]) -> None:
        """Records the input partitions of a new assignment, before their recovery starts."""
        self.assigned = {tp.partition for tp in assigned if tp.topic == self.topics.input}
        self.backpressure.forget()
        # The first checkpoint after it comes at the interval, and under at_least_once it
        # does not defer the next (CheckpointCommits._finish): what a restarted worker
        # reads again is soon covered.
        self.pause, self.settled = self.interval, False
        self.wm.owned_partitions.set(len(self.assigned))

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Checkpoint and drop the engines of partitions this worker is losing."""
        lost = {tp.partition for tp in revoked if tp.topic == self.topics.input}
        if not lost:
            return
        async with self.lock:
            try:
                await self._checkpoint_locked(lost)
            except Exception:
                # The next owner resumes from the previous checkpoint: slower, not lossy.
                log.exception("checkpoint on revoke failed")
            # When the group dropped this worker (its session expired), the partitions
            # are already another's, and _checkpoint_locked wrote nothing for them.
            for p in lost:
                self.parts.pop(p, None)
            # exactly_once: outputs a failed checkpoint left held belong to a transaction
            # the next owner aborts; it makes them again from the previous checkpoint.
            self.held = [(s, record) for s, record in self.held if s not in lost]
            self.exchanged -= lost
            # Batches still waiting for the lock are refused from here on (on_batch).
            self.assigned -= lost
            self.wm.owned_partitions.set(len(self.assigned))
            self.app.consumer.forget({tp for tp in revoked})


def _lead(part: PartitionState, now: float) -> float:
    if part.clocks is None:
        return 0.0
    return source_lead(part.read_time, part.clocks.watermark(now))
