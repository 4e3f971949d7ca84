"""Which input partitions the group has read to their end (drained.py)."""

from __future__ import annotations

import asyncio
import logging

from faust.types import TP

from streams.kafka import drained
from streams.kafka.drained import DrainedReader, read_drained


class Offsets:
    """The two answers the reading asks the worker's consumer for, and the order it asks."""

    def __init__(self, ends: dict[int, int], committed: dict[int, int | None], fail=None):
        self.ends = ends
        self.committed = committed
        self.fail = fail
        self.asked: list[str] = []

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        self.asked.append("ends")
        if self.fail is not None:
            raise self.fail
        return {tp: self.ends[tp.partition] for tp in tps if tp.partition in self.ends}

    async def committed_offsets(self, tps: list[TP]) -> dict[TP, int | None]:
        self.asked.append("committed")
        return {tp: self.committed.get(tp.partition) for tp in tps}


def test_drained_are_the_partitions_committed_to_their_end():
    consumer = Offsets(
        ends={0: 100, 1: 100, 2: 0, 3: 5, 4: 7},
        committed={0: 100, 1: 99, 2: None, 3: None, 4: 9},  # 5: no end known
    )
    got = asyncio.run(read_drained(consumer, "in", 6))
    # 2 never had a record; 4's commit is past an end read before it; 3 was never committed.
    assert got.sources == {0: 100, 2: 0, 4: 7}
    assert consumer.asked == ["ends", "committed"]  # a commit then covers the end read


def test_the_reader_answers_as_soon_as_its_reading_is_in_and_only_when_wanted():
    async def run() -> list:
        consumer = Offsets({0: 3, 1: 4}, {0: 3, 1: 2})
        answers: list = []
        reader = DrainedReader(consumer, "in", 2, answers.append)
        reader.poll(wanted=False)
        await asyncio.sleep(0)
        assert consumer.asked == []  # nothing silent: nothing asked
        reader.poll(wanted=True)  # starts one
        reader.poll(wanted=True)  # still running: no second one
        await asyncio.sleep(0.01)
        assert consumer.asked == ["ends", "committed"]
        assert len(answers) == 1  # given on arrival, without waiting for the next poll
        reader.poll(wanted=True)
        await asyncio.sleep(0.01)
        return answers

    answers = asyncio.run(run())
    assert [a.sources for a in answers] == [{0: 3}, {0: 3}]
    assert answers[0].asked_at <= answers[1].asked_at


def test_a_failed_or_slow_reading_warns_and_lets_silence_decide(caplog, monkeypatch):
    monkeypatch.setattr(drained, "TIMEOUT_S", 0.05)

    class Slow(Offsets):
        async def committed_offsets(self, tps):
            await asyncio.sleep(1.0)

    async def run() -> list:
        answers: list = []
        for consumer in (Offsets({0: 1}, {}, fail=RuntimeError("no leader")), Slow({0: 1}, {})):
            reader = DrainedReader(consumer, "in", 1, answers.append)
            reader.poll(wanted=True)
            await asyncio.sleep(0.2)
        return answers

    with caplog.at_level(logging.WARNING, logger="streams.kafka.drained"):
        failed, slow = asyncio.run(run())
    assert failed.sources is None and slow.sources is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "RuntimeError: no leader" in warnings[0]
    assert "TimeoutError" in warnings[1]


def test_readings_are_counted_by_outcome():
    from prometheus_client import CollectorRegistry

    from streams.kafka.metrics import WorkerMetrics

    wm = WorkerMetrics(CollectorRegistry())

    async def run() -> None:
        for consumer in (Offsets({0: 1}, {0: 1}), Offsets({0: 1}, {}, fail=OSError("gone"))):
            reader = DrainedReader(consumer, "in", 1, lambda answer: None, wm.offset_readings)
            reader.poll(wanted=True)
            await asyncio.sleep(0.01)

    asyncio.run(run())
    assert wm.offset_readings.labels("ok")._value.get() == 1
    assert wm.offset_readings.labels("failed")._value.get() == 1


def test_closing_cancels_a_reading_in_flight():
    async def run() -> tuple:
        class Hanging(Offsets):
            async def highwaters(self, *tps):
                await asyncio.sleep(10)

        answers: list = []
        reader = DrainedReader(Hanging({}, {}), "in", 1, answers.append)
        reader.poll(wanted=True)
        task = reader._task
        reader.close()
        await asyncio.sleep(0)
        return task.cancelled(), answers

    cancelled, answers = asyncio.run(run())
    assert cancelled and answers == []
