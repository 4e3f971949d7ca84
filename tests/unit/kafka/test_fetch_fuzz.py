"""The C record-batch walk against aiokafka's pure-Python reader on mutated batches.

Seeded mutations of real fetch buffers (bytes flipped, set to edge values, inserted,
deleted; header fields overwritten; most with the CRC fixed afterwards so that the damage
reaches the records). For every buffer:

- the C walk either reads it or raises CorruptRecordException, never anything else;
- what it reads, aiokafka's reader reads too, record for record, with the same next offset;
- what it refuses, it hands nothing of the bad batch over, and what came before it is
  what aiokafka reads first.

Cases where aiokafka accepts what the C walk refuses are allowed (the C walk is stricter:
it checks offsets against the records read), and counted.
"""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from aiokafka import errors
from aiokafka.consumer import fetcher
from aiokafka.record import memory_records
from aiokafka.record.default_records import DefaultRecordBatchBuilder, _DefaultRecordBatchPy
from aiokafka.record.legacy_records import _LegacyRecordBatchPy
from aiokafka.record.util import decode_varint_py
from aiokafka.structs import TopicPartition

from streams.kafka import _records
from streams.kafka.block import Block
from streams.kafka.fetch import BulkPartitionRecords, RawMemoryRecords

TP = TopicPartition("in", 0)
CASES = 100_000
EDGE = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


@pytest.fixture
def pure_aiokafka(monkeypatch):
    """aiokafka's reader without its compiled extension: the reference.

    Its pure reader binds the compiled varint decoder when that is installed, which reads
    past the end of a garbled buffer (a segmentation fault here): the pure decoder too."""
    read_msg = _DefaultRecordBatchPy._read_msg
    monkeypatch.setattr(read_msg, "__defaults__", (decode_varint_py,))
    monkeypatch.setattr(memory_records, "DefaultRecordBatch", _DefaultRecordBatchPy)
    monkeypatch.setattr(memory_records, "LegacyRecordBatch", _LegacyRecordBatchPy)
    BulkPartitionRecords.topics = frozenset({TP.topic})


def _batch(rng: random.Random, base: int) -> tuple[bytes, int]:
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    n = rng.randint(1, 4)
    delta = 0
    for _ in range(n):
        key = None if rng.random() < 0.3 else b"k%d" % rng.randint(0, 99)
        value = None if rng.random() < 0.1 else b'{"account_id":"a%d"}' % rng.randint(0, 9)
        headers = [("h", b"v"), ("n", None)] if rng.random() < 0.3 else []
        ts = 1_790_812_800_000 + 7 * delta  # fixed: the bytes must not follow the clock
        b.append(delta, timestamp=ts, key=key, value=value, headers=headers)
        delta += 1 + (rng.random() < 0.2)  # gaps, as compaction leaves them
    raw = bytearray(b.build())
    raw[0:8] = struct.pack(">q", base)
    return _fix_crc(raw), base + delta


def _fix_crc(raw: bytearray) -> bytes:
    if len(raw) >= 21:
        raw[17:21] = _records.crc32c(bytes(raw[21:])).to_bytes(4, "big")
    return bytes(raw)


def _fetch(rng: random.Random) -> tuple[bytes, int]:
    base = rng.choice((0, 5, 1000, (1 << 62)))
    parts = []
    for _ in range(rng.randint(1, 2)):
        raw, base = _batch(rng, base)
        parts.append(raw)
    return b"".join(parts), len(parts[0])


def _mutate(rng: random.Random, raw: bytes, first_len: int) -> bytes:
    buf = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        i = rng.randrange(len(buf))
        if kind < 0.35:
            buf[i] ^= 1 << rng.randrange(8)
        elif kind < 0.55:
            buf[i] = rng.choice(EDGE)
        elif kind < 0.7:  # a header field of the first batch: offsets, lengths, counts
            at, size = rng.choice(((0, 8), (8, 4), (23, 4), (57, 4), (16, 1), (21, 2)))
            value = rng.choice((0, 1, -1, 2, 3, 0x7FFFFFFF, -0x80000000, rng.randrange(64)))
            fmt = {8: ">q", 4: ">i", 2: ">h", 1: ">b"}[size]
            lo, hi = -(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1
            buf[at : at + size] = struct.pack(fmt, max(lo, min(hi, value)))
        elif kind < 0.85:
            buf.insert(i, rng.choice(EDGE))
        elif len(buf) > 1:
            del buf[i]
    if rng.random() < 0.8:  # fix the CRC, so that the damage reaches the records
        head = bytearray(buf[:first_len])
        buf = bytearray(_fix_crc(head) + bytes(buf[first_len:]))
    if rng.random() < 0.1:
        buf = buf[: rng.randrange(len(buf) + 1)]
    return bytes(buf)


def _c_walk(raw: bytes, fetch_offset: int) -> tuple[Block, int, Exception | None]:
    pr = BulkPartitionRecords(TP, RawMemoryRecords(raw), [], fetch_offset, None, None, True, 0)
    block = Block.empty()
    try:
        pr.walk(memoryview(raw), block)
    except errors.CorruptRecordException as exc:
        return block, pr.next_fetch_offset, exc
    return block, pr.next_fetch_offset, None


def _aiokafka(raw: bytes, fetch_offset: int) -> tuple[Block, int, Exception | None]:
    records = memory_records._MemoryRecordsPy(raw)
    pr = fetcher.PartitionRecords(TP, records, [], fetch_offset, None, None, True, 0)
    got: list = []
    try:
        for r in pr:
            got.append(r)
    except Exception as exc:  # any refusal: Corrupt, struct.error, IndexError, ...
        return Block.of(got), pr.next_fetch_offset, exc
    return Block.of(got), pr.next_fetch_offset, None


def _same(a: Block, b: Block) -> bool:
    return (a.offsets, a.keys, a.values, a.headers) == (b.offsets, b.keys, b.values, b.headers)


def test_the_c_walk_reads_only_what_aiokafka_reads(pure_aiokafka, figures):
    rng = random.Random(20261019)
    tally: Counter = Counter()
    for case in range(CASES):
        raw, first_len = _fetch(rng)
        fetch_offset = struct.unpack(">q", raw[:8])[0] + rng.choice((0, 0, 1, 2))
        bad = _mutate(rng, raw, first_len)
        c_block, c_next, c_err = _c_walk(bad, fetch_offset)
        a_block, a_next, a_err = _aiokafka(bad, fetch_offset)
        if c_err is None:
            tally["accepted"] += 1
            assert a_err is None, (case, bad.hex(), a_err)
            assert _same(c_block, a_block), (case, bad.hex())
            assert c_next == a_next, (case, bad.hex(), c_next, a_next)
        else:
            tally["refused by both" if a_err is not None else "refused by C only"] += 1
            # What came before the bad batch is what aiokafka read first.
            n = len(c_block)
            assert _same(c_block, a_block.take(range(n))) and len(a_block) >= n, (case, bad.hex())
    figures(f"fetch fuzz: {dict(tally)}")
    assert tally["accepted"] > CASES // 10 and tally["refused by both"] > CASES // 10


def test_unmutated_fetches_read_the_same_in_both(pure_aiokafka):
    rng = random.Random(7)
    for _ in range(2_000):
        raw, _ = _fetch(rng)
        # A fetch starts inside its first batch, perhaps past its first records.
        start = struct.unpack(">q", raw[:8])[0] + rng.randint(0, 1) * (raw[60] > 1)
        c_block, c_next, c_err = _c_walk(raw, start)
        a_block, a_next, a_err = _aiokafka(raw, start)
        assert c_err is None and a_err is None
        assert _same(c_block, a_block) and c_next == a_next


def test_a_lying_last_offset_delta_is_refused(pure_aiokafka):
    """A header that claims fewer offsets than its records use must not move the
    position: the old walk trusted it and skipped or repeated records."""
    rng = random.Random(3)
    raw, _ = _batch(rng, 100)
    buf = bytearray(raw)
    buf[23:27] = struct.pack(">i", 0)  # lastOffsetDelta 0, while the records go further
    count = struct.unpack(">i", bytes(buf[57:61]))[0]
    bad = _fix_crc(buf)
    block, _, err = _c_walk(bad, 100)
    assert count > 1 and isinstance(err, errors.CorruptRecordException) and len(block) == 0


def test_offsets_near_the_int64_limit_are_refused_not_wrapped(pure_aiokafka):
    rng = random.Random(4)
    raw, _ = _batch(rng, (1 << 63) - 2)
    block, _, err = _c_walk(raw, (1 << 63) - 2)
    assert isinstance(err, errors.CorruptRecordException) and len(block) == 0


def test_a_garbled_legacy_batch_is_a_kafka_error_not_a_system_error():
    # magic 1 with a length that cuts its single message short
    msg = struct.pack(">qi", 0, 20) + b"\x00" * 4 + b"\x01\x00" + b"\x00" * 14
    pr = BulkPartitionRecords(TP, RawMemoryRecords(msg), [], 0, None, None, True, 0)
    with pytest.raises(errors.CorruptRecordException):
        pr.walk(memoryview(msg), Block.empty())
