"""The compiled fast path decodes exactly what the reference decoder does, or defers to it.

Every test here decodes the same lines twice, once through `_decode.c` (with the reference
decoder for the lines it defers) and once through the reference decoder alone, and
requires identical columns and identical dead letters.
"""

from __future__ import annotations

import gzip
import random

import numpy as np
import orjson
import pytest

from streams.contract import _decode
from streams.contract._decode import code
from streams.contract.codes import subnet_of
from streams.contract.events import COLUMNS, decode_lines, line_texts
from tests.events_util import T0, line
from tests.gil_util import assert_lets_threads_run

NOW = T0 + 3600


def assert_same(lines: list[bytes]) -> None:
    fast, fast_dead = decode_lines(lines, now_ts=NOW)
    ref, ref_dead = decode_lines(lines, now_ts=NOW, fast=False)
    for c in COLUMNS:
        a, b = getattr(fast, c), getattr(ref, c)
        if a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), c
        else:
            assert a.tolist() == b.tolist(), c
    assert [(d.reason, d.raw) for d in fast_dead] == [(d.reason, d.raw) for d in ref_dead]


def test_generated_corpus(small_corpus) -> None:
    events, _ = small_corpus
    lines = [ln for ln in gzip.decompress(events.read_bytes()).split(b"\n") if ln]
    fast, dead = decode_lines(lines, now_ts=2e9)
    assert len(fast) == len(lines) and dead == []
    assert_same(lines[:20_000])


EDGE = [
    # strings: escapes, non-ASCII, what the fast path leaves to the reference decoder
    line(user_agent='curl "quoted"'),
    line(user_agent="caf\u00e9/1.0 \u2603 \U0001f600"),
    b'{"event_id":"e\\u0041","ts":1790812800,"account_id":"a","endpoint":"x"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a\\/b","endpoint":"x"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","ip":"\\ud800"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","user_agent":"\\q"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","user_agent":"a\tb"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","user_agent":"\xc3\x28"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","user_agent":"\xed\xa0\x80"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","ip":"\xe2\x82\xac.1"}',
    b'{"event_id":"e","ts":1790812800,"\\u0061ccount_id":"a","endpoint":"x"}',
    # surrogate escapes: a pair is text, a lone one is not (issue 19, finding 6)
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","meta":"\\ud800"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","meta":"\\udc00"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","meta":"\\ud800x"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","meta":"\\ud800\\u0041"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","meta":"\\udbff\\udfff"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","meta":["\\ud83d\\ude00"]}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","\\ud800":1}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","meta":{"\\udfff":1}}',
    # unknown fields of every shape, nested and escaped
    line(extra={"a": [1, 2.5e3, {"b": None, "c": "\u00e9\\"}], "d": True}),
    b'{"x":[],"y":{},"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","z":-0.0}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","deep":'
    + b"[" * 70
    + b"]" * 70
    + b"}",
    # numbers
    line(prompt_tokens=0, completion_tokens=10**15, status=-1, latency_ms=0),
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","prompt_tokens":10000000000000000000}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","status":100000000000000000000}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","status":999999999999999999}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","prompt_tokens":-0}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","prompt_tokens":1e2}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","prompt_tokens":01}',
    b'{"event_id":"e","ts":1.7908128e9,"account_id":"a","endpoint":"x","latency_ms":1E-3}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","latency_ms":1e999}',
    b'{"event_id":"e","ts":1790812800.123456789,"account_id":"a","endpoint":"x"}',
    # timestamps
    line(ts="2026-10-01T00:00:00Z"),
    line(ts="2026-10-01T00:00:00.5Z"),
    line(ts="2026-10-01T00:00:00.123456Z"),
    line(ts="2026-10-01T00:00:00.1234567Z"),
    line(ts="2026-10-01T02:30:00+02:30"),
    line(ts="2026-09-30T20:00:00-04:00"),
    line(ts="2026-10-01t00:00:00z"),
    line(ts="2026-10-01 00:00:00Z"),
    line(ts="2026-10-01T00:00:00+0000"),
    line(ts="2026-02-29T00:00:00Z"),
    line(ts="2024-02-29T00:00:00Z"),
    line(ts="2026-10-01T24:00:00Z"),
    line(ts="2026-10-01T23:59:60Z"),
    line(ts="0001-01-01T00:00:00Z"),
    # far timestamps with microseconds: past 2^53 us from 1970 (before ~1685, after ~2255)
    line(ts="1600-01-01T00:00:00.000001Z"),
    line(ts="2300-01-01T00:00:00.000001Z"),
    line(ts="1685-06-01T00:00:00.123457+01:00"),
    line(ts="2255-06-06T00:00:00.999999Z"),
    line(ts="9999-12-31T23:59:59.999999Z"),
    line(account_created="1000-01-01T00:00:00.000003Z"),
    line(ts="2026-10-01T00:00:00.Z"),
    line(ts=True),
    line(account_created="2026-01-01T00:00:00.000Z"),
    line(account_created=1_700_000_000),
    line(account_created="2026-01-01"),
    line(account_created="soon"),
    # nulls, booleans, small codes
    line(ip=None, flagged=None, moderation=None, status=None, model=None, plan=None),
    line(flagged=True),
    line(flagged=0),
    line(plan="enterprise", finish_reason="content_filter"),
    line(plan="trial", finish_reason="weird"),
    line(plan="", finish_reason=""),
    # moderation
    line(moderation={}),
    line(moderation={"hate": 0.2, "violence": 1, "self_harm": 0.95}),
    line(moderation={"hate": None}),
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","moderation":{"h":0.9,"h":0.1}}',
    # IPs and their blocks
    line(ip="2001:db8:85a3::8a2e:370:7334"),
    line(ip="::ffff:192.0.2.1"),
    line(ip="fe80::1"),
    line(ip="localhost"),
    line(ip="1.2.3"),
    line(ip="9" * 300 + ".1"),
    # structure
    b'  {"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x"}  \r',
    b'{ "event_id" : "e" , "ts" : 1790812800 , "account_id" : "a" , "endpoint" : "x" }',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x"} {}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x"},{"event_id":"f"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x",}',
    b'{"event_id":"e","event_id":"f","ts":1790812800,"account_id":"a","endpoint":"x"}',
    b'\xef\xbb\xbf{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x"}',
    b'{"event_id":"","ts":1790812800,"account_id":"a","endpoint":"x"}',
    b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":""}',
    b"{}",
    b"null",
    b"",
    b"  ",
]


@pytest.mark.parametrize("raw", EDGE, ids=range(len(EDGE)))
def test_edge_cases(raw: bytes) -> None:
    assert_same([line(), raw, line()])


def mutations(n: int) -> list[bytes]:
    rng = random.Random(20261123)
    alphabet = b'{}[]",:\\.-+eE0123456789 truefalsnul\t\xc3\xa9\xff'
    seeds = [
        line(moderation={"hate": 0.25}, flagged=True, latency_ms=12.5),
        line(ts="2026-10-01T00:00:00.250+01:00", account_created=1_700_000_000.5),
        line(ip="2001:db8::1", extra=[1, {"a": "b"}]),
    ]
    lines = []
    for _ in range(n):
        b = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(b))
            op = rng.random()
            if op < 0.4:
                b[i] = rng.choice(alphabet)
            elif op < 0.7:
                del b[i]
            else:
                b.insert(i, rng.choice(alphabet))
        lines.append(bytes(b))
    return lines


def test_random_mutations() -> None:
    """Seeded byte-level mutations of valid events: whatever comes out, both paths agree."""
    lines = mutations(6000)
    fast, dead = decode_lines(lines, now_ts=NOW)
    assert 0 < len(fast) < len(lines), "mutations should both keep and break events"
    by_c = np.frombuffer(_decode.decode(lines, 65_536)[0], np.uint8) == 0
    assert by_c.sum() > len(fast) // 2, "most kept events should come from the fast path"
    assert_same(lines)


def test_columns_decoded_in_another_thread_give_the_same_batch() -> None:
    """The Kafka worker's consumer thread may run the compiled walk ahead (`columns`,
    streams/kafka/fetch.py): the batch and dead letters are those of a decode here, and
    columns of other lines, by their count, are not used."""
    lines = mutations(2000) + [line(), b"", b"x" * 70_000]
    limit = 65_536
    here, here_dead = decode_lines(lines, now_ts=NOW, max_line_bytes=limit)
    walked = _decode.decode(lines, limit)
    ahead, ahead_dead = decode_lines(lines, now_ts=NOW, max_line_bytes=limit, columns=walked)
    for c in COLUMNS:
        a, b = getattr(here, c), getattr(ahead, c)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), c
    assert [(d.reason, d.raw) for d in here_dead] == [(d.reason, d.raw) for d in ahead_dead]
    other = _decode.decode(lines[:-1], limit)
    again, _ = decode_lines(lines, now_ts=NOW, max_line_bytes=limit, columns=other)
    assert again.account_id.tolist() == here.account_id.tolist()


def test_numbers_match_the_reference_decoder() -> None:
    """Floats are parsed in C without the GIL, by a different routine than Python's: both
    must round every JSON number to the same double, hard cases included."""
    rng = random.Random(7)
    texts = [
        "5e-324",
        "4.9406564584124654e-324",
        "2.2250738585072011e-308",
        "2.2250738585072012e-308",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "9007199254740993",
        "0.1",
        "1e-400",
        "123456789012345678901234567890",
        "0.30000000000000004",
        "-0.0",
        "1E+2",
        "3.14159e-0",
    ]
    texts += [repr(rng.uniform(0, 1) * 10 ** rng.randint(-30, 30)) for _ in range(3000)]
    texts += [
        f"{rng.randrange(10**17)}.{rng.randrange(10**12):012d}e{rng.randint(-320, 300)}"
        for _ in range(3000)
    ]
    lines = [
        b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x","latency_ms":%s,'
        b'"moderation":{"h":%s}}' % (t.encode(), t.encode())
        for t in texts
    ]
    fast, _ = decode_lines(lines, now_ts=NOW)
    assert len(fast) > 5000
    by_c = np.frombuffer(_decode.decode(lines, 65_536)[0], np.uint8) == 0
    assert by_c.sum() > 5000, "the numbers should be decoded by the fast path"
    assert_same(lines)


def test_far_timestamps_match_the_reference_decoder() -> None:
    """Regression: with microseconds before about 1685 or after about 2255 the fast path
    rounded twice and differed from datetime.timestamp() in the last bit."""
    rng = random.Random(1685)
    texts = []
    for _ in range(4000):
        y = rng.choice([rng.randint(1, 1700), rng.randint(2240, 9999), rng.randint(1680, 1690)])
        off = rng.choice(["Z", "+05:30", "-11:00"])
        texts.append(
            f"{y:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
            f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randrange(10**6):06d}{off}"
        )
    lines = [line(ts=t) for t in texts] + [line(account_created=t) for t in texts[:500]]
    fast, dead = decode_lines(lines, now_ts=4e11)
    # Years before 1970 are refused (bad_timestamp) after decoding, by both paths alike.
    assert len(fast) + len(dead) == len(lines) and len(fast) > 1000
    assert {d.reason for d in dead} == {"bad_timestamp"} and (fast.ts >= 0).all()
    assert_same(lines)


@pytest.mark.parametrize(
    "walk",
    [lambda lines: _decode.decode(lines, 65_536), lambda lines: _decode.partitions(lines, 8)],
    ids=["decode", "partitions"],
)
def test_compiled_walks_let_other_threads_run(walk) -> None:
    """The walks over a batch run without the GIL, so the Kafka consumer thread can unpack
    the next fetch meanwhile. A thread that only counts must advance during the call."""
    lines = [
        line(event_id=f"e{i}", latency_ms=i / 7, moderation={"h": i / 13}) for i in range(150_000)
    ]
    assert_lets_threads_run(lambda: walk(lines))


def test_codes_are_fixed() -> None:
    """Codes are kept in checkpoints: under one key their values must not change between
    releases (this is the demo key's)."""
    assert code("") == 0
    assert code("abc") == code(b"abc") == 17802309909714497813
    assert code("acct_\u00e9") == code("acct_\u00e9".encode())
    assert len({code(f"acct_{i}") for i in range(100_000)}) == 100_000
    assert all(code(s) & 1 for s in ("a", "bb", "x" * 17))


def test_block_codes_match_subnet_of() -> None:
    ips = ["203.0.113.5", "2001:db8:85a3::1", "::1", "1.2.3", "host", "a:b"]
    batch, dead = decode_lines([line(ip=ip) for ip in ips], now_ts=NOW)
    assert dead == []
    assert batch.subnet.tolist() == [code(subnet_of(ip)) for ip in ips]
    assert batch.texts(range(len(ips)), "subnet") == [subnet_of(ip) for ip in ips]
    assert batch.texts([0], "ip") == ["203.0.113.5"]


def test_texts_reads_back_strings() -> None:
    raw = [line(user_agent='ua "q"', account_id="acct_\u00e9"), line(user_agent=None)]
    batch, _ = decode_lines(raw, now_ts=NOW)
    assert batch.texts([0, 1], "user_agent") == ['ua "q"', ""]
    assert batch.account_id[0] == code("acct_\u00e9")
    assert orjson.loads(batch.raw[0])["account_id"] == "acct_\u00e9"


@pytest.mark.parametrize("field", ["account_id", "user_agent", "ip", "subnet", "prompt_hash"])
def test_line_texts_match_a_full_parse(field: str) -> None:
    lines = EDGE + mutations(2000)
    got = line_texts(lines, list(range(len(lines))), field)
    key = "ip" if field == "subnet" else field
    checked = 0
    for ln, v in zip(lines, got, strict=True):
        assert type(v) is str
        try:
            d = orjson.loads(ln)
        except orjson.JSONDecodeError:
            continue  # nothing to compare with; such lines are never accepted events
        checked += 1
        want = d.get(key) if type(d) is dict else None
        want = want if type(want) is str else ""
        assert v == (subnet_of(want) if field == "subnet" else want), ln
    assert checked > 500


def test_total_len_sums_what_len_gives() -> None:
    rng = random.Random(7)
    lines = [bytes(rng.randrange(256) for _ in range(rng.randrange(300))) for _ in range(500)]
    assert _decode.total_len(lines) == sum(map(len, lines))
    odd = [b"", bytearray(b"abc"), memoryview(b"hello"), "text"]  # any sized item
    assert _decode.total_len(odd) == 0 + 3 + 5 + 4
    assert _decode.total_len([]) == 0
    with pytest.raises(TypeError):
        _decode.total_len([b"a", 3])
    with pytest.raises(TypeError, match="list"):
        _decode.total_len((b"a",))
