"""Opening a partition's engine from its checkpoint, and writing checkpoints.

A checkpoint runs in this order: flush alerts, dead letters and snapshots (under
exactly_once, with the changelog instead); write engine state to the table; flush the
changelog; only then publish the input offsets for commit (under exactly_once: commit them
in the partition's transaction). This module takes the state from the engines; the rest,
encoding and writing it included, is checkpoint_commits.py, beside the engines for a
periodic checkpoint. The checkpoint
records the next offset it covers, so records between the last committed offset and the
checkpoint are skipped on resume instead of being counted twice.

A checkpoint that cannot be used stops the worker in one line (`UnusableCheckpoint`), or,
with `discard_unreadable_state`, is removed and the partition opens empty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from streams.kafka import checkpoint
from streams.kafka.campaign import CampaignExchange, done_in_state
from streams.kafka.checkpoint import UnusableCheckpoint
from streams.kafka.checkpoint_commits import EOS_MAX_PAUSE_S, CheckpointCommits, Taken, TakenPart
from streams.kafka.exchange_commits import EXCHANGE_WAIT_S, ExchangeCommits
from streams.kafka.routing import Router
from streams.runtime.checkpoint_codec import freeze_state

log = logging.getLogger(__name__)


@dataclass
class PartitionState:
    partition: int
    engine: Any
    next_offsets: dict[str, int] = field(default_factory=dict)  # topic -> next to commit
    dirty: bool = False
    clocks: Any = None  # watermarks.SourceClocks when records are repartitioned
    read_time: float = float("-inf")  # median event time of the last block of its input
    # The campaign exchange (campaign.py): the desk owning the keys routed here, the
    # figures this engine received, the progress last sent and checkpointed.
    desk: Any = None
    answers: Any = None
    parts: Any = None  # campaign_records.Parts: records received in part
    progress_sent: tuple[float, float] | None = None
    done: float = float("-inf")
    # Topic -> the input offset its last checkpoint covers (a restart resumes there):
    # under exactly_once, an exchange commit commits these again (`exchange_commit`).
    committed: dict[str, int] = field(default_factory=dict)
    # Source partition -> the input offset after the last event it forwarded that this
    # engine applied: copies below it are dropped (forwards.py). In the checkpoint.
    forwards: dict[int, int] = field(default_factory=dict)


class Persistence(CheckpointCommits, ExchangeCommits, CampaignExchange):
    """The Processor's state half; the Processor sets these in its __init__."""

    interval: float
    closed: bool
    pause: float
    last_checkpoint: float
    last_input: float  # when records of the input topic were last applied
    last_snapshots: float
    snapshot_interval: float
    discard_unreadable: bool
    make_engine: Any
    event_time: Any
    router: Router | None

    def _open(self, partition: int) -> PartitionState:
        try:
            part = self._restore(partition)
        except Exception as exc:  # noqa: BLE001 - any state that cannot be used, said below
            problem = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
            if not self.discard_unreadable:
                raise UnusableCheckpoint(
                    f"partition {partition}: its checkpoint cannot be used ({problem}). "
                    "Restore the state changelog topic, or start the worker with "
                    "--discard-unreadable-state to open such partitions empty from their "
                    "committed offsets, losing the events of their open windows"
                ) from None
            log.warning(
                "partition %d: its checkpoint cannot be used (%s); opened empty from the "
                "committed offsets (--discard-unreadable-state): the events of its open "
                "windows are lost",
                partition,
                problem,
            )
            checkpoint.discard(self.table, self.topics.input, partition)
            self.wm.state_discarded.inc()
            part = self._fresh(partition)
            self._open_exchange(part, None)
        self._checkpointed(part)  # what was restored is what a restart would restore
        part.committed = dict(part.next_offsets)
        self.parts[partition] = part
        return part

    def _fresh(self, partition: int) -> PartitionState:
        engine = self.make_engine()
        engine.journal_pending = True  # checkpoints store open events once (take_journal)
        part = PartitionState(partition, engine)
        if self.event_time is not None:
            part.clocks = self.event_time.clocks()
            engine.set_source_watermark(part.clocks.watermark(time.monotonic()))  # -inf: none
        return part

    def _restore(self, partition: int) -> PartitionState:
        """The partition's engine and campaign exchange from its latest checkpoint.
        Raises whatever makes the checkpoint unusable: a blob that does not decode, a
        changelog missing a chunk, another hash key, feature set or coding (resuming would
        mix codes), or a journal without the events of a window held for campaign figures."""
        part = self._fresh(partition)
        restored = checkpoint.read(self.table, self.topics.input, partition)
        if restored is None:
            self._open_exchange(part, None)
            return part
        state, manifest, journal = restored
        stray = checkpoint.sweep(self.table, self.topics.input, partition, manifest)
        if stray:
            log.info(
                "partition %d: deleted %d checkpoint chunk(s) no manifest names, left by a "
                "worker stopped between a checkpoint's writes and its deletes",
                partition,
                stray,
            )
        _check_placement(state.pop("placement", "murmur2"), self.router)
        exchange = state.pop("campaign_exchange", None)
        part.forwards = dict(state.pop("forwards_applied", {}))
        part.engine.load_state_dict(state)
        part.engine.restore_seen(
            checkpoint.read_seen(self.table, self.topics.input, partition, manifest)
        )
        part.engine.restore_pending(journal)
        part.next_offsets = dict(manifest.offsets)
        self._open_exchange(part, exchange)
        log.info("partition %d resumed from checkpoint %s", partition, manifest.offsets)
        return part

    async def checkpoint(self, partitions: set[int] | None = None, final: bool = False) -> None:
        """A checkpoint, finished when this returns (the worker's timer, a stop)."""
        async with self.lock:
            await self._checkpoint_locked(partitions, final)
            if final:  # nothing more is written: the stop may be marked clean (app.py)
                self.closed = True
        await self.finished()

    async def _checkpoint_locked(
        self, partitions: set[int] | None = None, final: bool = False
    ) -> None:
        """Writes a checkpoint; the processor's lock is held. A periodic one returns once
        its state is taken from the engines, and is encoded, written, waited for and
        committed beside them (`_finish_aside_task`, docs/kafka.md, "Checkpoints finish
        beside the engines"); one for partitions that leave, or the final one, returns
        when it is done."""
        # After an exchange commit or a checkpoint in flight, never beside them: one
        # committing a partition's transaction between this checkpoint's held outputs and
        # its state would publish those outputs with the previous checkpoint's offsets.
        # `_written` or `_finish` releases the commit lock.
        await self.commit_lock.acquire()
        try:
            self.raise_failed_commit()
            taken = await self._take(partitions, final)
        except BaseException:
            self._checkpoint_over()
            raise
        if taken is None:
            self._checkpoint_over()
        elif final or partitions is not None or not self._finish_aside():
            w = await self._written(taken)
            if w is not None:
                await self._finish(w)
                await self._progress_after(w)
        else:
            self.finishing = asyncio.ensure_future(self._finish_aside_task(taken))

    async def _take(self, partitions: set[int] | None, final: bool) -> Taken | None:
        """A checkpoint's state, taken from the engines (None: nothing to write). Only this
        part stops them: encoding it, the journal of a backlog's unscored windows above
        all, took up to about 1 s a checkpoint under the lock (docs/kafka.md,
        "Checkpoints encoded beside the engines")."""
        if self.closed:  # after the final checkpoint (app.py marks the stop clean)
            return None
        if not self._lease().holds():
            self._withhold(partitions)
            return None
        t0 = time.perf_counter()
        producer = self.app.producer
        now = time.monotonic()
        # Snapshots wait for their own interval, except when partitions leave this worker.
        snapshots = None
        if final or partitions is not None or now - self.last_snapshots >= self.snapshot_interval:
            snapshots = self._take_snapshots(partitions)
            self.last_snapshots = now
        await self._release_held(partitions)  # exactly_once: what waited for this checkpoint
        if self.txn is None:
            # 1. sinks: alerts, dead letters, forwards, delivered before the
            # state that says their events are done. Under exactly_once nothing is visible
            # before the commit, and `_finish` waits for them with the changelog.
            await producer.flush()
            await self._check_delivered()
        rows = []
        for p, part in self.parts.items():
            if not (part.dirty or p in self.touched):
                continue
            if partitions is not None and p not in partitions:
                continue
            # The open windows' events go into a journal segment, each event once, not
            # into every state blob; held windows into held segments (split_held). What is
            # taken no longer changes with the engine (freeze_state).
            lines, newest = part.engine.take_journal()
            seen = checkpoint.encode_seen(part.engine.take_seen())
            state = self._state_of(part)
            held = checkpoint.split_held(self.table, self.topics.input, p, state)
            row = TakenPart(
                part, freeze_state(state), lines, newest, seen, held, dict(part.next_offsets),
                part.engine.journal_floor, part.engine.seen_from, done_in_state(part),
            )  # fmt: skip
            rows.append(row)
            self.in_checkpoint.add(p)
            # What the engine does from here on goes into the next checkpoint.
            part.dirty = False
            self.touched.discard(p)
        send_progress = not final and partitions is None
        return Taken(rows, partitions, t0, send_progress, snapshots)

    def checkpoint_due(self, now: float) -> bool:
        """A slow checkpoint defers the next (`checkpoint_pause`). Under exactly_once by
        at most EOS_MAX_PAUSE_S, and exchange commits move the exchange between
        checkpoints (`exchange_commit_due`); with them off, the interval holds, and a
        checkpoint comes after EXCHANGE_WAIT_S while the exchange waits."""
        if self.finishing is not None and not self.finishing.done():
            return False  # the one finishing holds the commit lock
        if self.txn is None:
            pause = self.pause
        elif self.exchange_commit_s:
            pause = max(self.interval, min(self.pause, EOS_MAX_PAUSE_S))
        elif self._exchange_waits(now):
            pause = min(self.interval, EXCHANGE_WAIT_S)
        else:
            pause = self.interval
        return now - self.last_checkpoint >= pause

    def _state_of(self, part: PartitionState) -> dict:
        state = part.engine.state_dict(pending=False)
        exchange = self.exchange_state(part)
        if exchange is not None:
            state["campaign_exchange"] = exchange
        if part.forwards:
            state["forwards_applied"] = dict(part.forwards)
        if self.router is not None:
            state["placement"] = self.router.partitioner
        return state


def _check_placement(placed_by: str, router: Router | None) -> None:
    """A checkpoint's accounts were placed by one partitioner; under another they belong to
    other partitions, and their events would go to engines without their history.
    Checkpoints written before the setting existed were placed by murmur2."""
    if router is not None and placed_by != router.partitioner:
        raise ValueError(
            f"its accounts were placed by the {placed_by} partitioner, and "
            f"kafka.input_partitioner is {router.partitioner}; set it back to {placed_by} "
            "to resume from it"
        )
