"""The C walk of record batches must give what aiokafka's own reader gives."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from aiokafka import conn, errors
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from streams.contract import _decode
from streams.kafka import _records, fetch
from streams.kafka.block import Block
from streams.kafka.fetch import TIME_ROWS, BulkPartitionRecords, RawMemoryRecords

TP = TopicPartition("in", 0)


def _batch(base: int, rows: list, compression: int = 0, control: bool = False) -> bytes:
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for i, (key, value, headers) in enumerate(rows):
        assert b.append(i, timestamp=None, key=key, value=value, headers=headers) is not None
    raw = bytes(b.build())
    raw = struct.pack(">q", base) + raw[8:]
    if control:  # set the control bit, then fix the CRC over attributes onward
        attrs = struct.unpack(">h", raw[21:23])[0] | 0x20
        raw = raw[:21] + struct.pack(">h", attrs) + raw[23:]
        raw = raw[:17] + struct.pack(">I", _records.crc32c(raw[21:])) + raw[21:]
    return raw


def _rows(n: int, start: int = 0) -> list:
    out = []
    for i in range(start, start + n):
        key = None if i % 3 == 0 else f"k{i}".encode()
        value = None if i % 7 == 0 else b'{"account_id":"a%d","x":"%s"}' % (i, b"y" * i)
        headers = [("h", b"v%d" % i), ("n", None)] if i % 5 == 0 else []
        out.append((key, value, headers))
    return out


def _reference(raw: bytes, fetch_offset: int) -> Block:
    pr = fetcher.PartitionRecords(TP, MemoryRecords(raw), [], fetch_offset, None, None, True, 0)
    return Block.of(list(pr))


def _bulk(raw: bytes, fetch_offset: int) -> tuple[Block, int]:
    BulkPartitionRecords.topics = frozenset({TP.topic})
    pr = BulkPartitionRecords(TP, RawMemoryRecords(raw), [], fetch_offset, None, None, True, 0)
    return Block.of(list(pr)), pr.next_fetch_offset


def test_crc32c_matches_the_standard_check_value():
    assert _records.crc32c(b"123456789") == 0xE3069283


def test_walk_matches_aiokafka_on_plain_compressed_and_control_batches():
    batches = [
        (0, _batch(0, _rows(40))),
        (40, _batch(40, _rows(1, 40), control=True)),
        (41, _batch(41, _rows(30, 41), compression=1)),  # gzip: aiokafka's reader unpacks it
        (71, _batch(71, _rows(25, 71))),
    ]
    # A fetch starts with the batch holding its offset, so it may skip that batch's head.
    for start in (0, 17, 41, 55, 90):
        raw = b"".join(b for i, (base, b) in enumerate(batches) if _holds(batches, i, start))
        want = _reference(raw, start)
        got, next_offset = _bulk(raw, start)
        assert (got.offsets, got.keys, got.values, got.headers) == (
            want.offsets, want.keys, want.values, want.headers
        )  # fmt: skip
        assert (got.fetched_from, got.until) == (start, 96)
        assert got.offsets == [o for o in range(start, 96) if o != 40]  # control skipped
        assert next_offset == 96


def _holds(batches: list, i: int, start: int) -> bool:
    """Whether batch i is in a fetch from `start`: it or a later one holds that offset."""
    end = batches[i + 1][0] if i + 1 < len(batches) else 96
    return end > start


def test_a_partial_batch_at_the_end_is_left_for_the_next_fetch():
    whole = _batch(0, _rows(10)) + _batch(10, _rows(10, 10))
    got, next_offset = _bulk(whole[:-7], 0)
    assert got.offsets == list(range(10)) and next_offset == 10


def test_a_bad_crc_raises_as_aiokafka_does():
    raw = bytearray(_batch(0, _rows(5)))
    raw[-3] ^= 0xFF
    pr = BulkPartitionRecords(TP, RawMemoryRecords(bytes(raw)), [], 0, None, None, True, 0)
    with pytest.raises(errors.CorruptRecordException, match="Invalid CRC"):
        pr.walk(memoryview(bytes(raw)), Block.empty())
    with pytest.raises(errors.CorruptRecordException):
        _reference(bytes(raw), 0)


def test_the_worker_s_path_hands_over_a_bad_batch_instead_of_raising():
    good = _batch(0, _rows(5))
    bad = bytearray(_batch(5, _rows(4, 5)))
    bad[-3] ^= 0xFF  # CRC no longer matches: the header cannot be trusted
    after = _batch(9, _rows(3, 9))
    got, next_offset = _bulk(good + bytes(bad) + after, 0)
    assert got.offsets == [0, 1, 2, 3, 4]
    [c] = got.corrupt
    assert (c.offset, c.next_offset) == (5, 6) and "Invalid CRC" in c.reason
    assert c.raw == bytes(bad) and next_offset == 6 and got.end_offset() == 6


def test_a_bad_batch_with_a_sound_header_is_skipped_whole():
    raw = bytearray(_batch(10, _rows(4, 10)))
    raw[-1] = 0x7F  # the last record's last byte: a header count that runs past the record
    raw[17:21] = _records.crc32c(bytes(raw[21:])).to_bytes(4, "big")
    got, next_offset = _bulk(bytes(raw), 12)
    assert got.offsets == [] and got.corrupt[0].offset == 12 and next_offset == 14


def test_other_topics_keep_aiokafka_records():
    BulkPartitionRecords.topics = frozenset({"elsewhere"})
    raw = _batch(0, _rows(3))
    pr = BulkPartitionRecords(TP, RawMemoryRecords(raw), [], 0, None, None, True, 0)
    assert [r.offset for r in pr] == [0, 1, 2]


def test_install_swaps_aiokafka_s_fetch_objects():
    original = (fetcher.PartitionRecords, fetcher.MemoryRecords, conn.READER_LIMIT)
    try:
        fetch.install(frozenset({"in"}))
        assert fetcher.PartitionRecords is BulkPartitionRecords
        assert fetcher.MemoryRecords is RawMemoryRecords
        assert "in" in BulkPartitionRecords.topics
        assert conn.READER_LIMIT == fetch.READER_LIMIT
    finally:
        fetcher.PartitionRecords, fetcher.MemoryRecords, conn.READER_LIMIT = original


def test_block_since_and_take():
    b = Block([5, 6, 7], [None, b"k", None], [b"a", b"b", b"c"], [(), (), ()])
    assert b.since(6).offsets == [6, 7] and b.since(0) is b and len(b.since(8)) == 0
    assert b.take([0, 2]).values == [b"a", b"c"]


def test_a_fetch_of_markers_only_still_says_how_far_it_moved():
    # A read_committed fetch may hold only a transaction marker: no record, but the
    # position moves past it, and so must the engine's next offset (else the next Block,
    # read from after the marker, would look like it skipped offsets).
    got, next_offset = _bulk(_batch(40, _rows(1, 40), control=True), 40)
    assert got.offsets == [] and (got.fetched_from, got.until) == (40, 41)
    assert next_offset == 41 and got.end_offset() == 41


def test_a_routed_topic_s_blocks_say_where_each_account_belongs():
    """The consumer thread finds each input record's partition (Router.split uses it); a
    later slice keeps it aligned with its records, anything that joins Blocks drops it."""
    try:
        BulkPartitionRecords.routed = {TP.topic: (8, 0, -1)}
        got, _ = _bulk(_batch(10, _rows(40, 10)), 10)
        assert got.where == _decode.partitions(got.values, 8)
        assert (
            -1 in memoryview(got.where).cast("i") and len(set(memoryview(got.where).cast("i"))) > 2
        )
        later = got.since(25)
        assert later.where == _decode.partitions(later.values, 8) and len(later) == 25
        assert got.take([0, 1]).where is None
        joined = Block.empty()
        joined.extend(got)
        assert joined.where is None
        # Placed as librdkafka places keys (`[kafka] input_partitioner = "crc32"`).
        BulkPartitionRecords.routed = {TP.topic: (8, 1, -1)}
        crc, _ = _bulk(_batch(10, _rows(40, 10)), 10)
        assert crc.where == _decode.partitions(crc.values, 8, 1) != got.where
        # With the Router's line limit: a longer record stays (-1), as Router.split keeps it.
        limit = sorted(len(v) for v in got.values if v)[len(got) // 2]
        BulkPartitionRecords.routed = {TP.topic: (8, 0, limit)}
        capped, _ = _bulk(_batch(10, _rows(40, 10)), 10)
        placed = zip(
            memoryview(capped.where).cast("i"), memoryview(got.where).cast("i"), strict=True
        )
        for v, (here, there) in zip(capped.values, placed, strict=True):
            assert here == (-1 if v is not None and len(v) > limit else there)
        assert capped.where != got.where
        BulkPartitionRecords.routed = {}
        assert _bulk(_batch(10, _rows(4, 10)), 10)[0].where is None
    finally:
        BulkPartitionRecords.routed = {}


def test_a_decoded_topic_s_blocks_carry_their_events_decoded():
    """The consumer thread runs the compiled decoder over an input Block (the engine's
    thread uses the columns, Processor._apply) unless a record has no value; a slice from
    its start keeps them, and so do the rows a Block is cut down to (`take`: the records
    that stay when others are forwarded, those `fresh` keeps)."""
    rows = [(None, b'{"account_id":"acct_%d","ts":1790000000}' % i, []) for i in range(40)]
    try:
        BulkPartitionRecords.decoded = {TP.topic: 4096}
        got, _ = _bulk(_batch(10, rows), 10)
        assert got.columns == (4096, _decode.decode(got.values, 4096))
        assert got.columns_for(4096) == got.columns[1] and got.columns_for(100) is None
        assert got.since(10).columns is got.columns and got.since(11).columns is None
        some = got.take([5, 0, 7])
        assert some.columns is not None and some.columns[0] == 4096
        want = _decode.decode(some.values, 4096)
        assert [bytes(c) for c in some.columns[1]] == [bytes(c) for c in want]
        joined = Block.empty()
        joined.extend(got)
        assert joined.columns is None
        assert _bulk(_batch(10, _rows(8, 10)), 10)[0].columns is None  # offset 14: no value
    finally:
        BulkPartitionRecords.decoded = {}
        BulkPartitionRecords.routed = {}


def test_a_routed_block_decodes_the_rows_that_stay_and_its_last_ones():
    """Of an input Block whose accounts belong partly elsewhere, the consumer thread
    decodes the rows that stay (their partition's, and any it could not place) and the
    last TIME_ROWS, which its source reads its event time from; a Block cut down to rows
    among them keeps their columns, and to any other row, none."""
    rows = [
        (None, b'{"account_id":"acct_%d","ts":%d}' % (i, 1790000000 + i), []) for i in range(200)
    ]
    try:
        BulkPartitionRecords.decoded = {TP.topic: 4096}
        BulkPartitionRecords.routed = {TP.topic: (8, 0, -1)}
        mixed, _ = _bulk(_batch(10, rows), 10)
        where = np.frombuffer(mixed.where, np.int32)
        here = np.flatnonzero(where == TP.partition)
        assert 0 < len(here) < 200 - TIME_ROWS
        want = sorted({*here.tolist(), *range(200 - TIME_ROWS, 200)})
        assert mixed.columns_rows.tolist() == want
        assert mixed.columns_for(4096) is None  # not every row's
        decoded = mixed.decoded_for(4096)
        assert [bytes(c) for c in decoded] == [
            bytes(c) for c in _decode.decode([mixed.values[i] for i in want], 4096)
        ]
        stay = mixed.take(here.tolist())
        assert [bytes(c) for c in stay.columns_for(4096)] == [
            bytes(c) for c in _decode.decode(stay.values, 4096)
        ]
        elsewhere = int(np.flatnonzero(where != TP.partition)[0])
        assert elsewhere not in want and mixed.take([*here[:3].tolist(), elsewhere]).columns is None
        assert mixed.since(10).columns_rows is mixed.columns_rows
        assert mixed.since(11).columns is mixed.since(11).columns_rows is None
        # Every row staying: all of them decoded, as for a Block that is not routed.
        BulkPartitionRecords.routed = {TP.topic: (1, 0, -1)}
        whole, _ = _bulk(_batch(10, rows), 10)
        assert whole.columns_rows is None and whole.columns_for(4096) is not None
    finally:
        BulkPartitionRecords.decoded = {}
        BulkPartitionRecords.routed = {}


def test_a_fetch_is_read_as_it_arrives_and_the_position_moves_when_handed_over():
    # Walked in the client's thread when aiokafka builds the object; aiokafka compares the
    # position with the consumer's before handing anything over, so it must not move yet.
    good = _batch(0, _rows(5))
    bad = bytearray(_batch(5, _rows(4, 5)))
    bad[-3] ^= 0xFF
    raw = good + bytes(bad) + _batch(9, _rows(3, 9))
    BulkPartitionRecords.topics = frozenset({TP.topic})
    pr = BulkPartitionRecords(TP, RawMemoryRecords(raw), [], 2, None, None, True, 0)
    assert pr.ahead is not None and pr.next_fetch_offset == 2
    lazy = BulkPartitionRecords(TP, RawMemoryRecords(raw), [], 2, None, None, True, 0)
    lazy.ahead = None  # read when iterated, as before
    [ahead], [when_asked] = list(pr), list(lazy)
    for got in (ahead, when_asked):
        assert got.offsets == [2, 3, 4] and got.fetched_from == 2
        assert [(c.offset, c.next_offset) for c in got.corrupt] == [(5, 6)]
    assert pr.next_fetch_offset == lazy.next_fetch_offset == 6
    assert pr.ahead is None


def test_a_fetch_with_aborted_transactions_is_read_only_when_asked():
    BulkPartitionRecords.topics = frozenset({TP.topic})
    raw = _batch(0, _rows(3))
    committed = BulkPartitionRecords(TP, RawMemoryRecords(raw), [(7, 0)], 0, None, None, True, 1)
    assert committed.ahead is None and committed.next_fetch_offset == 0
    [block] = list(committed)
    assert block.offsets == [0, 1, 2] and committed.next_fetch_offset == 3
