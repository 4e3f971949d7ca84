"""Which partition an account belongs to, finding the account in a raw event, and the
router's split of a Block (streams/kafka/routing.py)."""

from __future__ import annotations

import logging
import random
import zlib

import numpy as np
import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from streams.contract import _decode
from streams.kafka.block import Block
from streams.kafka.routing import Router, account_of, partition_for
from tests.unit.kafka.fakes import (
    block_of,
)


@pytest.mark.parametrize("key", [b"acct_000001", b"a", b"", "ünïcode".encode(), b"x" * 97])
def test_partition_matches_kafka_python_default_partitioner(key):
    # kafka-python's murmur2 is a separate implementation of the Java client's hash.
    for n in (1, 4, 8, 12):
        assert partition_for(key, n) == (kafka_python_murmur2(key) & 0x7FFFFFFF) % n


def test_account_of_fast_and_slow_paths():
    assert account_of(b'{"ts": 1, "account_id":"acct_7", "x": 2}') == b"acct_7"
    assert account_of(b'{"account_id" : "acct_8"}') == b"acct_8"  # spacing: slow path
    assert account_of(b'{"account_id":"a\\"b"}') == b'a"b'  # escape: slow path
    assert account_of(b'{"account_id": 42}') is None
    assert account_of(b'{"account_id": ""}') is None
    assert account_of(b"not json") is None
    assert account_of(b"[1, 2]") is None
    assert account_of(b"") is None
    assert account_of(None) is None


def test_router_keeps_unreadable_records_local():
    router = Router(8)
    mine = [a for a in (f"acct_{i}" for i in range(200)) if partition_for(a.encode(), 8) == 3]
    other = [a for a in (f"acct_{i}" for i in range(200)) if partition_for(a.encode(), 8) != 3]
    values = [
        b'{"account_id":"%s"}' % mine[0].encode(),
        b'{"account_id":"%s"}' % other[0].encode(),
        b"{broken",
    ]
    recs = block_of(values, headers=[(), (("h", b"1"),), ()])
    local, foreign = router.split(recs, 3)
    assert local.values == [values[0], values[2]] and local.offsets == [0, 2]
    owner = partition_for(other[0].encode(), 8)
    assert (foreign.owners, foreign.values, foreign.offsets) == ([owner], [values[1]], [1])
    assert router.owner(other[0].encode()) == partition_for(other[0].encode(), 8)


def test_router_split_takes_the_placement_a_block_carries():
    """Where the consumer thread already placed the records (fetch.py), split walks none
    of them again; a placement that does not fit the Block is worked out afresh."""
    values = [b'{"account_id":"acct_%d"}' % i for i in range(64)]
    recs = block_of(values)
    want = Router(8).split(recs, 3)
    recs.where = _decode.partitions(values, 8)
    assert Router(8).split(recs, 3) == want
    recs.where = np.full(64, 3, np.int32).tobytes()  # says every record is partition 3's
    local, foreign = Router(8).split(recs, 3)
    assert local is recs and len(foreign) == 0
    recs.where = b"\x00" * 8  # two records' worth: not this Block's
    assert Router(8).split(recs, 3) == want


@pytest.mark.parametrize("partitioner", ["murmur2", "crc32"])
def test_router_split_matches_reading_every_record(partitioner: str):
    """The compiled placement must agree with account_of + partition_for, record by record,
    under either `[kafka] input_partitioner`."""
    rng = random.Random(7)
    values = [None, b"", b"{broken", b'{"account_id": 42}', b'{"account_id":"a\\"b"}']
    for i in range(3000):
        acct = "".join(rng.choice("ab_09\u00e9") for _ in range(rng.randint(1, 30)))
        sep = rng.choice([":", " : ", ":"])
        values.append(f'{{"ts":{i},"account_id"{sep}"{acct}","x":"y"}}'.encode())
    recs = block_of(values)
    for part in (0, 5):
        local, foreign = Router(8, partitioner=partitioner).split(recs, part)
        want_local, want_foreign = [], []
        for offset, v in enumerate(values):
            a = account_of(v)
            if a is None or (owner := partition_for(a, 8, partitioner)) == part:
                want_local.append(v)
            else:
                want_foreign.append((owner, v, offset))
        got = list(zip(foreign.owners, foreign.values, foreign.offsets, strict=True))
        # Grouped by owner, each owner's in the order read (a stable sort).
        assert local.values == want_local and got == sorted(want_foreign, key=lambda r: r[0])
        assert foreign and local


def test_a_block_placed_by_crc32_stays_whole_with_a_crc32_router():
    """Records a librdkafka client keyed by account (CRC-32) stay on the partition they were
    produced to when the worker is told so, and are forwarded under murmur2."""
    accounts = [f"acct_{i}".encode() for i in range(400)]
    values = [b'{"account_id":"%s"}' % a for a in accounts if zlib.crc32(a) % 8 == 6]
    recs = block_of(values)
    local, foreign = Router(8, partitioner="crc32").split(recs, 6)
    assert local is recs and len(foreign) == 0
    local, foreign = Router(8).split(recs, 6)
    assert len(foreign) > len(values) // 2
    assert Router(8, partitioner="crc32").owner(b"acct_1") == zlib.crc32(b"acct_1") % 8


@pytest.mark.parametrize(
    ("partitioner", "keyed", "said"),
    [("murmur2", True, "crc32"), ("crc32", True, "murmur2"), ("murmur2", False, None)],
)
def test_a_producer_placing_by_the_other_partitioner_is_named_once(
    caplog, partitioner: str, keyed: bool, said: str | None
):
    """Records keyed by account and placed by the partitioner the worker was not told of
    are all forwarded; the worker says which setting would keep them, once. Unkeyed
    records (placed at random) fit neither, and nothing is said."""
    other = "crc32" if partitioner == "murmur2" else "murmur2"
    router = Router(8, partitioner=partitioner)
    accounts = [f"acct_{i}".encode() for i in range(2_000)]
    by_part: dict[int, list[bytes]] = {}
    for i, a in enumerate(accounts):
        by_part.setdefault(partition_for(a, 8, other) if keyed else i % 8, []).append(a)
    with caplog.at_level(logging.WARNING, logger="streams.kafka.routing"):
        for _ in range(2):  # a Block gives 256 records to the sample
            for part, accts in by_part.items():
                values = [b'{"account_id":"%s"}' % a for a in accts]
                block = Block(
                    list(range(len(values))),
                    list(accts) if keyed else [None] * len(accts),
                    values,
                    [()] * len(values),
                )
                router.split(block, part)
    said_lines = [r.getMessage() for r in caplog.records if "input_partitioner" in r.getMessage()]
    if said is None:
        assert said_lines == [] and router.hint.done
    else:
        assert len(said_lines) == 1 and f'input_partitioner = "{said}"' in said_lines[0]
