"""Issue 19, finding 4: records are routed by the top-level account_id the decoder reads.

Before, routing took the first `"account_id":"` in the raw bytes: a nested
`{"meta":{"account_id":...}}` or a repeated key sent an event to another account's
partition, where its account's state is not.
"""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from streams.contract import _decode
from streams.contract.events import decode_lines
from streams.kafka.block import Block
from streams.kafka.routing import Router, account_of, partition_for
from tests.events_util import T0

HEAD = b'{"event_id":"e","ts":1790812800,"endpoint":"x",'
TRICKY = [
    HEAD + b'"meta":{"account_id":"evil"},"account_id":"victim"}',
    HEAD + b'"meta":"\\"account_id\\":\\"evil\\"","account_id":"victim"}',
    HEAD + b'"note":"\\"account_id\\":\\"evil\\"","account_id":"victim"}',
    HEAD + b'"meta":[{"account_id":"evil"}],"account_id":"victim"}',
    HEAD + b'"account_id":"evil","account_id":"victim"}',
    HEAD + b'"account_id":"evil","x":{"account_id":"evil"},"account_id":"victim"}',
    HEAD + b'"account_id" : "victim","meta":{"account_id":"evil"}}',
    HEAD + b'"\\u0061ccount_id":"victim","meta":{"account_id":"evil"}}',
    HEAD + b'"account_id":"vic\\u0074im","meta":{"account_id":"evil"}}',
]


def decoder_account(raw: bytes) -> bytes | None:
    batch, _ = decode_lines([raw], now_ts=T0 + 3600)
    return batch.texts([0], "account_id")[0].encode() if len(batch) else None


@pytest.mark.parametrize("raw", TRICKY, ids=range(len(TRICKY)))
def test_routing_reads_the_decoders_account(raw: bytes) -> None:
    assert decoder_account(raw) == b"victim"
    assert account_of(raw) == b"victim"
    where = np.frombuffer(_decode.partitions([raw], 16), np.int32)[0]
    assert where in (-2, partition_for(b"victim", 16))


def test_nested_and_repeated_accounts_are_placed_by_the_compiled_walk() -> None:
    """The plain ones need no parse in Python: nested keys are skipped in C."""
    plain = [TRICKY[0], TRICKY[3], TRICKY[6]]
    where = np.frombuffer(_decode.partitions(plain, 16), np.int32).tolist()
    assert where == [partition_for(b"victim", 16)] * 3


def test_router_sends_every_record_to_its_decoded_accounts_partition() -> None:
    rng = random.Random(41)
    values = list(TRICKY)
    for i in range(2000):
        acct = f"acct_{rng.randrange(500)}"
        decoy = f"acct_{rng.randrange(500)}"
        shape = rng.randrange(4)
        ev = {"event_id": f"e{i}", "ts": T0, "endpoint": "x"}
        if shape == 0:
            ev |= {"meta": {"account_id": decoy}, "account_id": acct}
        elif shape == 1:
            ev |= {"account_id": acct, "extra": [{"account_id": decoy}]}
        elif shape == 2:
            ev |= {"note": f'"account_id":"{decoy}"', "account_id": acct}
        else:
            ev |= {"account_id": acct}
        raw = orjson.dumps(ev)
        if rng.random() < 0.2:  # a repeated key: the last one is the account
            raw = raw[:-1] + b',"account_id":"%s"}' % acct.encode()
            raw = raw.replace(b'"event_id"', b'"account_id":"%s","event_id"' % decoy.encode(), 1)
        values.append(raw)
    router = Router(8)
    for part in range(8):
        block = Block(list(range(len(values))), [None] * len(values), values, [()] * len(values))
        local, foreign = router.split(block, part)
        for v in local.values:
            assert partition_for(decoder_account(v), 8) == part
        for owner, v in zip(foreign.owners, foreign.values, strict=True):
            assert owner == partition_for(decoder_account(v), 8) != part


def test_a_line_over_the_limit_stays_where_it_is_read():
    # Its engine dead-letters it as too_large there, as the one it belongs to would; a
    # record the repartition topic refuses failed the forwarded batch and the checkpoint.
    other = next(f"acct_{i}" for i in range(100) if partition_for(f"acct_{i}".encode(), 8) != 3)
    small = orjson.dumps({"event_id": "s", "ts": T0, "account_id": other})
    big = orjson.dumps({"event_id": "b", "ts": T0, "account_id": other, "pad": "x" * 5000})
    values = [small, big, small]
    block = Block([0, 1, 2], [None] * 3, values, [()] * 3)
    local, foreign = Router(8, max_line_bytes=4096).split(block, 3)
    assert local.values == [big] and local.offsets == [1]
    assert foreign.offsets == [0, 2]
    # Without a limit, or under it, the long line goes to its account's partition too.
    for router in (Router(8), Router(8, max_line_bytes=len(big))):
        local, foreign = router.split(block, 3)
        assert local.values == [] and foreign.offsets == [0, 1, 2]
