"""A record batch that cannot be read is dead-lettered by the worker, which goes on."""

from __future__ import annotations

from aiokafka.structs import TopicPartition
from faust.types import TP

from streams.kafka.block import Block, CorruptBatch
from streams.kafka.fetch import BulkPartitionRecords, RawMemoryRecords
from tests.unit.kafka.fakes import IN, every_partition, make_processor, run_async
from tests.unit.kafka.test_fetch import _batch, _rows


def _fetched(raw: bytes, fetch_offset: int) -> tuple[Block, int]:
    """What the worker's fetch path hands over for these fetched bytes."""
    BulkPartitionRecords.topics = frozenset({IN})
    tp = TopicPartition(IN, 0)
    pr = BulkPartitionRecords(tp, RawMemoryRecords(raw), [], fetch_offset, None, None, True, 0)
    return Block.of(list(pr)), pr.next_fetch_offset


def test_a_corrupt_batch_is_dead_lettered_with_partition_and_offset_and_the_stream_goes_on():
    good = _batch(0, _rows(5))
    bad = bytearray(_batch(5, _rows(3, 5)))
    bad[-2] ^= 0x55  # the CRC no longer matches
    block, position = _fetched(good + bytes(bad), 0)
    assert block.offsets == [0, 1, 2, 3, 4] and position == 6

    assignment = every_partition(4, (IN,))
    proc, _ = make_processor(assignment)

    def rejected() -> float | None:
        return proc.metrics.registry.get_sample_value(
            "vigil_events_rejected_total", {"reason": "corrupt_batch"}
        )

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 0), block)
        part = proc.parts[0]
        assert len(part.engine.lines) == 4  # five records, one a tombstone
        dead = [s for s in proc.app.producer.sent if s[0] == "t-dead"]
        corrupt = [dict(s[5]) for s in dead if dict(s[5])["vigil-reason"] == b"corrupt_batch"]
        [headers] = corrupt
        assert headers["vigil-source-partition"] == b"0"
        assert headers["vigil-source-offset"] == b"5"
        assert b"Invalid CRC" in headers["vigil-detail"] and b"offset 5" in headers["vigil-detail"]
        assert rejected() == 1
        # Committed past the bad offset, so a restart does not stop on it again...
        assert part.next_offsets == {IN: 6}
        # ... and the broker's next answer, from offset 6, is read on.
        after, position = _fetched(bytes(bad) + _batch(8, _rows(2, 8)), 6)
        assert after.corrupt and after.corrupt[0].offset == 6 and position == 7
        await proc.on_batch(TP(IN, 0), after)
        assert rejected() == 2 and part.next_offsets == {IN: 7}
        # Offset 7, the bad batch's last, is dead-lettered in turn, then the stream goes on.
        again, position = _fetched(bytes(bad) + _batch(8, _rows(2, 8)), 7)
        await proc.on_batch(TP(IN, 0), again)
        assert rejected() == 3 and part.next_offsets == {IN: 8} and position == 8
        later, position = _fetched(_batch(8, _rows(2, 8)), 8)
        await proc.on_batch(TP(IN, 0), later)
        assert part.next_offsets == {IN: 10} and len(part.engine.lines) == 6

    run_async(scenario())


def test_a_bad_batch_already_behind_a_restored_checkpoint_is_not_dead_lettered_twice():
    bad = CorruptBatch(5, 6, "Invalid CRC", b"\x00" * 30)
    block = Block([6, 7], [None, None], [b"a", b"b"], [(), ()], [bad])
    assert block.since(5).corrupt == [bad] and block.since(5) is block
    assert block.since(6).corrupt == [] and block.since(6).offsets == [6, 7]
    assert Block([], [], [], [], [bad]).since(6).corrupt == []
    assert block.end_offset() == 8 and Block([], [], [], [], [bad]).end_offset() == 6
