"""A checkpoint's second half: once its state is taken from the engines, encoding it and
writing it to the table, waiting for its records and committing the input offsets it
covers (docs/kafka.md, "Checkpoint order and the processing guarantee"). A periodic
checkpoint does this in a task of its own while the engines go on ("Checkpoints finish
beside the engines").

A mixin of the Processor, beside Persistence (persistence.py), which takes the state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from faust.types import TP

from streams.kafka import checkpoint
from streams.kafka.lease import NO_LEASE, held_for_writes
from streams.kafka.outputs import TakenSnapshots, delivered
from streams.runtime.checkpoint_codec import FrozenState

log = logging.getLogger(__name__)

# Checkpoints take at most about a tenth of the worker's time: working off a backlog, one
# can take a second or two (every event of the windows not yet scored goes into the
# journal), and every 5 s that stalled the stream a fifth of the time. The longest pause
# bounds what a crash makes the worker read again.
PAUSE_FACTOR = 9.0
MAX_PAUSE_S = 30.0
# Under exactly_once alerts wait for the checkpoint, and other workers' engines for this
# worker's marks when its own exchange does not wait (docs/kafka.md, "Checkpoint order
# and the processing guarantee"): a shorter bound.
EOS_MAX_PAUSE_S = 15.0


def checkpoint_pause(interval: float, took: float, defer: bool = True) -> float:
    """Seconds from the end of a checkpoint that took `took` to the next one; `defer`
    False: the interval, whatever it took (`CheckpointCommits._finish` says when)."""
    if not defer:
        return interval
    return max(interval, min(PAUSE_FACTOR * took, MAX_PAUSE_S))


@dataclass
class TakenPart:
    """One partition's part of a checkpoint, as taken under the processor's lock."""

    part: Any  # persistence.PartitionState
    state: FrozenState  # the engine's state without its open and held windows' events
    journal: list[bytes]  # the events read since the last checkpoint
    newest: float  # the newest event time among them
    seen: list  # event id segments, encoded (checkpoint.encode_seen)
    held: checkpoint.HeldWindows
    offsets: dict[str, int]  # the next input offsets the state covers
    floor: float  # the engine's journal floor
    seen_from: int | None
    done: float  # windows before it completed for good (campaign.done_in_state)


@dataclass
class Taken:
    """A checkpoint taken from the engines, to encode and write (`_written`)."""

    rows: list[TakenPart]
    partitions: set[int] | None  # None: every partition
    started: float  # perf_counter at its start
    send_progress: bool
    snapshots: TakenSnapshots | None = None  # console snapshots, sent before the state


@dataclass
class Written:
    """A checkpoint whose state is in the table, to finish (`CheckpointCommits._finish`)."""

    parts: list[tuple[Any, dict[str, int], float]]  # PartitionState, next offsets, done
    behind_before: bool  # changelog_behind before its writes
    started: float  # perf_counter at its start
    send_progress: bool


class CheckpointCommits:
    """The Processor sets these in its __init__ (Persistence names the rest)."""

    app: Any
    txn: Any  # transactions.Transactions, or None under at_least_once
    table: Any
    encoder: Any  # the threads that encode checkpoints
    group_lease: Any  # () -> internals.GroupLease or None
    lock: asyncio.Lock  # the processor's
    commit_lock: asyncio.Lock  # held by checkpoints and exchange commits
    finishing: asyncio.Future | None  # the checkpoint last finished aside
    exchange_commit_s: float
    exchanged: set[int]
    touched: set[int]
    in_checkpoint: set[int]
    parts: dict
    closed: bool
    changelog_behind: bool
    withholding: bool
    topics: Any  # the worker's Topics
    interval: float
    pause: float
    settled: bool  # a checkpoint finished since the last assignment
    last_checkpoint: float
    last_commit: float
    metrics: Any
    wm: Any

    async def finished(self) -> None:
        """Returns once the checkpoint last finished aside is done; raises what it raised."""
        if self.finishing is not None:
            await asyncio.wait([self.finishing])
            self.raise_failed_commit()

    def _finish_aside(self) -> bool:
        """Under exactly_once without exchange commits nothing is held: what the engines
        sent while the checkpoint finished would join its transaction, and be published
        with offsets that do not cover its events."""
        return self.txn is None or self.exchange_commit_s > 0

    async def _finish(self, w: Written) -> None:
        """The rest of a checkpoint, holding the commit lock and releasing it: waits for
        the changelog records of the state written (and under exactly_once for every
        output), then commits the input offsets it covers. A periodic checkpoint finishes
        in a task of its own while the engines go on: under exactly_once they send only
        exchange records meanwhile (every other output is held for the next checkpoint),
        and under at_least_once outputs of events past these offsets."""
        # Only a checkpoint that moved some input offset defers the next, and under
        # at_least_once not the first since the assignment either. One that moved no
        # offset covers nothing a crash would read again, and the first pays for setting
        # up (the producer's connections, a restored partition's whole state written
        # again): deferred after either, the next came too late to cover what a restarted
        # worker read again, and one killed in a row read it again each time (the fault
        # soak's kill -9s: a first checkpoint of 0.9 s on the three brokers put off the
        # next by 8 s). Under exactly_once nothing read again is published twice, and a
        # backlog's first checkpoint is as slow as the next (its journal).
        read_on = any(
            offsets.get(self.topics.input) != part.committed.get(self.topics.input)
            for part, offsets, _ in w.parts
        )
        defer = read_on and (self.settled or self.txn is not None)
        try:
            await self._commit_written(w)
        except BaseException:
            for part, _, _ in w.parts:  # the next checkpoint writes them again
                part.dirty = True
            raise
        finally:
            self._checkpoint_over()
        took = time.perf_counter() - w.started
        if self.withholding:
            self.withholding = False
            log.info("checkpoints written again: the consumer group answered")
        self.last_checkpoint = time.monotonic()
        self.pause = checkpoint_pause(self.interval, took, defer)
        self.settled = True
        self.metrics.last_checkpoint.set(time.time())
        self.wm.checkpoint_seconds.set(took)

    async def _written(self, taken: Taken) -> Written | None:
        """Encodes the state taken, in the encoder's threads, and writes it to the table;
        holds the commit lock, and releases it when there is nothing to finish (None) or
        this raises."""
        try:
            w = await self._write(taken)
        except BaseException:
            for row in taken.rows:  # the next checkpoint writes them again
                row.part.dirty = True
            self._checkpoint_over()
            raise
        if w is None:
            self._checkpoint_over()
        return w

    def _checkpoint_over(self) -> None:
        """Committed, or given up with its partitions marked for the next."""
        self.in_checkpoint = set()
        self.commit_lock.release()

    def changed(self) -> set[int]:
        """Partitions with work no checkpoint has taken yet: an engine that applied
        records, or outputs sent into their transaction. Also called by the scrape thread:
        the copy of `parts` is taken in one step, so the loop may change the dict
        meanwhile."""
        return {p for p, part in list(self.parts.items()) if part.dirty} | self.touched

    def uncheckpointed(self) -> int:
        """Partitions changed since their last checkpoint, or in the one being written:
        under exactly_once their alerts are not yet visible to read_committed readers."""
        return len(self.changed() | self.in_checkpoint)

    async def _write(self, taken: Taken) -> Written | None:
        loop = asyncio.get_running_loop()
        snapshots = taken.snapshots
        # First, so that one thread builds them while the other compresses.
        built = (
            loop.run_in_executor(self.encoder, self.build_snapshots, snapshots)
            if snapshots is not None
            else None
        )
        blobs = await asyncio.gather(
            *(loop.run_in_executor(self.encoder, _encode, row) for row in taken.rows)
        )
        records = await built if built is not None else []
        if taken.rows and not await held_for_writes(self._lease()):
            # Out of the group: the revoke that follows drops these engines, journals
            # taken and all, and their partitions resume elsewhere from the changelog.
            self._withhold(taken.partitions)
            for row in taken.rows:
                row.part.dirty = True
            return None
        # Local writes the changelog may not hold: a clean stop needs none (app.py). Once a
        # checkpoint fails between its writes and their acknowledgement, it stays so for
        # this run: what the producer dropped is not sent again.
        if snapshots is not None:  # in this checkpoint's transaction under exactly_once
            await self._send_snapshots(snapshots, records)
        behind_before = self.changelog_behind
        self.changelog_behind = self.changelog_behind or bool(taken.rows)
        for row, (blob, journal) in zip(taken.rows, blobs, strict=True):
            p = row.part.partition
            size = checkpoint.write(
                self.table, self.topics.input, p, blob, row.offsets, journal, row.newest,
                row.floor, row.seen, row.seen_from, row.held,
            )  # fmt: skip
            self.wm.checkpoint_bytes.labels(str(p)).set(size)
        parts = [(row.part, row.offsets, row.done) for row in taken.rows]
        return Written(parts, behind_before, taken.started, taken.send_progress)

    def _lease(self) -> Any:
        return self.group_lease() or NO_LEASE

    def _withhold(self, partitions: set[int] | None) -> None:
        """No state is written while the worker may be out of its group: the broker may
        have given its partitions to another worker, whose checkpoints these would
        corrupt (internals.GroupLease). The next checkpoint tries again; a partition
        that is gone resumes at its new owner from its last checkpoint, and under
        at_least_once the events read since are processed twice."""
        self.wm.checkpoints_withheld.inc()
        if self.withholding:  # said once until a checkpoint is written again
            return
        self.withholding = True
        which = "all partitions" if partitions is None else f"partitions {sorted(partitions)}"
        log.warning(
            "checkpoint of %s withheld: this worker may no longer be in its consumer group "
            "(no heartbeat answered within half the session timeout, or the broker "
            "answered that it is out)",
            which,
        )

    async def _commit_written(self, w: Written) -> None:
        await self.app.producer.flush()  # 2. changelog records of the state just written
        if self.txn is not None:
            await self._check_delivered()
        await delivered(self.table.take_sent(), "changelog records")  # every one acknowledged
        self.changelog_behind = w.behind_before
        offsets = {
            TP(topic, part.partition): off
            for part, next_offsets, _ in w.parts
            for topic, off in next_offsets.items()
        }
        for part, next_offsets, done in w.parts:
            part.done = done
            part.committed = next_offsets
        if self.txn is not None:
            # Exchange records sent from here on are left for the next commit.
            self.exchanged -= {tp.partition for tp in offsets}
            await self.txn.commit(offsets)  # 3. offsets into the same transactions, committed
            self.last_commit = time.monotonic()
        elif offsets:
            self.app.consumer.ready_offsets.update(offsets)
            await self.app.consumer.commit()  # 3. input offsets, only now

    async def _finish_aside_task(self, taken: Taken) -> None:
        w = await self._written(taken)
        if w is None:
            return
        await self._finish(w)
        # Under the processor's lock, never between an engine's requests and the progress
        # that says they are all sent (CampaignExchange._send_requests).
        async with self.lock:
            await self._progress_after(w)

    async def _progress_after(self, w: Written) -> None:
        """Owners may drop figures these engines no longer need; not sent into the
        transaction of a partition that leaves, nor after the final checkpoint."""
        if not w.send_progress:
            return
        for part, _, _ in w.parts:
            if not self.closed and self.parts.get(part.partition) is part:
                await self._send_progress(part)


def _encode(row: TakenPart) -> tuple[bytes, bytes]:
    """A partition's state and journal blobs; its held windows' blob into `row.held`.
    Compression releases the GIL, so the encoder's threads use the second core."""
    row.held.encode()
    return row.state.encode(), checkpoint.encode_journal(row.journal)
