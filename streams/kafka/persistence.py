"""Opening a partition's engine from its checkpoint, and writing checkpoints.

A checkpoint runs in this order: flush alerts, dead letters and snapshots (under
exactly_once, with the changelog instead); write engine state to the table; flush the
changelog; only then publish the input offsets for commit (under exactly_once: commit them
in the partition's transaction). This module writes the state; the rest is
checkpoint_commits.py, beside the engines for a periodic checkpoint. The checkpoint
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
from streams.kafka.checkpoint_commits import EOS_MAX_PAUSE_S, CheckpointCommits, Written
from streams.kafka.exchange_commits import EXCHANGE_WAIT_S, ExchangeCommits
from streams.kafka.lease import NO_LEASE, held_for_writes
from streams.kafka.routing import Router

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

    table: Any
    encoder: Any
    interval: float
    group_lease: Any  # () -> internals.GroupLease | None
    withholding: bool
    changelog_behind: bool
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
        its state is written, and waits for its records and commits beside the engines
        (`_finish`, docs/kafka.md, "Checkpoints finish beside the engines"); one for
        partitions that leave, or the final one, returns when it is done."""
        # After an exchange commit or a checkpoint in flight, never beside them: one
        # committing a partition's transaction between this checkpoint's held outputs and
        # its state would publish those outputs with the previous checkpoint's offsets.
        # `_finish` releases the commit lock.
        await self.commit_lock.acquire()
        try:
            self.raise_failed_commit()
            done = await self._checkpoint_written(partitions, final)
        except BaseException:
            self.commit_lock.release()
            raise
        if done is None:
            self.commit_lock.release()
        elif final or partitions is not None or not self._finish_aside():
            await self._finish(done)
            await self._progress_after(done)
        else:
            self.finishing = asyncio.ensure_future(self._finish_aside_task(done))

    async def _checkpoint_written(self, partitions: set[int] | None, final: bool) -> Written | None:
        """A checkpoint up to its state written to the table (None: nothing to finish)."""
        if self.closed:  # after the final checkpoint (app.py marks the stop clean)
            return None
        if not self._lease().holds():
            self._withhold(partitions)
            return None
        t0 = time.perf_counter()
        producer = self.app.producer
        now = time.monotonic()
        # Snapshots wait for their own interval, except when partitions leave this worker.
        if final or partitions is not None or now - self.last_snapshots >= self.snapshot_interval:
            await self._send_snapshots(partitions)
            self.last_snapshots = now
        await self._release_held(partitions)  # exactly_once: what waited for this checkpoint
        if self.txn is None:
            # 1. sinks: alerts, dead letters, snapshots, forwards, delivered before the
            # state that says their events are done. Under exactly_once nothing is visible
            # before the commit, and `_finish` waits for them with the changelog.
            await producer.flush()
            await self._check_delivered()
        written = [
            part
            for p, part in self.parts.items()
            if (part.dirty or p in self.touched) and (partitions is None or p in partitions)
        ]
        # The open windows' events go into journal segments, each event once, not into
        # every state blob. Encoded side by side in threads: compression releases the GIL,
        # so the second core does part of it. Engines are not touched meanwhile: the lock
        # is held.
        loop = asyncio.get_running_loop()
        journals = [part.engine.take_journal() for part in written]
        seen = [part.engine.take_seen() for part in written]
        states = [self._state_of(part) for part in written]
        # Held windows go into held segments, each once (checkpoint.split_held).
        held = [
            checkpoint.split_held(self.table, self.topics.input, part.partition, state)
            for part, state in zip(written, states, strict=True)
        ]
        blobs = await asyncio.gather(
            *(
                loop.run_in_executor(self.encoder, _encode, state, lines, ids, h)
                for state, (lines, _), ids, h in zip(states, journals, seen, held, strict=True)
            )
        )
        if written and not await held_for_writes(self._lease()):
            # Out of the group: the revoke that follows drops these engines, journals
            # taken and all, and their partitions resume elsewhere from the changelog.
            self._withhold(partitions)
            return None
        # Local writes the changelog may not hold: a clean stop needs none (app.py). Once a
        # checkpoint fails between its writes and their acknowledgement, it stays so for
        # this run: what the producer dropped is not sent again.
        behind_before = self.changelog_behind
        self.changelog_behind = self.changelog_behind or bool(written)
        for part, (blob, journal, ids), (_, newest), h in zip(
            written, blobs, journals, held, strict=True
        ):
            size = checkpoint.write(
                self.table,
                self.topics.input,
                part.partition,
                blob,
                part.next_offsets,
                journal,
                newest,
                part.engine.journal_floor,
                ids,
                part.engine.seen_from,
                h,
            )
            self.wm.checkpoint_bytes.labels(str(part.partition)).set(size)
        for part in written:  # what the engines do from here on goes into the next one
            part.dirty = False
            self.touched.discard(part.partition)
        return Written(
            [(part, dict(part.next_offsets), done_in_state(part)) for part in written],
            behind_before,
            t0,
            send_progress=not final and partitions is None,
        )

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


def _encode(
    state: Any, lines: list[bytes], seen: list, held: checkpoint.HeldWindows
) -> tuple[bytes, bytes, list]:
    held.encode()
    return (
        checkpoint.encode_state(state),
        checkpoint.encode_journal(lines),
        checkpoint.encode_seen(seen),
    )
