"""A checkpoint's second half: once its state is in the table, waiting for its records and
committing the input offsets it covers (docs/kafka.md, "Checkpoint order and the
processing guarantee"). A periodic checkpoint does this in a task of its own while the
engines go on ("Checkpoints finish beside the engines").

A mixin of the Processor, beside Persistence (persistence.py), which writes the state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from faust.types import TP

from streams.kafka.outputs import delivered

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
    lock: asyncio.Lock  # the processor's
    commit_lock: asyncio.Lock  # held by checkpoints and exchange commits
    finishing: asyncio.Future | None  # the checkpoint last finished aside
    exchange_commit_s: float
    exchanged: set[int]
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
            self.commit_lock.release()
        took = time.perf_counter() - w.started
        if self.withholding:
            self.withholding = False
            log.info("checkpoints written again: the consumer group answered")
        self.last_checkpoint = time.monotonic()
        self.pause = checkpoint_pause(self.interval, took, defer)
        self.settled = True
        self.metrics.last_checkpoint.set(time.time())
        self.wm.checkpoint_seconds.set(took)

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

    async def _finish_aside_task(self, w: Written) -> None:
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
