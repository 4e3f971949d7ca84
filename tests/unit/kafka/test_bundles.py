"""Forwarded events in bundles (streams/kafka/bundles.py): what a source packs is what its
engine unpacks, in the consumer thread (fetch.py) or the main one, whatever their bytes,
and a bundle whose header does not describe it is one unreadable event, never lost."""

from __future__ import annotations

import random

import numpy as np
import pytest

from streams.contract import _decode
from streams.kafka import _records
from streams.kafka.block import Block
from streams.kafka.bundles import (
    BUNDLE_HEADER,
    FROM_HEADER,
    from_header,
    origin,
    pack,
    unpack,
)
from streams.kafka.fetch import BulkPartitionRecords, RawMemoryRecords
from streams.kafka.watermarks import split_marks
from tests.unit.kafka.test_fetch import TP, _batch


def _events(rng: random.Random, n: int) -> list[bytes]:
    # Any bytes: newlines, quotes, NULs, empty values and long lines.
    alphabet = b'ab{}":,\n\r\x00\xff '
    out = []
    for _ in range(n):
        size = rng.choice([0, 1, 5, 40, 300, 5000])
        out.append(bytes(rng.choice(alphabet) for _ in range(size)))
    return out


@pytest.mark.parametrize("limit", [1, 64, 1000, 1 << 20])
def test_what_is_packed_is_unpacked_in_order_within_the_limit(limit: int):
    rng = random.Random(limit)
    for _ in range(50):
        events = _events(rng, rng.randrange(1, 80))
        offsets = sorted(rng.sample(range(10**12, 10**12 + 10**6), len(events)))
        bundles = pack(7, offsets, events, limit)
        got_offsets, got_events = [], []
        for value, header in bundles:
            source, at, some = unpack(value, header)  # type: ignore[misc]
            assert source == 7 and len(at) == len(some) >= 1
            # Past its first event, a bundle stays within the limit.
            assert len(some) == 1 or len(value) <= limit
            got_offsets += at
            got_events += some
        assert got_offsets == offsets and got_events == events
    assert pack(0, [], []) == []


def test_a_header_that_does_not_describe_its_bundle_is_refused():
    ((value, header),) = pack(2, [5, 6], [b"ab", b"cde"])
    assert unpack(value, header) == (2, [5, 6], [b"ab", b"cde"])
    assert unpack(value + b"x", header) is None  # lengths do not add up
    assert unpack(value[:-1], header) is None
    assert unpack(value, header[:-1]) is None  # not a whole header
    assert unpack(value, header[:8]) is None  # no event
    assert unpack(None, header) is None
    assert unpack(value, np.array([-1], "<i8").tobytes() + header[8:]) is None


def test_a_forward_from_before_bundles_names_where_it_was_read_the_last_such_header():
    assert origin([from_header(3, 17)]) == (3, 17)
    # A producer may have set the header itself; the worker's own comes last.
    assert origin([(FROM_HEADER, b"9 9"), ("x", b""), from_header(2, 5)]) == (2, 5)
    assert origin([(FROM_HEADER, b"garbage")]) is None
    assert origin([("x", b"1 2")]) is None


def _repartition_block() -> tuple[Block, list]:
    """Bundles, a mark, a forward from before bundles and a garbled bundle, at offsets
    40 to 44, and what each event should read as (repartition offset, origin, value)."""
    b1 = pack(0, [100, 101, 102], [b'{"a":1}', b'{"a":2}', b'{"a":3}'])[0]
    b2 = pack(5, [7], [b'{"a":4}'])[0]
    bad_value = b1[0] + b"!"
    values = [b1[0], b"", b'{"a":5}', b2[0], bad_value]
    headers = [
        ((BUNDLE_HEADER, b1[1]),),
        (("vigil-watermark", b"3 1.5"),),
        (("k", b"v"), from_header(2, 9)),
        ((BUNDLE_HEADER, b2[1]),),
        ((BUNDLE_HEADER, b1[1]),),
    ]
    block = Block([40, 41, 42, 43, 44], [None] * 5, values, headers)
    want = [
        (40, (0, 100), b'{"a":1}'),
        (40, (0, 101), b'{"a":2}'),
        (40, (0, 102), b'{"a":3}'),
        (42, (2, 9), b'{"a":5}'),
        (43, (5, 7), b'{"a":4}'),
        (44, (-1, -1), bad_value),  # read as one event: the engine dead-letters it
    ]
    return block, want


def _as_read(block: Block) -> list:
    sources, offsets = block.origins  # type: ignore[misc]
    origins = zip(sources.tolist(), offsets.tolist(), strict=True)
    return list(zip(block.offsets, origins, block.values, strict=True))


def test_a_repartition_block_is_unbundled_once_and_slices_keep_their_origins():
    block, want = _repartition_block()
    got = block.unbundled()
    # The mark at 41 is no row: it comes out with its offset, and the events keep theirs.
    assert _as_read(got) == want and got.unbundled() is got
    assert got.marks == [(41, 3, 1.5)]
    assert got.end_offset() == 45 and len(got.headers) == len(got.values)
    assert _as_read(got.since(42)) == want[3:] and got.since(42).marks == []
    assert got.since(40) is got and got.since(41).marks == [(41, 3, 1.5)]
    taken = got.take([5, 0, 3])
    assert _as_read(taken) == [want[5], want[0], want[3]] and taken.marks == got.marks
    # Blocks joined: a packed one is unpacked as it joins an unpacked one, either way.
    for first, second in ((got, block), (block, got)):
        joined = Block.empty()
        joined.extend(first)
        joined.extend(second)
        assert _as_read(joined) == want + want and joined.marks == got.marks * 2
    assert got.marks == [(41, 3, 1.5)]  # joining did not change the parts
    events, marks = split_marks(block)
    assert marks == [(3, 1.5)] and _as_read(events) == want
    # An empty record with an unreadable mark is an event like any other (dead-lettered).
    odd = Block([7], [None], [b""], [(("vigil-watermark", b"bad"),)]).unbundled()
    assert odd.values == [b""] and odd.marks == []
    nothing = Block([1, 2], [None, None], [b"x", b"y"], [(), ()]).unbundled()
    assert nothing.values == [b"x", b"y"] and nothing.origins[0].tolist() == [-1, -1]  # type: ignore[index]


def test_the_compiled_unbundle_matches_the_reference_whatever_the_header():
    """`_records.unbundle` (the worker's) against `unpack` (the reference), on bundles as
    packed and with their headers and values cut short, grown or with a bit flipped."""
    rng = random.Random(7)
    for trial in range(3000):
        events = _events(rng, rng.randint(1, 12))
        offsets = [rng.randint(0, 1 << 62) for _ in events]
        for value, header in pack(rng.randint(0, 63), offsets, events, rng.choice([1, 40, 4096])):
            variants = [(value, header), (value, header[: rng.randrange(len(header))])]
            variants += [(value + b"x", header), (value[:-1], header), (None, header)]
            flipped = bytearray(header)
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            variants.append((value, bytes(flipped)))
            for v, h in variants:
                assert _records.unbundle(v, h) == unpack(v, h), (trial, v, h)


def test_the_consumer_thread_unbundles_and_decodes_a_bundled_topic_s_fetch():
    events = [b'{"account_id":"acct_%d","ts":1790000000}' % i for i in range(30)]
    rows = [
        (None, value, [(BUNDLE_HEADER, header)])
        for value, header in pack(4, list(range(500, 530)), events, limit=400)
    ]
    assert 2 < len(rows) < 30
    try:
        BulkPartitionRecords.topics = frozenset({TP.topic})
        BulkPartitionRecords.bundled = frozenset({TP.topic})
        BulkPartitionRecords.decoded = {TP.topic: 4096}
        raw = _batch(10, rows)
        pr = BulkPartitionRecords(TP, RawMemoryRecords(raw), [], 10, None, None, True, 0)
        [got] = list(pr)
        assert got.values == events and got.origins[1].tolist() == list(range(500, 530))  # type: ignore[index]
        assert got.offsets[0] == 10 and got.end_offset() == 10 + len(rows)
        assert got.columns == (4096, _decode.decode(events, 4096))
    finally:
        BulkPartitionRecords.bundled = frozenset()
        BulkPartitionRecords.decoded = {}
