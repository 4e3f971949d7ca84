"""Pure parts of the Kafka runtime: partitioning, account extraction, health, checkpoints."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from streams.kafka import checkpoint
from streams.kafka.health import HealthInputs, evaluate
from streams.kafka.routing import Router, account_of, partition_for


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


@dataclass
class Rec:
    value: bytes


def test_router_keeps_unreadable_records_local():
    router = Router(8)
    mine = [a for a in (f"acct_{i}" for i in range(200)) if partition_for(a.encode(), 8) == 3]
    other = [a for a in (f"acct_{i}" for i in range(200)) if partition_for(a.encode(), 8) != 3]
    recs = [
        Rec(b'{"account_id":"%s"}' % mine[0].encode()),
        Rec(b'{"account_id":"%s"}' % other[0].encode()),
        Rec(b"{broken"),
    ]
    local, foreign = router.split(recs, 3)
    assert local == [recs[0], recs[2]]
    assert foreign == [(other[0].encode(), recs[1])]
    assert router.owner(other[0].encode()) == partition_for(other[0].encode(), 8)


def test_router_split_matches_reading_every_record():
    """The compiled placement must agree with account_of + partition_for, record by record."""
    rng = random.Random(7)
    values = [None, b"", b"{broken", b'{"account_id": 42}', b'{"account_id":"a\\"b"}']
    for i in range(3000):
        acct = "".join(rng.choice("ab_09\u00e9") for _ in range(rng.randint(1, 30)))
        sep = rng.choice([":", " : ", ":"])
        values.append(f'{{"ts":{i},"account_id"{sep}"{acct}","x":"y"}}'.encode())
    recs = [Rec(v) for v in values]
    for part in (0, 5):
        local, foreign = Router(8).split(recs, part)
        want_local, want_foreign = [], []
        for r in recs:
            a = account_of(r.value)
            if a is None or partition_for(a, 8) == part:
                want_local.append(r)
            else:
                want_foreign.append((a, r))
        assert local == want_local and foreign == want_foreign
        assert foreign and local


def _h(**kw) -> HealthInputs:
    base = dict(
        now=1000.0,
        in_recovery=False,
        recovery_since=None,
        last_progress=999.0,
        lag=0,
        owned_partitions=4,
        started=True,
    )
    return HealthInputs(**{**base, **kw})


def test_health_states():
    assert evaluate(_h(), 120, 60)[0] == 200
    assert evaluate(_h(started=False), 120, 60)[0] == 503
    code, body = evaluate(_h(in_recovery=True, recovery_since=950.0), 120, 60)
    assert (code, body["status"]) == (200, "recovering")
    code, body = evaluate(_h(in_recovery=True, recovery_since=800.0), 120, 60)
    assert (code, body["status"]) == (503, "recovery_stuck")
    assert "200s" in body["reason"]
    # Idle with nothing to read is healthy; idle with a backlog is a stall.
    assert evaluate(_h(last_progress=500.0, lag=0), 120, 60)[0] == 200
    code, body = evaluate(_h(last_progress=500.0, lag=12), 120, 60)
    assert (code, body["status"]) == (503, "stalled")


def test_state_blob_round_trip():
    state = {"arr": np.arange(10.0), "ids": ({"a"}, {"b"}), "x": -np.inf}
    back = checkpoint.decode_state(checkpoint.encode_state(state))
    assert np.array_equal(back["arr"], state["arr"])
    assert back["ids"] == state["ids"] and back["x"] == -np.inf
    m = checkpoint.Manifest(3, 2, {"t": 10, "t-by-account": 4}, 999)
    assert checkpoint.Manifest.from_bytes(m.to_bytes()) == m
    assert checkpoint.chunk_key(5, 3, 1) != checkpoint.chunk_key(5, 4, 1)
