"""The batch consumer's positions after a rebalance (streams/kafka/consumer.py)."""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.kafka.consumer import BatchConsumer
from tests.unit.kafka.fakes import IN, LOG, REP, run_async


def test_seek_to_committed_also_positions_input_partitions_without_a_commit(monkeypatch):
    # What aiokafka's seek_to_committed reports: it seeks only offsets above 0, so after a
    # rebalance in which the drain loop discarded fetched records, partitions 0 and 1 and
    # the repartition partition would stay past those records.
    committed = {TP(IN, 0): None, TP(IN, 1): 0, TP(IN, 2): 57, TP(REP, 0): None, TP(LOG, 0): None}

    async def client_seek_to_committed(self: Any) -> dict:
        return committed

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", client_seek_to_committed)
    sought: list[TP] = []

    class Thread:
        async def seek_to_beginning(self, *tps: TP) -> None:
            sought.extend(tps)

    consumer = object.__new__(BatchConsumer)
    consumer.batch_topics = frozenset({IN, REP})
    consumer._thread = Thread()
    assert run_async(consumer.seek_to_committed()) == committed
    # Changelog partitions are left to Faust's recovery, which seeks them itself.
    assert sorted(sought) == [TP(IN, 0), TP(IN, 1), TP(REP, 0)]
