"""`exactly_once`: every output of an input partition in that partition's Kafka transaction.

Faust keeps one transactional producer per assigned partition (its transactional id names
the consumer group, the topic group and the partition) and, under `exactly_once`, commits
input offsets through them. The worker produces its own outputs, so it names that producer
itself: alerts, dead letters, snapshots, records forwarded to the repartition topic and
event-time marks made while processing partition p all go into p's open transaction, and
so does the state table's changelog, which Faust routes by its partition (p as well). A
checkpoint then commits p's input offsets into the same transaction and commits it:
outputs, state and offsets become visible to `read_committed` readers together, or not
at all. A worker that dies mid-transaction is fenced by the next owner of p, whose
producer, opening with the same transactional id, aborts what was left open.

What the worker keeps locally must not run ahead of the committed changelog either, or a
restarted worker would resume from state whose outputs were aborted. So under
`exactly_once` the state table lives in memory: a restarted worker, or one that receives a
partition from another, rebuilds it from the committed changelog (build_worker picks the
store).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced
from faust.types import TP

log = logging.getLogger(__name__)

EXACTLY_ONCE = "exactly_once"


def table_settings(guarantee: str) -> dict[str, Any]:
    """Faust settings for the state table under `guarantee`.

    Under exactly_once: in memory (see the module's docstring), and without standby
    replicas. A standby follows the changelog as it is written; promoted to active while
    the previous owner's transaction is still being aborted, Faust finds its position past
    the changelog's last stable offset and stops the worker (`ConsistencyError`, seen in
    the fault soak). Without standbys a new owner reads the committed changelog from its
    start, which makes failover slower."""
    if guarantee == EXACTLY_ONCE:
        return {"store": "memory://", "table_standby_replicas": 0}
    return {"store": "rocksdb://"}


class Transactions:
    """Which transaction an output joins, and committing offsets with it."""

    def __init__(self, app: Any, input_topic: str) -> None:
        self.app = app
        self.input_topic = input_topic

    def id_for(self, partition: int) -> str:
        """The transactional id of Faust's producer for input partition `partition`."""
        return self._id_of(TP(self.input_topic, partition))

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        """Sends the offsets into their partitions' transactions, commits them and opens
        the next ones. Partitions whose offsets did not move are committed too: their open
        transaction may hold outputs (marks, windows an idle source let close).

        The partitions' transactions are committed side by side. Faust's own commit
        goes through them one after another, three round trips to the broker each
        (the offsets, the commit, the markers), and the engines wait for it: on the
        benchmark's 4 h topic, 8 partitions, 78 commits took 3.8 s of a worker's drain,
        and side by side 0.6 s (docs/kafka-measured.md). Each transaction has its own
        producer, so nothing orders one partition's commit before another's."""
        by_id: dict[str, dict[TopicPartition, int]] = defaultdict(dict)
        for tp, offset in offsets.items():
            # aiokafka's send_offsets_to_transaction takes only its own TopicPartition,
            # which Faust's TP (a namedtuple of the same fields) is not.
            by_id[self._id_of(tp)][TopicPartition(tp.topic, tp.partition)] = offset
        if not by_id:
            return
        producer, group_id = self.app.producer, self.app.conf.id
        try:
            await asyncio.gather(
                *(
                    producer.commit_transactions({tid: offs}, group_id, start_new_transaction=True)
                    for tid, offs in by_id.items()
                )
            )
        except ProducerFenced as exc:  # another worker owns the partition now: as Faust does
            log.warning("producer fenced: %s", exc)
            await self.app.crash(exc)

    def _id_of(self, tp: TP) -> str:
        # Faust's transactional id for a partition of any of its topics (id_for's rule).
        group = self.app.assignor.group_for_topic(tp.topic)
        return f"{self.app.conf.id}-{group}-{tp.partition}"


def fallback_partition(candidates: Iterable[int]) -> int | None:
    """The transaction for an output that belongs to no input partition (a webhook's dead
    letter, a snapshot of an account whose partition left): any partition still owned."""
    owned = sorted(candidates)
    return owned[0] if owned else None
