"""Seeded mutation fuzz of the decoder's and the id set's compiled entry points, against a
reference. (The record reader's fuzz against aiokafka is tests/unit/kafka/test_fetch_fuzz.py.)

`make test` runs this file twice: at its default scale with the normal build, and at a
larger scale under AddressSanitizer and UndefinedBehaviorSanitizer (`make sanitize`,
tests/sanitize.py), where the total number of inputs passes a million. VIGIL_FUZZ_SCALE
multiplies every count. Each test prints its count, so the sanitizer job's log gives them.
"""

from __future__ import annotations

import os
import random
import zlib

import numpy as np
import orjson
import pytest

from streams.contract import _decode, _seen
from streams.contract.codes import account_codes, code
from streams.contract.events import decode_lines, line_texts, take_columns
from streams.contract.reference import MAX_DEPTH, MAX_MEMBERS
from streams.contract.seen import EMPTY, IdSet, add_new
from streams.kafka.routing import PARTITIONERS, account_of, partition_for
from tests.events_util import T0, line
from tests.unit.contract.test_decoder_parity import assert_same

SCALE = float(os.environ.get("VIGIL_FUZZ_SCALE", "1"))
NOW = T0 + 3600
ALPHABET = b'{}[]",:\\.-+eEuU0123456789abcdfZT \ttruefalsnul\xc3\xa9\xed\xa0\x80\xff'
SEEDS = [
    line(moderation={"hate": 0.25, "sex": 1}, flagged=True, latency_ms=12.5),
    line(ts="2026-10-01T00:00:00.250+01:00", account_created=1_700_000_000.5),
    line(ts="2300-01-01T00:00:00.000001Z", user_agent='a "q" \u00e9'),
    line(ip="2001:db8::1", extra=[1, {"a": "b", "account_id": "z"}]),
    line(extra={"s": "\\ud83d\\ude00", "k": [[[[{}]]]]}, prompt_hash="ab" * 20),
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","m":"\\ud800\\udc00"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","account_id":"b","endpoint":"x"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","d":'
    + b"[" * (MAX_DEPTH - 1)
    + b"]" * (MAX_DEPTH - 1)
    + b"}",
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","w":['
    + b"1," * (MAX_MEMBERS - 1)
    + b"1]}",
]


def count(n: int) -> int:
    return max(1, int(n * SCALE))


def mutate(rng: random.Random, seed: bytes) -> bytes:
    b = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(b) + 1)
        op = rng.random()
        if op < 0.35 and i < len(b):
            b[i] = rng.choice(ALPHABET)
        elif op < 0.6 and i < len(b):
            del b[i : i + rng.randint(1, 3)]
        elif op < 0.85:
            b[i:i] = bytes(rng.choice(ALPHABET) for _ in range(rng.randint(1, 3)))
        else:  # repeat a slice: deeper nesting, repeated keys, longer strings
            j = rng.randrange(len(b) + 1)
            a, z = min(i, j), max(i, j)
            b[a:a] = b[a:z] * rng.randint(1, 40)
    return bytes(b[:70_000])


def mutated_lines(rng: random.Random, n: int) -> list[bytes]:
    return [mutate(rng, rng.choice(SEEDS)) for _ in range(n)]


def test_decoder_fast_path_against_the_reference(figures) -> None:
    rng = random.Random(19_001)
    total = count(60_000)
    for start in range(0, total, 10_000):
        lines = mutated_lines(rng, min(10_000, total - start))
        fast, dead = decode_lines(lines, now_ts=NOW)
        assert not [d for d in dead if d.detail.startswith("undecodable")]
        assert_same(lines)
    figures(f"fuzz decode: {total} lines")


def test_texts_against_a_full_parse(figures) -> None:
    rng = random.Random(19_002)
    total = count(20_000)
    lines = mutated_lines(rng, total)
    for field in ("account_id", "user_agent", "ip"):
        got = line_texts(lines, list(range(len(lines))), field)
        for ln, v in zip(lines, got, strict=True):
            try:
                d = orjson.loads(ln)
            except orjson.JSONDecodeError:
                continue
            want = d.get(field) if type(d) is dict else None
            assert v == (want if type(want) is str else ""), ln
    figures(f"fuzz texts: {3 * total} lookups")


def test_partitions_against_the_decoders_account(figures) -> None:
    rng = random.Random(19_003)
    total = count(40_000)
    lines = mutated_lines(rng, total)
    where = np.frombuffer(_decode.partitions(lines, 12), np.int32)
    # librdkafka's placement ([kafka] input_partitioner = "crc32"): the same records placed.
    crc = np.frombuffer(_decode.partitions(lines, 12, PARTITIONERS["crc32"]), np.int32)
    assert ((where == -2) == (crc == -2)).all() and ((where == -1) == (crc == -1)).all()
    # With the Router's line limit, a longer record stays (-1) and the rest are placed alike.
    limit = sorted(map(len, lines))[len(lines) // 2]
    capped = np.frombuffer(_decode.partitions(lines, 12, 0, limit), np.int32)
    longer = np.array([len(x) > limit for x in lines])
    assert (capped[longer] == -1).all() and (capped[~longer] == where[~longer]).all()
    batch, _ = decode_lines(lines, now_ts=NOW)
    accepted = np.flatnonzero(np.isin([hash(x) for x in lines], [hash(x) for x in batch.raw]))
    accounts = line_texts(lines, accepted.tolist(), "account_id")
    placed = 0
    for i, acct in zip(accepted.tolist(), accounts, strict=True):
        a = acct.encode("utf-8", "surrogatepass")
        assert account_of(lines[i]) == a, lines[i]
        if where[i] != -2:
            placed += 1
            assert where[i] == partition_for(a, 12), lines[i]
            assert crc[i] == partition_for(a, 12, "crc32") == zlib.crc32(a) % 12, lines[i]
    assert placed > len(accepted) // 2, "most accepted records are placed in C"
    assert (crc != where).sum() > placed // 2, "the two hashes place most accounts apart"
    figures(f"fuzz partitions: {total} records, {len(accepted)} accepted")


def test_accounts_against_a_full_parse(figures) -> None:
    """The key a forwarded record gets: the account `partitions` hashed, for every record
    it placed, and None for every other, whatever the mutation. A line the decoders refuse
    for another field (a number out of range) has no account for `account_of`; it is
    forwarded by the account the walk read, and dead-lettered there."""
    rng = random.Random(19_005)
    total = count(40_000)
    lines = mutated_lines(rng, total) + [None, b"", b"{}"]
    where = np.frombuffer(_decode.partitions(lines, 12), np.int32)
    got = _decode.accounts(lines, list(range(len(lines))))
    placed = 0
    for raw, w, a in zip(lines, where.tolist(), got, strict=True):
        assert (a is not None) == (w >= 0), raw
        if a is not None:
            placed += 1
            want = account_of(raw)
            assert (want is None or a == want) and partition_for(a, 12) == w, raw
    assert placed > total // 10  # the mutations leave about a sixth plain
    # Rows pick records, in any order, repeated or not.
    rows = [7, 3, 3, 0]
    assert _decode.accounts(lines, rows) == [got[i] for i in rows]
    with pytest.raises(IndexError):
        _decode.accounts(lines, [len(lines)])
    figures(f"fuzz accounts: {total} records, {placed} keyed in C")


def test_columns_taken_by_rows_match_decoding_those_lines_alone(figures) -> None:
    """A Block cut down to some rows keeps its share of the consumer thread's decode
    (`take_columns`): the engine must get what decoding those lines alone gives, for
    every mutation, and the same events from decode_lines."""
    rng = random.Random(19_006)
    total = count(20_000)
    lines = mutated_lines(rng, total)
    whole = _decode.decode(lines, 65_536)
    for _ in range(20):
        rows = sorted(rng.sample(range(len(lines)), rng.randrange(0, 400)))
        part = [lines[i] for i in rows]
        taken = take_columns(whole, rows)
        assert [bytes(c) for c in taken] == [bytes(c) for c in _decode.decode(part, 65_536)]
        a, dead_a = decode_lines(part, now_ts=NOW, columns=taken)
        b, dead_b = decode_lines(part, now_ts=NOW)
        assert list(a.raw) == list(b.raw) and np.array_equal(a.ts, b.ts)
        assert [d.reason for d in dead_a] == [d.reason for d in dead_b]
    figures(f"fuzz take_columns: {total} lines, 20 cuts")


def test_codes_of_random_strings(figures) -> None:
    rng = np.random.default_rng(19_004)
    total = count(40_000)
    for _ in range(total):
        b = rng.bytes(int(rng.integers(0, 300)))
        c = code(b)
        assert (c == 0) == (len(b) == 0) and (c & 1 or c == 0)
        assert account_codes(b)[0] == c
    figures(f"fuzz codes: {total} strings")


def test_id_set_against_a_python_set(figures) -> None:
    rng = np.random.default_rng(19_005)
    total = count(200_000)
    pool = rng.integers(0, 2**64 - 1, size=max(10, total // 4), dtype=np.uint64)
    prev_ids = pool[: len(pool) // 10]
    prev, cur, held = IdSet(prev_ids), IdSet(), set()
    prev_set, done = set(prev_ids.tolist()) - {0}, 0
    while done < total:
        ids = rng.choice(pool, size=int(rng.integers(0, 5_000)))
        keep = add_new(cur, prev, ids).tolist()
        for i, k in zip(ids.tolist(), keep, strict=True):
            new = i == 0 or (i not in held and i not in prev_set)
            assert k == new
            if new and i:
                held.add(i)
        done += len(ids)
    assert len(cur) == len(held)
    bad = np.zeros(12, np.uint64)
    try:
        _seen.add_new(bad, 0, EMPTY.table, pool[:1], np.zeros(1, np.uint8))
    except ValueError:
        pass
    else:
        raise AssertionError("a table of 12 slots was accepted")
    figures(f"fuzz id set: {done} ids")
