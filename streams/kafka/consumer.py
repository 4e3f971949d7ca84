"""A Faust consumer that hands the input topic to Vigil in whole fetched batches.

Faust delivers every record through its conductor one at a time: a ConsumerMessage, an
Event, a queue hop and, in the drain loop, an `asyncio.wait` over two coroutines per record.
On a local broker that caps a worker near 7k records/s while a bare aiokafka consumer drains
the same topic at over 250k/s. Everything else Faust does (group membership, the table
assignor, changelog recovery, standby replicas, commits) is untouched: only records of the
input topics skip the per-record path, and they are committed from offsets that Vigil
publishes after its own checkpoint, never from Faust's per-message acks.

Like Faust's own `getmany`, the drain loop discards records fetched while a rebalance is
under way (flow stopped, partition paused or revoked). The client's position has already
moved past them, so they are read again only because every assignment ends with Faust's
`perform_seek`; `seek_to_committed` below makes that seek cover every input partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.kafka.block import Block
from streams.kafka.checkpoint import UnusableCheckpoint
from streams.kafka.internals import ConsumerHooks
from streams.runtime.process import exit_at_once

# The exit status of a worker stopped by a checkpoint it cannot use.
UNUSABLE_CHECKPOINT_EXIT = 3

# Called with (tp, records) for the input topics: all records fetched for tp, as columns.
BatchHandler = Callable[[TP, Block], Awaitable[None]]


class BatchConsumer(ConsumerHooks):
    """Faust's aiokafka consumer with a batch path for the topics in `batch_topics`.

    Its aiokafka consumer waits `fetch_max_wait_ms` at most (ConsumerHooks). aiokafka keeps
    one fetch in flight per broker and leaves out of it the partitions whose records are
    still waiting for the engine. A fetch sent then asks only for partitions with nothing
    new (the repartition topic, changelogs), and the broker holds it for up to
    fetch_max_wait_ms; until it answers, no input partition on that broker is fetched.
    Faust passes 1500 ms, which left the engine idle for about 40% of a backlog's drain.
    """

    batch_topics: frozenset[str] = frozenset()
    batch_handler: BatchHandler | None = None
    # Called between fetches, where partitions may be paused or resumed: the records of a
    # fetch are checked against the live set of active partitions while they are handed over.
    between_fetches: Callable[[], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Next offset to commit per input partition, set only after a checkpoint.
        self.ready_offsets: dict[TP, int] = {}

    # -- commits -------------------------------------------------------------------
    def extra_commit_partitions(self, topics: Any) -> Iterator[TP]:
        for tp in list(self.ready_offsets):
            if not self.has_acks(tp) and (topics is None or tp in topics or tp.topic in topics):
                yield tp

    def offset_to_commit(self, tp: TP) -> int | None:
        if tp.topic in self.batch_topics:
            return self.ready_offsets.get(tp)
        return super().offset_to_commit(tp)

    def forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self.ready_offsets.pop(tp, None)

    # -- positions -----------------------------------------------------------------
    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seeks every assigned partition to its committed offset, input partitions too.

        aiokafka seeks only partitions whose committed offset is above 0 and leaves the
        others where the last fetch left them. An input partition with no commit yet (a new
        group, or one whose first checkpoint has not committed) would then skip for good
        any records the drain loop discarded during the rebalance. The worker resets to
        the earliest offset (app.py), so such partitions go back to the beginning: records
        below a restored checkpoint are skipped by the Processor, not counted twice.
        """
        committed = await super().seek_to_committed()
        unpositioned = [
            tp for tp, off in committed.items() if tp.topic in self.batch_topics and not off
        ]
        if unpositioned:
            await self.seek_partitions_to_beginning(*unpositioned)
        return committed

    # -- fetching ------------------------------------------------------------------
    async def drain(self, fetcher: Any) -> None:  # pragma: no cover - long loop
        batch_topics = self.batch_topics
        handler = self.batch_handler
        try:
            while not self.stopping(fetcher):
                if self.between_fetches is not None:
                    self.between_fetches()
                records, active = await self.next_records(1.0)
                await asyncio.sleep(0)
                if not records or self.should_stop:
                    continue
                generation = self.app.consumer_generation_id
                for tp, batch in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        # A rebalance started: the rest is fetched again after the seek
                        # that ends the next assignment, by whichever worker owns it then.
                        break
                    if active is not None and tp not in active and not self.is_buffered(tp):
                        # Paused for recovery after the fetch returned: likewise read
                        # again after the seek that ends the assignment.
                        continue
                    if not batch:
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    if tp.topic in batch_topics and handler is not None:
                        block = Block.of(batch)
                        await handler(tp, block)
                        # A Block may hold only a batch that could not be read.
                        self.mark_read(tp, block.end_offset() - 1)
                        continue
                    await self.deliver_each(tp, batch)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except UnusableCheckpoint as exc:
            exit_at_once(str(exc), UNUSABLE_CHECKPOINT_EXIT)
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer
