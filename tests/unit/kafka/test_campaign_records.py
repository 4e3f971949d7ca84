"""Campaign topic records round-trip: memberships (uint64 codes, account ids) and figures,
whole or in parts."""

from __future__ import annotations

import pickle

import numpy as np
import orjson
import pytest

from streams.features.campaign_split import KeyFigures, Memberships
from streams.kafka.campaign_records import (
    Parts,
    decode_figures,
    decode_request,
    encode_figures,
    encode_request,
    figures_values,
    join_figures,
    part_of,
    request_values,
)


def test_request_round_trips_with_full_width_codes() -> None:
    account = np.empty(2, object)
    account[:] = ["acct_é", "b"]
    m = Memberships(
        600.0,
        np.array([0, 3], np.int8),
        np.array([2**64 - 1, 5], np.uint64),
        account,
        np.array([4, 1], np.int64),
        np.array([True, False]),
    )
    s, w, back = decode_request(orjson.loads(encode_request(3, 600.0, m)))
    assert (s, w) == (3, 600.0)
    for f in ("kind", "code", "account", "events", "bad"):
        assert getattr(back, f).dtype == getattr(m, f).dtype
        assert getattr(back, f).tolist() == getattr(m, f).tolist()


def test_figures_round_trip() -> None:
    figures = {(1, 2**63 + 9): KeyFigures(3, 2, ["a", "b", "c"]), (0, 1): KeyFigures(1, 0, [])}
    owner, w, back = decode_figures(orjson.loads(encode_figures(5, 900.0, figures)))
    assert (owner, w, back) == (5, 900.0, figures)


def _memberships(rows: int, seed: int = 0) -> Memberships:
    rng = np.random.default_rng(seed)
    account = np.empty(rows, object)
    account[:] = [f"acct_{i:05d}" for i in rng.integers(0, 10**5, rows)]
    return Memberships(
        300.0,
        rng.integers(0, 4, rows).astype(np.int8),
        rng.integers(0, 2**64 - 1, rows, dtype=np.uint64),
        account,
        rng.integers(1, 50, rows).astype(np.int64),
        rng.random(rows) < 0.2,
    )


def _assemble(values: list[bytes], kind: bytes, parts: Parts):
    whole = None
    for v in values:
        d = orjson.loads(v)
        decoded = decode_request(d)[2] if kind == b"request" else decode_figures(d)[2]
        got = parts.add(kind, 3, float(d["w"]), *part_of(d), decoded)
        assert whole is None, "whole before the last part"
        whole = got
    return whole


def test_a_large_request_goes_in_parts_under_the_limit_and_joins_back_whole() -> None:
    m = _memberships(5_000)
    limit = 16 * 1024
    values = request_values(3, 300.0, m, limit)
    assert len(values) > 10 and all(len(v) <= limit for v in values)
    assert values == request_values(3, 300.0, m, limit)  # a re-send gives the same parts
    parts = Parts()
    # Out of order, with a part sent twice (a restored source re-sends its request).
    order = [*reversed(values[1:]), values[-1], values[0]]
    whole = None
    for v in order:
        d = orjson.loads(v)
        got = parts.add(b"request", 3, 300.0, *part_of(d), decode_request(d)[2])
        assert whole is None
        whole = got
    joined = Memberships.concat(300.0, whole)
    for f in ("kind", "code", "account", "events", "bad"):
        assert getattr(joined, f).tolist() == getattr(m, f).tolist()
    assert parts.got == {}


def test_a_small_request_is_one_record_and_needs_no_parts() -> None:
    m = _memberships(20)
    (value,) = request_values(1, 300.0, m, 512 * 1024)
    assert _assemble([value], b"request", Parts())[0].code.tolist() == m.code.tolist()


def test_a_record_without_part_fields_is_whole() -> None:
    d = orjson.loads(encode_request(1, 300.0, _memberships(3)))
    del d["i"], d["n"]
    assert part_of(d) == (0, 1)
    with pytest.raises(ValueError):
        part_of({"i": 2, "n": 2})


def test_large_figures_go_in_parts_and_join_back() -> None:
    figures = {
        (i % 4, 2**63 + i): KeyFigures(30, i % 3, [f"account-{j}" for j in range(25)])
        for i in range(400)
    }
    values = figures_values(6, 300.0, figures, 8 * 1024)
    assert len(values) > 5 and all(len(v) <= 8 * 1024 for v in values)
    assert join_figures(_assemble(values, b"figures", Parts())) == figures


def test_parts_waiting_survive_a_checkpoint_and_stale_ones_are_dropped() -> None:
    values = request_values(3, 300.0, _memberships(3_000), 8 * 1024)
    parts = Parts()
    first = orjson.loads(values[0])
    assert parts.add(b"request", 3, 300.0, *part_of(first), decode_request(first)[2]) is None
    restored = Parts()
    restored.load_state_dict(pickle.loads(pickle.dumps(parts.state_dict())))
    assert _assemble(values[1:], b"request", restored) is not None
    parts.add(b"figures", 3, 600.0, 0, 2, {})
    parts.drop(b"request", lambda w: w <= 300.0)
    assert [k[0] for k in parts.got] == [b"figures"]
