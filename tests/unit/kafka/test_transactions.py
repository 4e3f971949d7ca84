"""What exactly_once changes in the worker's settings, and where an orphan output goes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced
from faust.types import TP

from streams.kafka.transactions import (
    EXACTLY_ONCE,
    Transactions,
    fallback_partition,
    table_settings,
)


def test_exactly_once_keeps_state_in_memory_without_standbys():
    # A local store would keep writes of aborted transactions; a standby promoted while
    # an abort is under way stops the worker (docs/kafka.md, "exactly_once").
    assert table_settings(EXACTLY_ONCE) == {"store": "memory://", "table_standby_replicas": 0}
    assert table_settings("at_least_once") == {"store": "rocksdb://"}


def test_an_output_of_no_partition_joins_the_lowest_owned_one():
    assert fallback_partition({5, 2, 7}) == 2
    assert fallback_partition(iter([3])) == 3
    assert fallback_partition(set()) is None


class _Producer:
    """Faust's producer as Transactions.commit uses it: one call per transactional id."""

    def __init__(self, fenced: str | None = None) -> None:
        self.calls: list[tuple[dict, str, bool]] = []
        self.running = 0
        self.overlapped = 0
        self.fenced = fenced

    async def commit_transactions(self, by_id: dict, group_id: str, start_new_transaction: bool):
        self.calls.append((by_id, group_id, start_new_transaction))
        self.running += 1
        await asyncio.sleep(0.01)  # the broker's round trips
        self.overlapped = max(self.overlapped, self.running)
        self.running -= 1
        if self.fenced in by_id:
            raise ProducerFenced()


class _App:
    def __init__(self, producer: _Producer) -> None:
        self.producer = producer
        self.conf = SimpleNamespace(id="vigil")
        self.assignor = SimpleNamespace(group_for_topic=lambda topic: 0)
        self.crashed: list[BaseException] = []

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


def test_each_partitions_transaction_commits_its_offsets_side_by_side():
    producer = _Producer()
    txn = Transactions(_App(producer), "in")
    offsets = {TP("in", 0): 5, TP("in-by-account", 0): 2, TP("in", 3): 9}
    asyncio.run(txn.commit(offsets))
    by_id = {tid: offs for call, _, _ in producer.calls for tid, offs in call.items()}
    assert by_id == {
        "vigil-0-0": {TopicPartition("in", 0): 5, TopicPartition("in-by-account", 0): 2},
        "vigil-0-3": {TopicPartition("in", 3): 9},
    }
    assert all(type(tp) is TopicPartition for offs in by_id.values() for tp in offs)
    assert {(g, new) for _, g, new in producer.calls} == {("vigil", True)}
    assert producer.overlapped == 2  # not one after another
    assert txn.id_for(3) == "vigil-0-3"
    asyncio.run(txn.commit({}))
    assert len(producer.calls) == 2


def test_a_fenced_producer_crashes_the_app_as_faust_does():
    producer = _Producer(fenced="vigil-0-1")
    app = _App(producer)
    asyncio.run(Transactions(app, "in").commit({TP("in", 0): 1, TP("in", 1): 1}))
    assert len(app.crashed) == 1 and isinstance(app.crashed[0], ProducerFenced)
